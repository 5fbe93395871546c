//! `enforcer trip|reset|disable DEST`
//!
//! Overrides (`trip`, `disable`) apply to the address in every network
//! namespace; `reset` acts in one namespace with `--netns`, in all without.

use axum::http::Method;

use super::{Failure, client};
use crate::{
    api::{Dest, Lasting, OverrideQuery, OverrideSet, ResetDone, ResetQuery},
    netns::Selector,
};

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The destination: `10.0.0.5:5432`, `[fd00::1]:443`.
    dest: Dest,
    /// Only in this network namespace: its inode (as `ip netns identify` or
    /// `lsns -t net` print it) or its name under /run/netns. Without it, the
    /// address is reset in every namespace and its override removed.
    #[arg(long)]
    netns: Option<Selector>,
    #[command(flatten)]
    client: client::Connection,
}

#[derive(Debug, clap::Args)]
pub struct TripArgs {
    /// The destination: `10.0.0.5:5432`, `[fd00::1]:443`.
    dest: Dest,
    /// How long (`30s`, `5m`, `1h 30m`; 1s to 7days); without it, until
    /// `enforcer reset`.
    #[arg(long = "for", value_name = "DURATION")]
    lasting: Option<Lasting>,
    #[command(flatten)]
    client: client::Connection,
}

fn set_override(endpoint: &str, args: TripArgs) -> Result<OverrideSet, Failure> {
    let query = OverrideQuery {
        dest: args.dest,
        lasting: args.lasting,
    };
    args.client
        .call(Method::POST, &client::target(endpoint, &query)?, None)
}

pub fn trip(args: TripArgs) -> Result<(), Failure> {
    let set = set_override("/v1/trip", args)?;
    println!("{}: forced open", set.dest);
    Ok(())
}

pub fn disable(args: TripArgs) -> Result<(), Failure> {
    let set = set_override("/v1/disable", args)?;
    println!("{}: disabled", set.dest);
    Ok(())
}

pub fn reset(args: ResetArgs) -> Result<(), Failure> {
    let query = ResetQuery {
        dest: args.dest,
        netns: args.netns.clone(),
    };
    let done: ResetDone =
        args.client
            .call(Method::POST, &client::target("/v1/reset", &query)?, None)?;
    match &args.netns {
        Some(netns) => println!("{} in netns {netns}: reset", args.dest),
        None => println!("{}: reset", args.dest),
    }
    if let Some(kept) = done.override_kept {
        eprintln!(
            "note: the {} override on {} applies in every namespace and stays; \
             `enforcer reset {}` removes it",
            kept.as_str(),
            args.dest,
            args.dest
        );
    }
    Ok(())
}

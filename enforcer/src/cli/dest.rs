//! `enforcer trip|reset|disable DEST`
//!
//! Overrides (`trip`, `disable`) apply to the address in every network
//! namespace; `reset` acts in one namespace with `--netns`, in all without.

use super::{Failure, client};

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The destination: `10.0.0.5:5432`, `[fd00::1]:443`.
    dest: String,
    /// Only in this network namespace: its inode (as `ip netns identify` or
    /// `lsns -t net` print it) or its name under /run/netns. Without it, the
    /// address is reset in every namespace and its override removed.
    #[arg(long)]
    netns: Option<String>,
    #[command(flatten)]
    client: client::Connection,
}

#[derive(Debug, clap::Args)]
pub struct TripArgs {
    /// The destination: `10.0.0.5:5432`, `[fd00::1]:443`.
    dest: String,
    /// How long (e.g. `30s`, `5m`); without it, until `enforcer reset`.
    #[arg(long = "for")]
    duration: Option<String>,
    #[command(flatten)]
    client: client::Connection,
}

fn override_target(endpoint: &str, dest: &str, duration: Option<&str>) -> Result<String, Failure> {
    client::check_dest(dest)?;
    let mut target = format!("/v1/{endpoint}?{}", client::param("dest", dest));
    if let Some(d) = duration {
        client::check_duration("for", d)?;
        target += &format!("&{}", client::param("for", d));
    }
    Ok(target)
}

pub fn trip(args: TripArgs) -> Result<(), Failure> {
    let target = override_target("trip", &args.dest, args.duration.as_deref())?;
    client::call(&args.client, "POST", &target, None)?;
    println!("{}: forced open", args.dest);
    Ok(())
}

pub fn disable(args: TripArgs) -> Result<(), Failure> {
    let target = override_target("disable", &args.dest, args.duration.as_deref())?;
    client::call(&args.client, "POST", &target, None)?;
    println!("{}: disabled", args.dest);
    Ok(())
}

pub fn reset(args: ResetArgs) -> Result<(), Failure> {
    let mut target = override_target("reset", &args.dest, None)?;
    if let Some(netns) = &args.netns {
        client::check_netns(netns)?;
        target += &format!("&{}", client::param("netns", netns));
    }
    let answer = client::call(&args.client, "POST", &target, None)?;
    match &args.netns {
        Some(netns) => println!("{} in netns {netns}: reset", args.dest),
        None => println!("{}: reset", args.dest),
    }
    if let Some(kept) = answer["override_kept"].as_str() {
        eprintln!(
            "note: the {kept} override on {} applies in every namespace and stays; \
             `enforcer reset {}` removes it",
            args.dest, args.dest
        );
    }
    Ok(())
}

//! `enforcer trip|reset|disable DEST`

use super::{Failure, client};

#[derive(Debug, clap::Args)]
pub struct DestArgs {
    /// The destination: `10.0.0.5:5432`, `[fd00::1]:443`.
    dest: String,
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

pub fn reset(args: DestArgs) -> Result<(), Failure> {
    let target = override_target("reset", &args.dest, None)?;
    client::call(&args.client, "POST", &target, None)?;
    println!("{}: reset", args.dest);
    Ok(())
}

//! `enforcer config check FILE`

use std::path::PathBuf;

use super::Failure;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file to validate.
    file: PathBuf,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("reading {}: {e}", args.file.display())))?;
    Config::parse(&text, &args.file.display().to_string()).map_err(|e| Failure::Usage(e.into()))?;
    println!("{}: ok", args.file.display());
    Ok(())
}

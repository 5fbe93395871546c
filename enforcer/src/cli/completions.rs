//! `enforcer completions SHELL`

use clap::CommandFactory;

use super::{Cli, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "enforcer",
        &mut std::io::stdout(),
    );
    Ok(())
}

//! The `enforcer` command line: one module per subcommand, each with `execute()`.
//! Doc comments are the `--help` text.

mod config_check;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kernel-level circuit breaking and connection bulkheads for unmodified programs.
#[derive(Debug, Parser)]
#[command(name = "enforcer", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground: load the kernel programs and attach them.
    Run(run::Args),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check(config_check::Args),
}

/// How a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad input (configuration, flags): exit code 2, nothing was changed.
    Usage(anyhow::Error),
    /// Anything else: exit code 1.
    Runtime(anyhow::Error),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (code, error) = match self {
            Self::Usage(e) => (2, e),
            Self::Runtime(e) => (1, e),
        };
        eprintln!("enforcer: error: {error:#}");
        ExitCode::from(code)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // clap exits with code 2 on bad usage by itself.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Config(ConfigCommand::Check(args)) => config_check::execute(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

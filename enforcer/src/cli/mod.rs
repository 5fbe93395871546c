//! The `enforcer` command line: one module per subcommand, each with `execute()`.
//! Doc comments are the `--help` text. Exit codes: 0 done, 1 failed, 2 bad input
//! (nothing was changed).

mod chaos;
mod class;
mod client;
mod completions;
mod config_check;
mod dest;
mod events;
mod metrics;
mod policy;
mod run;
mod status;
mod switch;
mod top;
mod uninstall;

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
    /// Run the daemon in the foreground: install (or adopt) the kernel programs,
    /// apply the policies, serve the control API and the metrics.
    Run(run::Args),
    /// Destinations: state, connections, failures, rejections.
    Status(status::Args),
    /// Policies: list, show, set, rm, apply.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Priority classes: list, show.
    #[command(subcommand)]
    Class(class::Command),
    /// Force a destination open (rejected as if tripped), until reset or for a while.
    Trip(dest::TripArgs),
    /// Close a destination's circuit as new (in one network namespace, or in
    /// all and remove its override).
    Reset(dest::ResetArgs),
    /// Let a destination pass untouched (no accounting, no rejection).
    Disable(dest::TripArgs),
    /// Global switch off: every program passes every connection untouched.
    Pause(client::Connection),
    /// Global switch on again.
    Resume(client::Connection),
    /// The destinations live in the terminal: state, time left open, rates,
    /// rejections; trip or reset the selected one.
    Top(top::Args),
    /// Follow transitions and overrides as they happen (one JSON line each).
    Events(client::Connection),
    /// Print the Prometheus metrics.
    Metrics(client::Connection),
    /// Chaos experiments: faults injected by the kernel, with a blast radius,
    /// a safety valve and a report.
    #[command(subcommand)]
    Chaos(chaos::Command),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Detach and unpin everything (through the daemon if it runs).
    Uninstall(uninstall::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check(config_check::Args),
}

/// How a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad input (configuration, flags, a request the daemon refused): exit code
    /// 2, nothing was changed.
    Usage(anyhow::Error),
    /// Anything else: exit code 1.
    Runtime(anyhow::Error),
}

impl std::fmt::Display for Failure {
    /// The error and its causes, on one line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Self::Usage(e) | Self::Runtime(e)) = self;
        write!(f, "{e:#}")
    }
}

impl Failure {
    fn exit(self) -> ExitCode {
        eprintln!("enforcer: error: {self}");
        ExitCode::from(match self {
            Self::Usage(_) => 2,
            Self::Runtime(_) => 1,
        })
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // clap exits with code 2 on bad usage by itself.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Status(args) => status::execute(args),
        Command::Policy(command) => policy::execute(command),
        Command::Class(command) => class::execute(command),
        Command::Trip(args) => dest::trip(args),
        Command::Reset(args) => dest::reset(args),
        Command::Disable(args) => dest::disable(args),
        Command::Pause(args) => switch::execute(args, true),
        Command::Resume(args) => switch::execute(args, false),
        Command::Top(args) => top::execute(args),
        Command::Events(args) => events::execute(args),
        Command::Metrics(args) => metrics::execute(args),
        Command::Chaos(command) => chaos::execute(command),
        Command::Config(ConfigCommand::Check(args)) => config_check::execute(args),
        Command::Uninstall(args) => uninstall::execute(args),
        Command::Completions(args) => completions::execute(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_reads_classes() {
        Cli::command().debug_assert();
        let show = Cli::try_parse_from(["enforcer", "class", "show", "batch"]).unwrap();
        assert!(
            matches!(&show.command, Command::Class(class::Command::Show { name, .. }) if name == "batch"),
            "{show:?}"
        );
        let list = Cli::try_parse_from(["enforcer", "class", "list", "-o", "json"]).unwrap();
        assert!(
            matches!(
                &list.command,
                Command::Class(class::Command::List {
                    output: client::Output::Json,
                    ..
                })
            ),
            "{list:?}"
        );
        let status = Cli::try_parse_from(["enforcer", "status", "--class", "batch"]).unwrap();
        assert!(
            format!("{status:?}").contains("class: Some(\"batch\")"),
            "{status:?}"
        );
        assert!(Cli::try_parse_from(["enforcer", "class", "show"]).is_err());
    }
}

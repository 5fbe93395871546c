//! `cargo xtask`: everything the README asks a person to run.

mod bench;
mod build;
mod cmd;
mod run;
mod test;
mod toolchain;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check (and install) the toolchain, then build the daemon with its programs.
    Build,
    /// Check the toolchain, lint, run host tests, then the privileged integration
    /// tests (root) one at a time.
    Test(test::Args),
    /// Check the toolchain, build, and run `enforcer run ARGS` in the foreground.
    Run(run::Args),
    /// Check the toolchain, build the benchmarks (release), and run them as root:
    /// markdown tables on stdout, the figures in target/bench/results.json.
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Build => build::execute(),
        Command::Test(args) => test::execute(args),
        Command::Run(args) => run::execute(args),
        Command::Bench(args) => bench::execute(args),
    }
}

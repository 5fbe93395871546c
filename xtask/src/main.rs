//! `cargo xtask`: everything the README asks a person to run.

mod bench;
mod build;
mod cmd;
mod demo;
mod dist;
mod fuzz;
mod guest;
mod kernel;
mod run;
mod soak;
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
    /// What the enforcer does, in two minutes, as root, on nothing but what
    /// the demo makes and removes: a backend in a network namespace, a client
    /// in a scratch cgroup, a daemon of its own; the backend stops and comes
    /// back.
    Demo(demo::Args),
    /// Render and validate what enforcer/dist ships for operators: the
    /// Kubernetes manifests (kubectl kustomize, kubernetes-validate) and the
    /// alerting rules (promtool check and test). Part of `test`.
    Dist,
    /// Kill -9 and restart the daemon N times under load (root): one program
    /// per hook every time, exact slots at the end, and the time taken.
    Soak(soak::Args),
    /// Inside a test kernel's guest (`test --kernel`): runs test binaries and
    /// records their results for the host.
    #[command(hide = true)]
    GuestTests(guest::Args),
    /// Check the toolchain (and cargo-fuzz), build the fuzz targets in
    /// tests/fuzz, and run each for a while from its seeds: a crash fails,
    /// naming the input, kept under target/fuzz/artifacts.
    Fuzz(fuzz::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Build => build::execute(),
        Command::Test(args) => test::execute(args),
        Command::Run(args) => run::execute(args),
        Command::Bench(args) => bench::execute(args),
        Command::Demo(args) => demo::execute(args),
        Command::Dist => dist::check(),
        Command::Soak(args) => soak::execute(args),
        Command::GuestTests(args) => guest::execute(args),
        Command::Fuzz(args) => fuzz::execute(args),
    }
}

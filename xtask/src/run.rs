//! `cargo xtask run [-- ARGS]`

use std::os::unix::process::CommandExt as _;

use anyhow::bail;

use crate::{build, cmd, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Passed to `enforcer run`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn execute(Args { args }: Args) -> anyhow::Result<()> {
    toolchain::ensure()?;
    build::build_daemon()?;
    if !cmd::is_root() {
        bail!("`enforcer run` loads BPF programs and attaches to cgroups: run as root");
    }
    let binary = cmd::workspace_root().join("target/debug/enforcer");
    let mut command = std::process::Command::new(&binary);
    command.arg("run").args(&args);
    eprintln!("xtask: $ {} run {}", binary.display(), args.join(" "));
    // Replace xtask so that signals (Ctrl-C, SIGTERM) reach the daemon directly.
    Err(command.exec().into())
}

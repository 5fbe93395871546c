//! `cargo xtask build`

use crate::{cmd, toolchain};

pub fn execute() -> anyhow::Result<()> {
    toolchain::ensure()?;
    build_daemon()
}

/// Builds the `enforcer` binary (debug profile) with its eBPF object.
pub fn build_daemon() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["build", "--package", "enforcer"]))
}

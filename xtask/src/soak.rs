//! `cargo xtask soak [--cycles N]`: the daemon killed with SIGKILL and
//! restarted N times (1000) under connect load from the protected cgroup,
//! checked each time for one program per hook and at the end for exact slots
//! (`tests/tests/crashes.rs`). Minutes, so not part of `cargo xtask test`.

use anyhow::bail;

use crate::{cmd, test, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill and restart cycles.
    #[arg(long, default_value_t = 1_000)]
    cycles: u32,
}

pub fn execute(Args { cycles }: Args) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("the soak loads BPF programs and creates cgroups: run `cargo xtask soak` as root");
    }
    toolchain::ensure()?;
    cmd::run(cmd::cargo().args(test::ENFORCER_BUILD))?;
    cmd::run(
        cmd::cargo()
            .env(
                "ENFORCER_BIN",
                crate::bench::target_dir().join("debug/enforcer"),
            )
            .env("ENFORCER_SOAK_CYCLES", cycles.to_string())
            .args([
                "test",
                "--package",
                "enforcer-tests",
                "--test",
                "crashes",
                "--",
                "--ignored",
                "--exact",
                "soak_kill_9_and_restart_under_load",
                "--nocapture",
            ]),
    )
}

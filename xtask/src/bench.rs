//! `cargo xtask bench [--quick] [--only N,M]`: the benchmarks of issue 5, the
//! packet plane's cost and adaptive limits under overload (issue 13).
//!
//! Builds `enforcer-bench` (`tests/bench/`, a crate of its own on the harness in
//! `tests/src/`) and the `enforcer` daemon (which scenarios 4, 8 and 10 run) in
//! release mode, since timings of a debug build would measure the debug build,
//! and runs the benchmarks as root. It prints a markdown table per scenario and
//! writes the same figures to `target/bench/results.json`.

use std::{env, path::PathBuf, process::Command};

use anyhow::bail;

use crate::{cmd, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run every scenario briefly (seconds, not a minute): rough figures, to
    /// check that the benchmarks still run.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (comma-separated numbers, e.g. `4,5`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
}

pub fn execute(Args { quick, only }: Args) -> anyhow::Result<()> {
    // Before the toolchain and the build, which take minutes on a fresh machine.
    if !cmd::is_root() {
        bail!(
            "the benchmarks load BPF programs and create cgroups and network namespaces: \
             run `cargo xtask bench` as root"
        );
    }
    toolchain::ensure()?;
    run_only(quick, &only)
}

/// Builds and runs every benchmark (the toolchain is there, we are root).
pub fn run(quick: bool) -> anyhow::Result<()> {
    run_only(quick, &[])
}

/// Builds and runs the benchmarks `only` (all when empty).
fn run_only(quick: bool, only: &[u32]) -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--package",
        "enforcer",
        "--package",
        "enforcer-bench",
    ]))?;
    let target = target_dir();
    let mut bench = Command::new(target.join("release/enforcer-bench"));
    bench
        .current_dir(cmd::workspace_root())
        // The daemon the harness starts (tests/src/daemon.rs reads it).
        .env("ENFORCER_BIN", target.join("release/enforcer"))
        .arg("--json")
        .arg(target.join("bench/results.json"));
    if quick {
        bench.arg("--quick");
    }
    if !only.is_empty() {
        let list: Vec<String> = only.iter().map(u32::to_string).collect();
        bench.arg("--only").arg(list.join(","));
    }
    cmd::run(&mut bench)
}

/// Where cargo puts its output: `CARGO_TARGET_DIR` (relative to the workspace
/// root if relative), else `target/` at the root.
pub fn target_dir() -> PathBuf {
    let root = cmd::workspace_root();
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

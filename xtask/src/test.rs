//! `cargo xtask test`: the README's test command, and what CI runs.

use anyhow::bail;

use crate::{bench, cmd, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the privileged tests whose name contains this.
    filter: Option<String>,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    toolchain::ensure()?;
    lint()?;
    host_tests()?;
    require_root()?;
    if args.filter.is_none() {
        // Once, briefly, so the benchmarks cannot rot; nothing asserts a timing.
        bench::run(true)?;
    }
    privileged_tests(args.filter.as_deref())
}

fn require_root() -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!(
            "the privileged integration tests need root (BPF, cgroups, network \
             namespaces): run `cargo xtask test` as root"
        );
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))?;
    // Host crates and the eBPF crate separately: they build for different targets
    // with different toolchains.
    cmd::run(cmd::cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "enforcer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(cmd::cargo().args([
        "+nightly",
        "clippy",
        "--package",
        "enforcer-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))
}

fn host_tests() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "enforcer-ebpf",
        "--exclude",
        "enforcer-tests",
    ]))
}

fn privileged_tests(filter: Option<&str>) -> anyhow::Result<()> {
    // The daemon tests drive the real binary.
    cmd::run(cmd::cargo().args(["build", "--package", "enforcer"]))?;
    let mut cargo = cmd::cargo();
    cargo
        .env(
            "ENFORCER_BIN",
            cmd::workspace_root().join("target/debug/enforcer"),
        )
        .args([
            "test",
            "--package",
            "enforcer-tests",
            "--",
            "--test-threads=1",
        ]);
    if let Some(filter) = filter {
        cargo.arg(filter);
    }
    cmd::run(&mut cargo)
}

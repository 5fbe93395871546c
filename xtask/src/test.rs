//! `cargo xtask test`: the README's test command, and what CI runs.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};

use crate::{bench, cmd, demo, dist, fuzz, kernel, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the privileged tests whose name contains this (with `--kernel`,
    /// a test binary's name runs that binary whole).
    filter: Option<String>,
    /// Run the privileged tests inside this kernel instead of the host's:
    /// Debian's package of the series (`6.1`), booted under qemu.
    #[arg(long, value_name = "SERIES")]
    kernel: Option<String>,
}

/// The daemon the privileged tests drive: with its crash points
/// (`enforcer::crash`), which only `FAILPOINTS` arms.
pub const ENFORCER_BUILD: [&str; 5] = [
    "build",
    "--package",
    "enforcer",
    "--features",
    "crash-points",
];

/// The LTS kernel every `cargo xtask test` also checks.
const LTS: &str = "6.1";

/// What `cargo xtask test` runs on [`LTS`]: every program loads and verifies,
/// and one trip, one cap, one packet-plane RST on a real interface, a failed
/// install and the daemon's lifecycle work there. `cargo xtask test --kernel
/// 6.1` runs them all.
const LTS_SMOKE: [(&str, &str); 6] = [
    (
        "modes",
        "the_verifier_accepts_every_program_far_below_its_limit",
    ),
    (
        "breaker",
        "refused_connects_trip_and_later_connects_fail_fast_inside_only",
    ),
    ("bulkhead", "sixty_four_clients_against_a_cap_of_ten"),
    (
        "packet_routed",
        "a_guest_is_tripped_by_packets_alone_refused_by_the_kernel_then_recovers",
    ),
    (
        "lifecycle",
        "a_failed_install_leaves_nothing_pinned_or_attached",
    ),
    (
        "daemon",
        "kill_9_keeps_enforcing_the_restart_adopts_and_uninstall_removes_everything",
    ),
];

/// Test binaries that offer a backend more load than it serves and judge the
/// latencies: a 2-CPU emulated guest cannot generate that load, so their
/// figures there say nothing of the kernel. They run on the host's kernel;
/// what they rely on in the kernel (the response signal, the learnt cap,
/// classes, ejection) runs on [`LTS`] in `signals`, `bulkhead`,
/// `class_shares` and `ejection`.
const LOAD_TESTS: [&str; 4] = ["adaptive", "baselines", "capacity", "outliers"];

/// How long a guest may run: the whole suite takes about ten times the host's
/// time under emulation.
const GUEST_DEADLINE: Duration = Duration::from_secs(80 * 60);

pub fn execute(args: Args) -> anyhow::Result<()> {
    toolchain::ensure()?;
    if let Some(series) = &args.kernel {
        // Lints, host tests and benchmarks do not depend on the kernel.
        require_root()?;
        let (load, binaries): (Vec<_>, Vec<_>) = test_binaries()?
            .into_iter()
            .partition(|(name, _)| LOAD_TESTS.contains(&name.as_str()));
        let load: Vec<&str> = load.iter().map(|(name, _)| name.as_str()).collect();
        eprintln!(
            "xtask: not run under emulation (load tests, run on the host's kernel): {}",
            load.join(", ")
        );
        // A filter that names a test binary runs that binary, whole.
        let named = args.filter.as_deref();
        let (binaries, filter) = match binaries.iter().any(|(n, _)| Some(n.as_str()) == named) {
            true => (
                binaries
                    .into_iter()
                    .filter(|(n, _)| Some(n.as_str()) == named)
                    .collect(),
                None,
            ),
            false => (binaries, named),
        };
        let tests: Vec<_> = binaries.into_iter().map(|(n, p)| (n, p, None)).collect();
        return kernel::run_tests(&kernel::ensure(series)?, &tests, filter, GUEST_DEADLINE);
    }
    lint()?;
    host_tests()?;
    require_root()?;
    dist::check()?;
    if args.filter.is_none() {
        // Once, briefly, so the benchmarks and fuzz targets cannot rot; nothing
        // asserts a timing.
        bench::run(true)?;
        fuzz::smoke()?;
    }
    privileged_tests(args.filter.as_deref())?;
    if args.filter.is_none() {
        // The first-run demo, on its short schedule: its story and its
        // cleanup are checked.
        demo::quick()?;
        lts_smoke()?;
    }
    Ok(())
}

fn lts_smoke() -> anyhow::Result<()> {
    let binaries = test_binaries()?;
    let mut tests = Vec::new();
    for (binary, test) in LTS_SMOKE {
        let (_, path) = binaries
            .iter()
            .find(|(name, _)| name == binary)
            .with_context(|| format!("no test binary `{binary}`"))?;
        tests.push((binary.to_owned(), path.clone(), Some(test.to_owned())));
    }
    kernel::run_tests(&kernel::ensure(LTS)?, &tests, None, GUEST_DEADLINE)
}

/// Builds the daemon and the privileged test binaries; each binary's name and
/// path.
fn test_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    cmd::run(cmd::cargo().args(ENFORCER_BUILD))?;
    let out = cmd::cargo()
        .args([
            "test",
            "--package",
            "enforcer-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("building the test binaries")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = message["reason"] == "compiler-artifact"
            && message["target"]["kind"] == serde_json::json!(["test"]);
        if let (true, Some(name), Some(path)) = (
            is_test,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            binaries.push((name.to_owned(), PathBuf::from(path)));
        }
    }
    binaries.sort();
    Ok(binaries)
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
    // The fuzz targets are a workspace of their own (nightly, libFuzzer).
    cmd::run(cmd::cargo().args(["fmt", "--manifest-path", "tests/fuzz/Cargo.toml", "--check"]))?;
    cmd::run(cmd::cargo().args([
        "+nightly",
        "clippy",
        "--manifest-path",
        "tests/fuzz/Cargo.toml",
        "--target-dir",
        "target/fuzz/clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Host crates and the eBPF crate separately: they build for different targets
    // with different toolchains. `--workspace` takes in the non-default members
    // too: the integration tests (`enforcer-tests`) and the benchmarks
    // (`enforcer-bench`).
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

/// Every unit test that needs no privilege, the benchmarks' own (their
/// statistics and wire format) included.
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
    cmd::run(cmd::cargo().args(ENFORCER_BUILD))?;
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

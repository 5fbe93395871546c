//! `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets in
//! `tests/fuzz` (packet, config, api, cli), each for N seconds.
//!
//! A run starts from the checked-in seeds (`tests/fuzz/corpus/TARGET`), copied
//! into a scratch corpus under `target/fuzz/corpus/TARGET` that libFuzzer grows
//! and the next run resumes from: nothing is written into the repository. A
//! crash fails the command and names the input that crashed, kept under
//! `target/fuzz/artifacts/TARGET/`; each one becomes a regression test in the
//! crate where the bug is.
//!
//! The targets are built without a sanitizer: the code under test is safe
//! Rust, where an index out of bounds or an overflow panics anyway (cargo-fuzz
//! builds with debug assertions and overflow checks), and AddressSanitizer
//! would cost about half the executions for nothing it could add.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{Context as _, bail};

use crate::{cmd, toolchain};

/// A fuzz target and the longest input worth generating for it.
struct Target {
    name: &'static str,
    max_len: u32,
}

/// Every target, in the order they run. Lengths: a frame beyond the 192 bytes
/// the programs copy only changes its length; the largest configuration seed
/// is the embedded defaults (about 5 KiB); a request line, headers and a
/// policy body; a destination, duration, rule or namespace name.
const TARGETS: [Target; 4] = [
    Target {
        name: "packet",
        max_len: 256,
    },
    Target {
        name: "config",
        max_len: 8192,
    },
    Target {
        name: "api",
        max_len: 4096,
    },
    Target {
        name: "cli",
        max_len: 128,
    },
];

/// Seconds per target in [`smoke`]: the seeds replayed, then a few seconds of
/// mutation.
const SMOKE_SECONDS: u32 = 5;

/// An input running longer than this is reported as a hang.
const INPUT_TIMEOUT_SECONDS: u32 = 10;

/// The cargo-fuzz release installed when none is (its `--locked` dependency set).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// What `cargo xtask test` runs: every target for a few seconds, from its
    /// seeds alone.
    #[arg(long, conflicts_with_all = ["seconds", "target"])]
    smoke: bool,
    /// Only this target: packet, config, api or cli.
    target: Option<String>,
}

pub fn execute(
    Args {
        seconds,
        smoke: smoke_only,
        target,
    }: Args,
) -> anyhow::Result<()> {
    if smoke_only {
        toolchain::ensure()?;
        return smoke();
    }
    let targets: Vec<&Target> = match target.as_deref() {
        None => TARGETS.iter().collect(),
        Some(name) => match TARGETS.iter().find(|t| t.name == name) {
            Some(t) => vec![t],
            None => {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                bail!("no fuzz target `{name}`; one of {}", names.join(", "));
            }
        },
    };
    toolchain::ensure()?;
    fuzz(&targets, seconds, Corpus::Resume)
}

/// Every target for a few seconds from its seeds alone, for `cargo xtask test`:
/// the targets keep building and the seeds keep passing. Expects the toolchain
/// checked (nightly is what it needs).
pub fn smoke() -> anyhow::Result<()> {
    let targets: Vec<&Target> = TARGETS.iter().collect();
    fuzz(&targets, SMOKE_SECONDS, Corpus::Fresh)
}

/// Where a run's corpus starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Corpus {
    /// The seeds and whatever earlier runs added.
    Resume,
    /// The seeds alone, so that the run is the same every time.
    Fresh,
}

fn fuzz(targets: &[&Target], seconds: u32, corpus: Corpus) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let root = cmd::workspace_root();
    let scratch = root.join("target/fuzz");
    let triple = host_triple();
    // All targets in one build, so that each run below only starts a binary.
    build(&triple)?;
    let binaries = scratch.join("cargo").join(&triple).join("release");
    for target in targets {
        let corpus_dir = match corpus {
            Corpus::Resume => scratch.join("corpus").join(target.name),
            Corpus::Fresh => scratch.join("smoke").join(target.name),
        };
        if corpus == Corpus::Fresh && corpus_dir.exists() {
            fs::remove_dir_all(&corpus_dir)
                .with_context(|| format!("removing {}", corpus_dir.display()))?;
        }
        copy_seeds(
            &root.join("tests/fuzz/corpus").join(target.name),
            &corpus_dir,
        )?;
        let artifacts = scratch.join("artifacts").join(target.name);
        fs::create_dir_all(&artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        let binary = binaries.join(target.name);
        let started = SystemTime::now();
        let result = cmd::run(
            Command::new(&binary)
                .current_dir(&root)
                .arg(&corpus_dir)
                .arg(format!("-max_total_time={seconds}"))
                .arg(format!("-max_len={}", target.max_len))
                .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
                // libFuzzer joins prefix and file name as strings.
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-print_final_stats=1"),
        );
        if let Err(e) = result {
            let found = artifacts_since(&artifacts, started);
            if found.is_empty() {
                return Err(e);
            }
            for input in &found {
                eprintln!(
                    "xtask: {} failed on {}; replay it with `{} {}`",
                    target.name,
                    input.display(),
                    binary.display(),
                    input.display()
                );
            }
            bail!("fuzz target {} crashed", target.name);
        }
    }
    Ok(())
}

/// Builds every target with `cargo +nightly fuzz` into `target/fuzz/cargo`.
fn build(triple: &str) -> anyhow::Result<()> {
    cmd::run(
        cmd::cargo()
            // The targets do not use the eBPF object: built only if bpf-linker is there.
            .env_remove("ENFORCER_REQUIRE_EBPF")
            .args(["+nightly", "fuzz", "build", "--fuzz-dir", "tests/fuzz"])
            .args(["--target-dir", "target/fuzz/cargo", "--target", triple])
            .args(["--sanitizer", "none", "--debug-assertions"]),
    )
}

/// The triple cargo-fuzz builds for: this machine's.
fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Copies the seeds in `from` into `to` (created if missing).
fn copy_seeds(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// Inputs libFuzzer wrote into `dir` (crashes, hangs, leaks) since `since`.
fn artifacts_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Installs cargo-fuzz unless a `cargo-fuzz` is installed already (then it is
/// left alone, whoever installed it).
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if cmd::cargo_bin_dir().join("cargo-fuzz").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (a minute or two, once)");
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

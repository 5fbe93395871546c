//! Checks the toolchain and installs what is missing, saying what it does. What
//! is already there is left alone, so a second run costs seconds.
//!
//! - nightly with `rust-src` (the eBPF crate builds `core` for the BPF target);
//! - Debian's `llvm-N-dev`, N = the LLVM major of `rustc +nightly -vV`;
//! - `bpf-linker` built against that LLVM;
//! - the Debian packages the tests use.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd;

/// bpf-linker release built by xtask (its `--locked` dependency set).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests and the link of bpf-linker use, beyond LLVM itself
/// (`tmux`: the terminal `enforcer top` is tested in).
const TEST_PACKAGES: [&str; 6] = ["iproute2", "nftables", "curl", "bpftool", "haproxy", "tmux"];

pub fn ensure() -> anyhow::Result<()> {
    ensure_rust()?;
    let llvm = nightly_llvm_major()?;
    let mut packages: Vec<String> = vec![
        format!("llvm-{llvm}-dev"),
        // llvm-config --link-static names Polly, zlib and zstd.
        format!("libpolly-{llvm}-dev"),
        "zlib1g-dev".into(),
        "libzstd-dev".into(),
    ];
    packages.extend(TEST_PACKAGES.map(String::from));
    ensure_debian_packages(&packages)?;
    ensure_bpf_linker(llvm)
}

fn rustup() -> Command {
    let mut c = Command::new(cmd::cargo_bin_dir().join("rustup"));
    c.env_remove("RUSTUP_TOOLCHAIN");
    c
}

fn installed_components(toolchain: &str) -> anyhow::Result<String> {
    let out =
        cmd::capture(rustup().args(["component", "list", "--installed", "--toolchain", toolchain]))
            .context("running rustup (is rustup installed?)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_rust() -> anyhow::Result<()> {
    let toolchains = cmd::capture(rustup().args(["toolchain", "list"]))
        .context("running rustup (is rustup installed?)")?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        eprintln!("xtask: installing the nightly toolchain (the eBPF crate needs it)");
        cmd::run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    for (toolchain, components) in [
        ("nightly", &["rust-src", "clippy"][..]),
        ("stable", &["rustfmt", "clippy"][..]),
    ] {
        let installed = installed_components(toolchain)?;
        for component in components {
            if !installed.lines().any(|l| l.starts_with(component)) {
                eprintln!("xtask: adding {component} to {toolchain}");
                cmd::run(rustup().args(["component", "add", component, "--toolchain", toolchain]))?;
            }
        }
    }
    Ok(())
}

/// The LLVM major version of the nightly compiler.
fn nightly_llvm_major() -> anyhow::Result<u32> {
    let out = cmd::capture(rustup().args(["run", "nightly", "rustc", "-vV"]))
        .context("running rustc +nightly -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_llvm_major(&text)
        .with_context(|| format!("no LLVM version in `rustc +nightly -vV`:\n{text}"))
}

fn parse_llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.trim().parse().ok())
}

fn is_installed(package: &str) -> bool {
    cmd::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|o| o.status.success() && o.stdout.ends_with(b"install ok installed"))
}

pub fn ensure_debian_packages(packages: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .map(String::as_str)
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "missing Debian packages: {} (run as root, or `apt-get install` them)",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}

/// Records which LLVM the installed bpf-linker was built against.
fn bpf_linker_stamp() -> PathBuf {
    cmd::cargo_bin_dir().join(".bpf-linker-llvm")
}

fn ensure_bpf_linker(llvm: u32) -> anyhow::Result<()> {
    let installed = cmd::cargo_bin_dir().join("bpf-linker");
    let stamp = fs::read_to_string(bpf_linker_stamp()).ok();
    match (installed.is_file(), stamp.as_deref().map(str::trim)) {
        (true, Some(s)) if s == llvm.to_string() => return Ok(()),
        (true, None) => {
            // Installed by someone else: leave it alone, as promised.
            return Ok(());
        }
        (true, Some(other)) => {
            eprintln!(
                "xtask: bpf-linker was built for LLVM {other}, nightly uses {llvm}: rebuilding"
            );
        }
        (false, _) => eprintln!(
            "xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (a few minutes, once)"
        ),
    }
    let llvm_bin = format!("/usr/lib/llvm-{llvm}/bin");
    let path = std::env::join_paths(
        std::iter::once(PathBuf::from(&llvm_bin))
            .chain(std::env::split_paths(&cmd::path_with_cargo_bin())),
    )?;
    cmd::run(
        cmd::cargo()
            .env("PATH", path)
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ]),
    )?;
    fs::write(bpf_linker_stamp(), format!("{llvm}\n")).context("writing the bpf-linker stamp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let text =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(text), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }
}

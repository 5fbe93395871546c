//! Running commands, saying what runs.

use std::{
    env,
    ffi::OsString,
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// `$CARGO_HOME/bin`, where rustup's proxies and `cargo install` put binaries.
pub fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// PATH with `$CARGO_HOME/bin` first, so freshly installed tools are found.
pub fn path_with_cargo_bin() -> OsString {
    let mut dirs = vec![cargo_bin_dir()];
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    env::join_paths(dirs).expect("PATH entries contain no separator")
}

/// A `cargo` command through rustup's proxy (so `+nightly` works), at the
/// workspace root, requiring the eBPF object to be built.
pub fn cargo() -> Command {
    let mut cmd = Command::new(cargo_bin_dir().join("cargo"));
    cmd.current_dir(workspace_root())
        .env("PATH", path_with_cargo_bin())
        .env("ENFORCER_REQUIRE_EBPF", "1")
        // Set by the cargo that runs xtask; the child picks its own toolchain.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` with inherited output; fails if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("spawning {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing its output; `None` if it cannot be spawned.
pub fn capture(cmd: &mut Command) -> Option<Output> {
    cmd.output().ok()
}

/// Whether the current user is root.
pub fn is_root() -> bool {
    // Avoids a libc dependency: /proc/self/status has "Uid: real effective ...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

//! Builds the eBPF object (`enforcer-ebpf`) with nightly and bpf-linker and puts it
//! in `OUT_DIR`, where `src/bpf/object.rs` embeds it.
//!
//! Without bpf-linker on the machine, a plain `cargo build` / `cargo test` still
//! works (host unit tests need no kernel programs): the binary is then built
//! without the object and `enforcer run` refuses to start, saying so.
//! `cargo xtask` sets `ENFORCER_REQUIRE_EBPF=1`, which turns that into an error.

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

const REQUIRE: &str = "ENFORCER_REQUIRE_EBPF";

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(enforcer_no_ebpf)");
    println!("cargo:rerun-if-env-changed={REQUIRE}");
    let required = std::env::var_os(REQUIRE).is_some_and(|v| v == "1");
    if which::which("bpf-linker").is_err() {
        if required {
            bail!("bpf-linker is not on PATH; `cargo xtask` installs it");
        }
        println!(
            "cargo:warning=bpf-linker not found: building enforcer without its eBPF \
             programs (`enforcer run` will refuse to start). `cargo xtask run` installs it."
        );
        println!("cargo:rustc-cfg=enforcer_no_ebpf");
        return Ok(());
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../enforcer-ebpf");
    let package = Package {
        name: "enforcer-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default()).context("building enforcer-ebpf")
}

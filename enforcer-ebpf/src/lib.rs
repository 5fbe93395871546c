//! Empty on purpose: the programs are the `enforcer-ebpf` binary (see `main.rs`).
//! This library target exists so that `enforcer` can name this crate as a
//! build-dependency, which makes cargo rebuild the eBPF object whenever this crate
//! or `enforcer-common` changes.
#![no_std]

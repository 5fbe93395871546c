//! Link options for bpf-linker.

fn main() {
    // bpf-linker passes `--bpf-expand-memcpy-in-order` to LLVM by default, which
    // also stops LLVM from expanding `memset` inline: every zeroing of a few
    // adjacent fields (LLVM merges them into one `memset`) becomes a call. Under
    // a spin lock Linux 6.1 allows no call, so let LLVM expand them into stores.
    // `enforcer`'s lock_check test proves it on the emitted object.
    println!("cargo::rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}

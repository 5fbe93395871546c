//! The eBPF object built by `build.rs`, embedded in the binary.

/// The object's bytes, or `None` when the binary was built without bpf-linker.
#[cfg(not(enforcer_no_ebpf))]
pub fn bytes() -> Option<&'static [u8]> {
    let bytes: &'static [u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer-ebpf"));
    Some(bytes)
}

/// The object's bytes, or `None` when the binary was built without bpf-linker.
#[cfg(enforcer_no_ebpf)]
pub fn bytes() -> Option<&'static [u8]> {
    None
}

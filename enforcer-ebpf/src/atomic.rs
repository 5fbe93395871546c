//! Atomic read-modify-write on map values, compiled to BPF atomic instructions.

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd};

/// `*dst += v`, atomically.
#[inline(always)]
pub fn add_u64(dst: *mut u64, v: u64) {
    // SAFETY: callers pass pointers into map values returned by lookup helpers,
    // which stay valid for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, v) };
}

/// `*dst |= bits`, atomically; returns the previous value.
#[inline(always)]
pub fn fetch_or_u64(dst: *mut u64, bits: u64) -> u64 {
    // SAFETY: as in `add_u64`.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

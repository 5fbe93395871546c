//! Atomic read-modify-write on map values, compiled to BPF atomic instructions.
//! 64-bit only, and adds return nothing: the BPF target's default cpu (v1) has
//! neither 32-bit atomics nor a fetching add ("Invalid usage of the XADD return
//! value").

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd, atomic_xsub};

/// `*dst += v`, atomically.
#[inline(always)]
pub fn add(dst: *mut u64, v: u64) {
    // SAFETY: callers pass pointers into map values returned by lookup helpers,
    // which stay valid for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, v) };
}

/// `*dst -= v`, atomically.
#[inline(always)]
pub fn sub(dst: *mut u64, v: u64) {
    // SAFETY: as in `add`.
    unsafe { atomic_xsub::<u64, u64, { AtomicOrdering::Relaxed }>(dst, v) };
}

/// `*dst`, read once.
#[inline(always)]
pub fn load(src: *const u64) -> u64 {
    // SAFETY: as in `add`.
    unsafe { core::ptr::read_volatile(src) }
}

/// `*dst |= bits`, atomically; returns the previous value.
#[inline(always)]
pub fn fetch_or(dst: *mut u64, bits: u64) -> u64 {
    // SAFETY: as in `add`.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

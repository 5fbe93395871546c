//! Atomic read-modify-write on map values, compiled to BPF atomic instructions.
//! 64-bit only, and adds return nothing: the BPF target's default cpu (v1) has
//! neither 32-bit atomics nor a fetching add ("Invalid usage of the XADD return
//! value").

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_or, atomic_xadd};

/// Compare-and-swap attempts of [`sub_saturating`] before it gives up. A
/// failure means another CPU changed the same count in the few instructions
/// between the load and the swap; two in a row are rare enough. Each try is
/// a branch the verifier follows at every call site: measured on 6.18, three
/// tries double `packet_in_xdp`'s verification (60k to 115k instructions),
/// two cost it 5 %.
const CAS_TRIES: usize = 2;

/// `*dst += v`, atomically.
#[inline(always)]
pub fn add(dst: *mut u64, v: u64) {
    // SAFETY: callers pass pointers into map values returned by lookup helpers,
    // which stay valid for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, v) };
}

/// `*dst -= v`, atomically, stopping at 0 instead of wrapping: a count that
/// drifted low (a race the daemon's reconciliation corrects later) must not
/// become 2^64 - 1. When other CPUs kept changing the value through every
/// try, nothing is subtracted and the count errs high, which the
/// reconciliation corrects too.
#[inline(always)]
pub fn sub_saturating(dst: *mut u64, v: u64) {
    let mut current = load(dst);
    for _ in 0..CAS_TRIES {
        // SAFETY: as in `add`.
        let (seen, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                dst,
                current,
                current.saturating_sub(v),
            )
        };
        if swapped {
            return;
        }
        current = seen;
    }
}

/// `*dst`, read once.
#[inline(always)]
pub fn load(src: *const u64) -> u64 {
    // SAFETY: as in `add`.
    unsafe { core::ptr::read_volatile(src) }
}

/// `*dst = to` if `*dst == from`, atomically; whether it was.
#[inline(always)]
pub fn swap_if(dst: *mut u64, from: u64, to: u64) -> bool {
    // SAFETY: as in `add`.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(dst, from, to)
    }
    .1
}

/// `*dst |= bits`, atomically; returns the previous value.
#[inline(always)]
pub fn fetch_or(dst: *mut u64, bits: u64) -> u64 {
    // SAFETY: as in `add`.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

/// `*dst += 1` if `*dst < cap`, atomically; whether it was added. When other
/// CPUs kept changing the value through every try, nothing is added: a capped
/// count errs low, never past its cap.
#[inline(always)]
pub fn add_below(dst: *mut u64, cap: u64) -> bool {
    let mut current = load(dst);
    for _ in 0..CAS_TRIES {
        if current >= cap {
            return false;
        }
        // SAFETY: as in `add`.
        let (seen, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                dst,
                current,
                current + 1,
            )
        };
        if swapped {
            return true;
        }
        current = seen;
    }
    false
}

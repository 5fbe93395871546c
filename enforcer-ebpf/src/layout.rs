//! The few kernel socket fields the programs read beyond what their contexts
//! expose, at offsets the daemon finds in the running kernel's BTF and sets
//! as read-only globals before loading (names in
//! `enforcer_common::maps::globals`). The verifier sees the values of a
//! frozen read-only map as constants, so each read is a plain load from a
//! BTF-typed socket pointer that it checks against the kernel's own types; an
//! offset of 0 (unknown) compiles the read away.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::bpf_skc_to_tcp_sock;

#[unsafe(no_mangle)]
static SK_ERR_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static UC_TTL_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static MIN_TTL: u32 = 0;

/// A global as the loader set it: read through a volatile load, so the
/// compiler cannot fold the placeholder value in.
#[inline(always)]
fn global(g: &'static u32) -> u32 {
    // SAFETY: a plain static of the object.
    unsafe { ptr::read_volatile(g) }
}

/// The socket's `sk_err`, if the kernel's layout is known.
///
/// # Safety
/// `sk` must be a non-null socket pointer handed by the kernel to this program.
#[inline(always)]
pub unsafe fn sk_err(sk: *mut c_void) -> Option<i32> {
    let offset = global(&SK_ERR_OFFSET);
    if offset == 0 {
        return None;
    }
    // SAFETY: the caller passes a socket; the helper returns a BTF-typed
    // `tcp_sock` or null.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk) };
    if tp.is_null() {
        return None;
    }
    // SAFETY: `offset` is the field's offset in this kernel's `struct sock`,
    // which starts `struct tcp_sock`; the verifier checks the access.
    Some(unsafe { ptr::read_volatile(tp.cast::<u8>().add(offset as usize).cast::<i32>()) })
}

/// Whether the caller set its socket's IPv4 TTL below the system's default.
///
/// # Safety
/// As [`sk_err`].
#[inline(always)]
pub unsafe fn ttl_lowered(sk: *mut c_void) -> bool {
    let (offset, min) = (global(&UC_TTL_OFFSET), global(&MIN_TTL));
    if offset == 0 {
        return false;
    }
    // SAFETY: as in `sk_err`.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk) };
    if tp.is_null() {
        return false;
    }
    // SAFETY: `offset` is `uc_ttl`'s in this kernel's `struct inet_sock`, which
    // starts `struct tcp_sock`.
    let ttl = unsafe { ptr::read_volatile(tp.cast::<u8>().add(offset as usize).cast::<i16>()) };
    ttl >= 0 && (ttl as u32) < min
}

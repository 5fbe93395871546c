//! The socket storage of admitted sockets, as seen from the outcome hooks.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::bpf_sk_storage_get;
use enforcer_common::sock::SockInfo;

use crate::maps::SOCKS;

/// The storage of `sk` if the gate admitted it (looked up, never created).
///
/// # Safety
/// `sk` must be a non-null socket pointer handed by the kernel to this program.
#[inline(always)]
pub unsafe fn admitted(sk: *mut c_void) -> Option<&'static mut SockInfo> {
    let map = ptr::from_ref(&SOCKS).cast_mut().cast();
    // SAFETY: the caller passes a valid socket; flags 0 = lookup only.
    let info = unsafe { bpf_sk_storage_get(map, sk, ptr::null_mut(), 0) };
    // SAFETY: non-null socket storage, valid for the program's run. Storage is
    // created only for admitted connects.
    unsafe { info.cast::<SockInfo>().as_mut() }
}

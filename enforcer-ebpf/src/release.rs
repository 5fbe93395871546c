//! `cgroup/sock_release`: the safety net at the end of an admitted socket's life.
//!
//! `inet_release` runs this hook *before* the protocol's close, so a socket still in
//! SYN_SENT here is being abandoned by its application: it is marked, and the
//! SYN_SENT→CLOSE transition that follows counts as abandoned, not as a failure.
//! A socket still in CLOSE whose outcome was never recorded failed synchronously
//! inside `connect()` (no route, no local port): unreachable.
//!
//! Always returns 1 (allow): release cannot be refused.

use core::ptr;

use aya_ebpf::{
    bindings::{BPF_TCP_CLOSE, BPF_TCP_SYN_SENT},
    helpers::generated::bpf_sk_storage_get,
    macros::cgroup_sock,
    programs::SockContext,
};
use enforcer_common::{outcome::Outcome, sock::SockInfo, sock::flags};

use crate::{atomic, maps::SOCKS, outcome};

#[cgroup_sock(sock_release)]
pub fn track_sock_release(ctx: SockContext) -> i32 {
    let map = ptr::from_ref(&SOCKS).cast_mut().cast();
    // SAFETY: a cgroup_sock context is the socket itself; flags 0 = lookup only.
    let info = unsafe { bpf_sk_storage_get(map, ctx.sock.cast(), ptr::null_mut(), 0) };
    if info.is_null() {
        return 1;
    }
    let info: *mut SockInfo = info.cast();
    // SAFETY: the kernel hands a valid context.
    match unsafe { (*ctx.sock).state } {
        BPF_TCP_SYN_SENT => {
            // SAFETY: non-null socket storage, valid for the program's run.
            atomic::fetch_or_u64(
                unsafe { &raw mut (*info).flags },
                flags::RELEASED_CONNECTING,
            );
        }
        BPF_TCP_CLOSE => outcome::record(info, Outcome::Unreachable),
        _ => {}
    }
    1
}

//! `cgroup/sock_release`: the safety net at the end of an admitted socket's life.
//!
//! `inet_release` runs this hook *before* the protocol's close, so a socket still in
//! SYN_SENT here is being abandoned by its application: it is marked, and the
//! SYN_SENT→CLOSE transition that follows counts as abandoned, not as a failure
//! (and releases the slot). A socket already in CLOSE whose outcome was never
//! recorded failed synchronously inside `connect()` (no route, no local port):
//! unreachable, and its slot is released here, since no state change will follow.
//! Sockets in other states release their slot when they reach CLOSE.
//!
//! Always returns 1 (allow): release cannot be refused.

use aya_ebpf::{
    bindings::{BPF_TCP_CLOSE, BPF_TCP_SYN_SENT},
    macros::cgroup_sock,
    programs::SockContext,
};
use enforcer_common::{
    outcome::{End, Outcome},
    sock::marks,
};

use crate::{atomic, dest, sock};

#[cgroup_sock(sock_release)]
pub fn track_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: a cgroup_sock context is the socket itself.
    let Some(sock) = (unsafe { sock::admitted(ctx.sock.cast()) }) else {
        return 1;
    };
    // SAFETY: the kernel hands a valid context.
    match unsafe { (*ctx.sock).state } {
        BPF_TCP_SYN_SENT => {
            atomic::fetch_or(&raw mut sock.marks, marks::RELEASED_CONNECTING);
        }
        BPF_TCP_CLOSE => dest::record_end(sock, End::Failed(Outcome::Unreachable)),
        _ => {}
    }
    1
}

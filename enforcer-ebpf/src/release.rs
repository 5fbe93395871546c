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

use core::ptr;

use aya_ebpf::{
    bindings::{BPF_TCP_CLOSE, BPF_TCP_SYN_SENT},
    helpers::{bpf_ktime_get_ns, generated::bpf_sk_storage_get},
    macros::cgroup_sock,
    programs::SockContext,
};
use enforcer_common::{
    counters::GlobalCounter,
    outcome::Outcome,
    sock::{SockInfo, flags, marks},
};

use crate::{
    atomic, counters,
    dest::{Change, Locked, Tracked},
    maps::SOCKS,
};

#[cgroup_sock(sock_release)]
pub fn track_sock_release(ctx: SockContext) -> i32 {
    let map = ptr::from_ref(&SOCKS).cast_mut().cast();
    // SAFETY: a cgroup_sock context is the socket itself; flags 0 = lookup only.
    let info = unsafe { bpf_sk_storage_get(map, ctx.sock.cast(), ptr::null_mut(), 0) };
    // SAFETY: non-null socket storage, valid for the program's run.
    let Some(sock) = (unsafe { info.cast::<SockInfo>().as_mut() }) else {
        return 1;
    };
    if sock.flags & flags::TRACKED == 0 {
        return 1;
    }
    // SAFETY: the kernel hands a valid context.
    match unsafe { (*ctx.sock).state } {
        BPF_TCP_SYN_SENT => {
            atomic::fetch_or(&raw mut sock.marks, marks::RELEASED_CONNECTING);
        }
        BPF_TCP_CLOSE => release_closed(sock),
        _ => {}
    }
    1
}

#[inline(always)]
fn release_closed(sock: &mut SockInfo) {
    let Some(mut t) = Tracked::of(sock) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let (policy, backoff) = (t.policy, t.backoff);
    let mut lock = Locked::acquire(t.dest);
    let d = lock.state();
    let failed = sock.flags & flags::OUTCOME_RECORDED == 0;
    let transition = d.on_failed(
        policy,
        backoff,
        now,
        sock,
        Outcome::Unreachable,
        &mut t.guard,
    );
    d.on_closed(sock);
    let change = Change::after(transition, d);
    drop(lock);
    if let Some(change) = change {
        change.emit(&sock.dest, sock.policy_id, now);
    }
    if failed {
        counters::bump(GlobalCounter::Failures);
    }
}

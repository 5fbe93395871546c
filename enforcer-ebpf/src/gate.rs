//! `cgroup/connect4` and `cgroup/connect6`: the gate every `connect()` in the
//! protected cgroup subtree passes through.
//!
//! | case                                        | verdict            | accounting              |
//! |---------------------------------------------|--------------------|-------------------------|
//! | not TCP (UDP, raw, MPTCP)                   | allow              | `other_connects`        |
//! | global switch off                           | allow              | `paused_passes`         |
//! | the daemon's own connect                    | allow              | `bypassed`              |
//! | the socket's previous connect still holds   | (settled first)    | `local_errors`          |
//! | caller outside the policy's cgroup scope    | allow, untracked   | `out_of_scope`          |
//! | no socket storage                           | allow, untracked   | `sock_storage_failed`   |
//! | otherwise                                   | as [`crate::admission`] decides               |
//!
//! Every internal error fails open. A rejection is `bpf_set_retval(-errno)` and
//! return 0, so `connect()` fails at once with the policy's errno; a rejected
//! socket gets no storage (the outcome hooks ignore it).

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_netns_cookie, bpf_set_retval},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    outcome::on_reconnect,
    policy::Policy,
    sock::SockInfo,
};

use crate::{
    admission::{self, Admission},
    classes, counters,
    dest::record_end,
    klog::rare,
    maps::SOCKS,
    policies::Policies,
};

/// Return value of a `cgroup_sock_addr` program that lets the call proceed.
const ALLOW: i32 = 1;
/// Return value that refuses the call (with the errno set by `bpf_set_retval`).
const REJECT: i32 = 0;

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;

/// Reads one context field as a single load at a constant offset from the context
/// pointer: the verifier rejects context accesses through a modified pointer, which
/// is what a plain struct or array copy may compile to.
macro_rules! ctx_read {
    ($field:expr) => {
        // SAFETY: a field of the context the kernel handed to the program.
        unsafe { core::ptr::read_volatile($field) }
    };
}

#[cgroup_sock_addr(connect4)]
pub fn gate_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // connect4 may read `user_ip4` only.
    gate(&ctx, || {
        DestKey::from_ipv4_raw(ctx_read!(&raw const (*sa).user_ip4), user_port(sa))
    })
}

#[cgroup_sock_addr(connect6)]
pub fn gate_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // connect6 may read `user_ip6` only, one 32-bit word at a time.
    gate(&ctx, || {
        let addr = [
            ctx_read!(&raw const (*sa).user_ip6[0]),
            ctx_read!(&raw const (*sa).user_ip6[1]),
            ctx_read!(&raw const (*sa).user_ip6[2]),
            ctx_read!(&raw const (*sa).user_ip6[3]),
        ];
        DestKey::from_ipv6_raw(addr, user_port(sa))
    })
}

/// `user_port` holds the port in network order in its low 16 bits.
#[inline(always)]
fn user_port(sa: *const bpf_sock_addr) -> u16 {
    u16::from_be(ctx_read!(&raw const (*sa).user_port) as u16)
}

#[inline(always)]
fn gate(ctx: &SockAddrContext, dest: impl FnOnce() -> DestKey) -> i32 {
    let sa = ctx.sock_addr;
    let (sock_type, protocol) = (
        ctx_read!(&raw const (*sa).type_),
        ctx_read!(&raw const (*sa).protocol),
    );
    if sock_type != SOCK_STREAM || protocol != IPPROTO_TCP {
        counters::bump(GlobalCounter::OtherConnects);
        return ALLOW;
    }
    counters::bump(GlobalCounter::TcpConnects);
    let config = counters::config();
    if config.is_paused() {
        counters::bump(GlobalCounter::Paused);
        return ALLOW;
    }
    // The daemon's own connects (healing probes) must see the destination as
    // it is, not as the breaker says.
    if config.bypass_tgid != 0 && (bpf_get_current_pid_tgid() >> 32) as u32 == config.bypass_tgid {
        counters::bump(GlobalCounter::Bypassed);
        return ALLOW;
    }
    let policies = Policies::of(&config);
    settle_previous(ctx, policies);
    // SAFETY: plain helper call on the program's own context.
    let netns = unsafe { bpf_get_netns_cookie(sa.cast()) };
    decide(
        ctx,
        &dest().in_netns(netns),
        config.overrides != 0,
        policies,
    )
}

/// A socket that connects again (the gate runs only for a socket in CLOSE)
/// first gives back what its previous connect still holds, so that connect
/// neither counts against this one (its slot, its probe) nor outlives it.
#[inline(always)]
fn settle_previous(ctx: &SockAddrContext, policies: Policies) {
    // SAFETY: a connect context, whose `sk` is a full socket; lookup only.
    let old = unsafe { SOCKS.get_ptr_mut(ctx) };
    // SAFETY: this socket's storage, used by no other hook while it is in CLOSE.
    if let Some(old) = unsafe { old.as_mut() }
        && let Some(end) = on_reconnect(old.flags)
    {
        record_end(old, end, policies);
    }
}

/// The verdict for a TCP connect to `key`.
#[inline(always)]
fn decide(ctx: &SockAddrContext, key: &DestKey, check_overrides: bool, policies: Policies) -> i32 {
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let in_scope = |policy: &Policy| {
        let applies = policy.cgroup_id == 0
            // SAFETY: the helper takes a level (an integer, checked by the
            // kernel) and reads the current task's cgroup: no pointer.
            || unsafe { bpf_get_current_ancestor_cgroup_id(policy.cgroup_level as i32) }
                == policy.cgroup_id;
        if !applies {
            counters::bump(GlobalCounter::OutOfScope);
        }
        applies
    };
    match admission::admit(
        key,
        now,
        check_overrides,
        policies,
        in_scope,
        classes::current,
        true,
    ) {
        Admission::Pass => ALLOW,
        Admission::Admitted { dest, mut sock } => record(ctx, dest, &mut sock),
        Admission::Rejected { policy } => {
            // SAFETY: plain helper call; the kernel bounds-checks the errno.
            unsafe { bpf_set_retval(-(policy.errno as i32)) };
            REJECT
        }
    }
}

/// Puts an admitted connect's record on its socket, where the outcome hooks find
/// it. The socket is still in `connect()`: no outcome hook can run before this.
#[inline(always)]
fn record(ctx: &SockAddrContext, dest: *mut DestState, sock: &mut SockInfo) -> i32 {
    // SAFETY: `ctx` is a connect context, whose `sk` is a full socket.
    let storage = unsafe { SOCKS.get_or_insert_ptr_mut(ctx, None) };
    if storage.is_null() {
        // Nowhere to record it: give back what the admission holds. Fails open.
        admission::cancel(dest, sock);
        counters::bump(GlobalCounter::SockStorageFailed);
        rare!(
            warn,
            "socket storage not created: connect to [{:i}]:{} passes untracked",
            sock.dest.octets(),
            sock.dest.port
        );
        return ALLOW;
    }
    // SAFETY: non-null storage of this socket, settled by `settle_previous`
    // if it held an earlier connect's record.
    unsafe { *storage = *sock };
    counters::bump(GlobalCounter::Admitted);
    ALLOW
}

//! `cgroup/connect4` and `cgroup/connect6`: the gate every `connect()` in the
//! protected cgroup subtree passes through.
//!
//! | case                                        | verdict            | accounting              |
//! |---------------------------------------------|--------------------|-------------------------|
//! | not TCP (UDP, raw, MPTCP)                   | allow              | `other_connects`        |
//! | refused by a program that ran before        | (refused)          | `refused_before`        |
//! | global switch off                           | allow              | `paused_passes`         |
//! | refused by an armed chaos fault (not the daemon's connect) | errno of the fault | `refused_before` |
//! | no rule covers it                           | allow              | `unmatched`             |
//! | the daemon's own connect                    | allow              | `bypassed`              |
//! | caller outside the policy's cgroup scope    | allow, untracked   | `out_of_scope`          |
//! | otherwise                                   | as [`crate::admission`] decides               |
//! | … the socket's previous connect still holds | (settled before the breaker decides) | `local_errors` |
//! | … admitted, no free slot in the connection table | allow, untracked | `conn_table_full` |
//!
//! The chaos faults are the gate's first step ([`crate::chaos`]): a connect
//! one refuses never reaches the breaker; one whose SYNs one drops is
//! admitted as any other, and gives its fault's count back if the breaker
//! refuses it.
//!
//! Every internal error fails open. A rejection is `bpf_set_retval(-errno)` and
//! return 0, so `connect()` fails at once with the policy's errno; a rejected
//! socket gets no record (the outcome hooks ignore it).

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_netns_cookie, bpf_get_retval},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    maps::CONN_PROBES,
    outcome::on_reconnect,
    policy::Policy,
    sock::SockInfo,
    workload::policy_scope,
};

use crate::{
    admission::{self, Admission},
    chaos, classes,
    clock::Ktime,
    counters,
    klog::rare,
    policies::Policies,
    sock,
    sockaddr::{self, ALLOW, reject},
    workloads,
};

#[cgroup_sock_addr(connect4)]
pub fn gate_connect4(ctx: SockAddrContext) -> i32 {
    gate(&ctx, sockaddr::dest4)
}

#[cgroup_sock_addr(connect6)]
pub fn gate_connect6(ctx: SockAddrContext) -> i32 {
    gate(&ctx, sockaddr::dest6)
}

#[inline(always)]
fn gate(ctx: &SockAddrContext, dest: impl FnOnce(&SockAddrContext) -> DestKey) -> i32 {
    if !sockaddr::is_tcp(ctx) {
        counters::bump(GlobalCounter::OtherConnects);
        return ALLOW;
    }
    counters::bump(GlobalCounter::TcpConnects);
    // A program that ran before this one (a chaos fault, another tool's)
    // refused the connect: it never leaves, and is none of the breaker's
    // business.
    // SAFETY: plain helper call, no argument.
    if unsafe { bpf_get_retval() } < 0 {
        counters::bump(GlobalCounter::RefusedBefore);
        return ALLOW;
    }
    let config = counters::config();
    if config.is_paused() {
        counters::bump(GlobalCounter::Paused);
        return ALLOW;
    }
    // The daemon's own connects (healing probes, its HTTP checks) must see
    // the destination as it is, not as a fault or the breaker says: asked
    // only of a connect one of them would judge, so that every other pays no
    // helper call for it.
    let daemons = || {
        let tgid = counters::bypass_tgid();
        tgid != 0 && (bpf_get_current_pid_tgid() >> 32) as u32 == tgid
    };
    let addr = dest(ctx);
    // A connect a chaos fault refuses never leaves: none of the breaker's
    // business. The armed bits are read apart from the configuration's copy:
    // a branch on the copy would split the verifier's view of it in two for
    // everything that follows.
    let armed = chaos::armed();
    if armed != 0 && !daemons() {
        let errno = chaos::at_connect(ctx.sock_addr, armed, &addr);
        if errno != 0 {
            counters::bump(GlobalCounter::RefusedBefore);
            return reject(errno);
        }
    }
    let policies = Policies::of(&config);
    // Everything from here on is paid only by connects a rule covers.
    let Some(policy_id) = admission::matched(policies, &addr) else {
        return ALLOW;
    };
    if daemons() {
        counters::bump(GlobalCounter::Bypassed);
        return ALLOW;
    }
    // SAFETY: plain helper call on the program's own context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    decide(
        ctx,
        &addr.in_netns(netns),
        policy_id,
        config.overrides != 0,
        policies,
    )
}

/// A socket that connects again (the gate runs only for a socket in CLOSE)
/// to a destination a rule covers, and whose connect the breaker decides,
/// first gives back what its previous connect still holds, so that connect
/// neither counts against this one (its slot, its probe) nor outlives it.
/// Connecting again elsewhere, or meeting an OPEN circuit (whose rejection
/// counts nothing the old connect holds), leaves it to the release
/// ([`enforcer_common::outcome::on_release`]) or the next connect, as does
/// keeping the socket: either way the caller holds it no longer than its
/// socket.
///
/// A socket connecting for the first time has no cookie yet, hence no
/// record: it leaves after one read, and gets its cookie only if admitted.
/// A function of its own that answers nothing, so that the gate's paths
/// through it join again at its return.
#[inline(never)]
fn settle_previous(sock_addr: *mut bpf_sock_addr, policies: Policies) {
    let socket = sockaddr::socket(&SockAddrContext::new(sock_addr));
    // This socket's record, used by no other hook while it is in CLOSE.
    // SAFETY: the program's own context, and its connecting (full) socket.
    if let Some(old) = unsafe { sock::Admitted::of(sock_addr.cast(), socket) } {
        match on_reconnect(old.sock.flags) {
            Some(end) => sock::end(old.cookie, old.sock, end, policies),
            // It holds nothing: only its slot, which the new record needs.
            None => sock::free(old.cookie, old.sock),
        }
    }
}

/// The verdict for a TCP connect to `key`.
#[inline(always)]
fn decide(
    ctx: &SockAddrContext,
    key: &DestKey,
    policy_id: u32,
    check_overrides: bool,
    policies: Policies,
) -> i32 {
    let in_scope = |policy: &Policy| {
        // One call for every policy, unscoped ones too: a branch around it
        // would have the verifier walk the rest of the gate once more (the
        // call is a few instructions; gate_connect6 grew by a ninth).
        let applies = workloads::covers(
            policy.workloads,
            policy_scope(policy_id),
            policy.cgroup_id,
            policy.cgroup_level,
        ) != 0;
        if !applies {
            counters::bump(GlobalCounter::OutOfScope);
        }
        applies
    };
    match admission::admit(
        key,
        policy_id,
        Ktime,
        check_overrides,
        policies,
        in_scope,
        || settle_previous(ctx.sock_addr, policies),
        classes::current,
        true,
    ) {
        Admission::Pass => ALLOW,
        Admission::Admitted { dest, mut sock } => record(ctx, dest, &mut sock),
        Admission::Rejected { policy } => {
            // Only a connect a fault marked has anything to give back. The
            // armed bits are read again, not carried from the gate's first
            // step: the verifier would follow everything in between twice.
            if chaos::armed() != 0 {
                chaos::refused(ctx);
            }
            reject(policy.errno)
        }
    }
}

/// Records an admitted connect in a slot its socket's cookie (made now, if
/// this is the socket's first) names, where the outcome hooks find it. The
/// socket is still in `connect()`: no outcome hook can run before this, and
/// an earlier connect's record was settled by `settle_previous`.
#[inline(always)]
fn record(ctx: &SockAddrContext, dest: *mut DestState, sock: &mut SockInfo) -> i32 {
    // SAFETY: the program's own context.
    let cookie = unsafe { sock::cookie(ctx.sock_addr.cast()) };
    sock.cookie = cookie;
    let Some(slot) = sock::claim(cookie) else {
        // Nowhere to record it: give back what the admission holds. Fails open.
        admission::cancel(dest, sock);
        counters::bump(GlobalCounter::ConnTableFull);
        rare!(
            warn,
            "connection table full: connect to [{:i}]:{} passes untracked (no free slot of {})",
            sock.dest.octets(),
            sock.dest.port,
            CONN_PROBES
        );
        return ALLOW;
    };
    *slot = *sock;
    counters::bump(GlobalCounter::Admitted);
    ALLOW
}

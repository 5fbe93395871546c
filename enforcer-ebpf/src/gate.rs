//! `cgroup/connect4` and `cgroup/connect6`: the gate every `connect()` in the
//! protected cgroup subtree passes through.
//!
//! | case                                        | verdict            | accounting              |
//! |---------------------------------------------|--------------------|-------------------------|
//! | not TCP (UDP, raw, MPTCP)                   | allow              | `other_connects`        |
//! | global switch off                           | allow              | `paused_passes`         |
//! | the daemon's own connect                    | allow              | `bypassed`              |
//! | no rule matches / policy `off`              | allow, untracked   | `unmatched`/`policy_off`|
//! | caller outside the policy's cgroup scope    | allow, untracked   | `out_of_scope`          |
//! | `disabled` override                         | allow, untracked   | `disabled`              |
//! | destination map full / no socket storage    | allow, untracked   | `dest_map_full`/…       |
//! | circuit open (or forced open), enforce      | reject, errno      | `rejected_circuit`      |
//! | bulkhead full, enforce                      | reject, errno      | `rejected_bulkhead`     |
//! | otherwise (observe: always)                 | allow, tracked     | attempt (+ would-reject)|
//!
//! Every internal error fails open. A rejection is `bpf_set_retval(-errno)` and
//! return 0, so `connect()` fails at once with the policy's errno; a rejected
//! socket gets no storage (the outcome hooks ignore it).

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_sock_addr},
    btf_maps::lpm_trie::Key,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_set_retval},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    breaker::{Cause, Verdict, state},
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    overrides::kind,
    policy::{Policy, mode},
    rules::{FULL_PREFIX, RuleData},
    sock::SockInfo,
};

use crate::{
    atomic, counters,
    dest::{Change, Locked, PolicyGuard},
    maps::{DESTS, OVERRIDES, POLICIES, POLICY_RULES, POLICY_STATS, SOCKS, ZERO_DEST},
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
    match decide(ctx, &dest(), config.overrides != 0) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// The verdict for a TCP connect to `key`. `Err` carries the fail-open verdict of
/// an internal error (already counted).
#[inline(always)]
fn decide(ctx: &SockAddrContext, key: &DestKey, check_overrides: bool) -> Result<i32, i32> {
    let Some(policy_id) = policy_id(key) else {
        counters::bump(GlobalCounter::Unmatched);
        return Ok(ALLOW);
    };
    let policy = POLICIES.get(policy_id).ok_or(ALLOW)?;
    if policy.mode == mode::OFF {
        counters::bump(GlobalCounter::PolicyOff);
        return Ok(ALLOW);
    }
    if policy.cgroup_id != 0
        && unsafe { bpf_get_current_ancestor_cgroup_id(policy.cgroup_level as i32) }
            != policy.cgroup_id
    {
        counters::bump(GlobalCounter::OutOfScope);
        return Ok(ALLOW);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let mut forced_open = false;
    if check_overrides && let Some(o) = OVERRIDES.get_ptr(key) {
        // SAFETY: a value of OVERRIDES, valid for the program's run.
        let o = unsafe { &*o };
        if o.active(now) {
            if o.kind == kind::DISABLED {
                counters::bump(GlobalCounter::Disabled);
                return Ok(ALLOW);
            }
            forced_open = o.kind == kind::FORCED_OPEN;
        }
    }
    let dest = dest_state(key, policy_id)?;
    // Decided into a record on the stack: the socket's storage is created only
    // for an admitted connect, which keeps the allocation off the rejection path.
    let mut sock = SockInfo {
        dest: *key,
        policy_id,
        start_ns: now,
        ..SockInfo::default()
    };
    // The rules may have moved this destination to another policy since it was
    // last seen: its share of the group guard's counts moves with it. The stored
    // id is read before the lock (map lookups cannot run under it) and the move
    // happens only if it is still the same under the lock.
    // SAFETY: a live value of DESTS.
    let stored = unsafe { core::ptr::read_volatile(&raw const (*dest).policy_id) };
    let moving =
        (stored != policy_id).then(|| (PolicyGuard::stats(stored), PolicyGuard::stats(policy_id)));
    let mut lock = Locked::acquire(dest);
    let d = lock.state();
    if let Some((from, to)) = moving
        && d.policy_id == stored
    {
        // 0: inserted just now, already counted for its policy.
        if stored != 0 {
            PolicyGuard::move_dest(from, to, d.breaker.state != state::CLOSED);
        }
        d.policy_id = policy_id;
    }
    d.last_attempt_ns = now;
    let (verdict, transition) = d.admit(policy, now, forced_open, &mut sock);
    let change = Change::after(transition, d);
    drop(lock);
    if let Some(change) = change {
        change.emit(key, policy_id, now);
    }
    match verdict {
        Verdict::Admit { .. } => Ok(record(ctx, dest, &mut sock)),
        Verdict::Reject(cause) => Ok(reject(policy, cause)),
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
        Locked::acquire(dest).state().cancel(sock);
        counters::bump(GlobalCounter::SockStorageFailed);
        return ALLOW;
    }
    // SAFETY: non-null storage of this socket, touched by no other path yet (a
    // socket may connect again after a failed attempt: the record starts over).
    unsafe { *storage = *sock };
    counters::bump(GlobalCounter::Admitted);
    ALLOW
}

#[inline(always)]
fn reject(policy: &Policy, cause: Cause) -> i32 {
    counters::bump(match cause {
        Cause::Circuit => GlobalCounter::RejectedCircuit,
        Cause::Bulkhead | Cause::Pending => GlobalCounter::RejectedBulkhead,
    });
    // SAFETY: plain helper call; the kernel bounds-checks the errno.
    unsafe { bpf_set_retval(-(policy.errno as i32)) };
    REJECT
}

/// The policy of the most specific rule for the destination: its port first,
/// then any port.
#[inline(always)]
fn policy_id(key: &DestKey) -> Option<u32> {
    let mut lookup = Key::new(FULL_PREFIX, RuleData::new(key.port, &key.addr));
    if let Some(id) = POLICY_RULES.get(&lookup) {
        return Some(*id);
    }
    lookup.data.port = [0, 0];
    POLICY_RULES.get(&lookup).copied()
}

/// The destination's state, created (CLOSED, zeroed) on first sight.
#[inline(always)]
fn dest_state(key: &DestKey, policy_id: u32) -> Result<*mut DestState, i32> {
    if let Some(state) = DESTS.get_ptr_mut(key) {
        return Ok(state);
    }
    let zero = ZERO_DEST.get(0).ok_or(ALLOW)?;
    // SAFETY: ZERO_DEST's value has the size of a DestState and is all zeroes,
    // a valid (CLOSED, empty) DestState.
    let zero: &DestState = unsafe { &*(zero as *const [u64; size_of::<DestState>() / 8]).cast() };
    // Another CPU may insert the same key between lookup and insert: NOEXIST makes
    // that a harmless EEXIST, and the lookup below finds the winner's entry.
    if DESTS.insert(key, zero, BPF_NOEXIST.into()).is_ok()
        && let Some(stats) = POLICY_STATS.get_ptr_mut(policy_id)
    {
        // SAFETY: a value of POLICY_STATS.
        atomic::add(unsafe { &raw mut (*stats).tracked }, 1);
    }
    DESTS.get_ptr_mut(key).ok_or_else(|| {
        counters::bump(GlobalCounter::DestMapFull);
        ALLOW
    })
}

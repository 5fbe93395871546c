//! The admission decision both planes share: a `connect()` at the gate and a
//! guest's SYN on a watched interface are the same question asked of the same
//! destination state.
//!
//! | case                                        | admission  | accounting              |
//! |---------------------------------------------|------------|-------------------------|
//! | no rule matches ([`matched`]) / policy `off`| pass       | `unmatched`/`policy_off`|
//! | policy does not apply (scope, unjudgeable SYN) | pass    | counted by the caller   |
//! | `disabled` override                         | pass       | `disabled`              |
//! | destination map full / internal error       | pass       | `dest_map_full`/—       |
//! | circuit open (or forced open), enforce      | rejected   | `rejected_circuit`      |
//! | … once it has admitted under this policy's epoch (read without the lock) | rejected | `rejected_circuit` (atomic) |
//! | bulkhead full, enforce                      | rejected   | `rejected_bulkhead`     |
//! | otherwise (observe: always)                 | admitted   | attempt (+ would-reject)|
//!
//! Every internal error passes (fails open).

use aya_ebpf::bindings::BPF_NOEXIST;
use enforcer_common::{
    breaker::{Cause, State, Verdict},
    class::Caller,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    overrides,
    policy::{Mode, Policy},
    sock::SockInfo,
};

use crate::{
    atomic,
    clock::Clock,
    counters,
    dest::{self, Change, ClassChange, Locked, PolicyGuard},
    klog::rare,
    maps::{DESTS, OVERRIDES, POLICY_STATS, ZERO_DEST},
    policies::Policies,
};

/// What became of a connect attempt.
pub enum Admission {
    /// Not tracked (counted): let it through untouched.
    Pass,
    /// Admitted: `sock` holds what the admission took (a slot, maybe a probe);
    /// the caller records it where the outcome paths find it, or [`cancel`]s it.
    Admitted {
        dest: *mut DestState,
        sock: SockInfo,
    },
    /// Refused (counted): the caller fails the connect with the policy's errno
    /// or answers it with a RST.
    Rejected { policy: &'static Policy },
}

/// The policy of the rule that matches a TCP connect to `dest`; `None`
/// (counted) when no rule does, and the connect passes untouched. Callers ask
/// this first, so that a connect no policy covers pays for nothing else.
#[inline(always)]
pub fn matched(policies: Policies, dest: &DestKey) -> Option<u32> {
    let id = policies.rule(dest);
    if id.is_none() {
        counters::bump(GlobalCounter::Unmatched);
    }
    id
}

/// Decides a TCP connect to `key`, which rule matching gave `policy_id`, at
/// the time `clock` tells, by the run's `policies`. `applies` says whether the policy applies
/// to this caller (its cgroup scope; for a guest's SYN, also whether the SYN
/// can be judged at all), counting why not, `settle` gives back what the
/// caller's previous connect still holds (asked only where the decision
/// would count it: not for an OPEN circuit's rejection), and `caller` finds
/// the caller's class (none for a guest). `logs`: whether the caller's program may log
/// its rare paths ([`crate::klog`]); a constant at each call site, so a
/// program that may not carries no log code at all.
#[inline(always)]
#[allow(
    clippy::too_many_arguments,
    reason = "each is one input of the decision; a struct would only rename them"
)]
pub fn admit(
    key: &DestKey,
    policy_id: u32,
    clock: impl Clock,
    check_overrides: bool,
    policies: Policies,
    applies: impl FnOnce(&Policy) -> bool,
    settle: impl FnOnce(),
    caller: impl FnOnce() -> Option<Caller<'static>>,
    logs: bool,
) -> Admission {
    let (Some(policy), Some(backoff)) = (policies.policy(policy_id), policies.backoff(policy_id))
    else {
        return Admission::Pass;
    };
    if policy.mode == Mode::Off as u32 {
        counters::bump(GlobalCounter::PolicyOff);
        return Admission::Pass;
    }
    if !applies(policy) {
        return Admission::Pass;
    }
    // Deadlines of overrides and open circuits are set in milliseconds and
    // more: the coarse clock decides them.
    let mut forced_open = false;
    // Overrides name an address and port in every namespace.
    if check_overrides && let Some(o) = OVERRIDES.get_ptr(key.in_netns(0)) {
        // SAFETY: a value of OVERRIDES, valid for the program's run.
        let o = unsafe { &*o };
        if o.active(clock.coarse()) {
            if o.kind == overrides::Kind::Disabled as u32 {
                counters::bump(GlobalCounter::Disabled);
                return Admission::Pass;
            }
            forced_open = o.kind == overrides::Kind::ForcedOpen as u32;
        }
    }
    let Some(dest) = dest_state(key, policy_id, logs) else {
        return Admission::Pass;
    };
    // The common rejection, an OPEN (or forced-open) circuit's, costs neither
    // the lock nor the decision: it changes nothing but two fields that take
    // a lone store and an atomic add.
    let view = dest::open_view(dest);
    let unlocked = if forced_open {
        view.settled(policy_id, policy)
    } else {
        view.is_open(policy_id, policy)
    };
    if unlocked {
        let now = clock.coarse();
        if forced_open || view.rejects(policy_id, policy, now) {
            dest::count_open_rejection(dest, now);
            counters::bump(GlobalCounter::RejectedCircuit);
            return Admission::Rejected { policy };
        }
    }
    settle();
    let now = clock.precise();
    let caller = caller();
    // Decided into a record on the stack: the caller's own record (socket
    // storage, flow entry) is created only for an admitted connect, which keeps
    // the allocation off the rejection path.
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
    let mut guard = PolicyGuard::of(policy_id, policy);
    let mut lock = Locked::acquire(dest);
    let d = lock.state();
    if let Some((from, to)) = moving
        && d.policy_id == stored
    {
        // 0: inserted just now, already counted for its policy.
        if stored != 0 {
            PolicyGuard::move_dest(from, to, d.breaker.state != State::Closed as u32);
        }
        d.policy_id = policy_id;
    }
    d.last_attempt_ns = now;
    let rejoined = d.join_epoch(policy.epoch, now, &mut guard);
    let shedding = d.shedding;
    let (verdict, transition) = d.admit(policy, backoff, now, forced_open, caller, &mut sock);
    let change = Change::after(transition.or(rejoined), d);
    let shed = ClassChange::between(shedding, d.shedding);
    drop(lock);
    if let Some(change) = change {
        change.emit(key, policy_id, now);
    }
    if let Some(shed) = shed {
        shed.emit(key, policy_id, now);
    }
    match verdict {
        Verdict::Admit { .. } => Admission::Admitted { dest, sock },
        Verdict::Reject(cause) => {
            counters::bump(match cause {
                Cause::Circuit => GlobalCounter::RejectedCircuit,
                Cause::Bulkhead | Cause::Pending => GlobalCounter::RejectedBulkhead,
            });
            Admission::Rejected { policy }
        }
    }
}

/// Gives back what an admission holds when the caller could not record it,
/// counting the connect as abandoned so every attempt still ends exactly once.
#[inline(always)]
pub fn cancel(dest: *mut DestState, sock: &mut SockInfo) {
    Locked::acquire(dest).state().cancel(sock);
}

/// The destination's state, created (CLOSED, zeroed) on first sight; `None`
/// (counted, and logged if `logs`) when the map is full.
#[inline(always)]
fn dest_state(key: &DestKey, policy_id: u32, logs: bool) -> Option<*mut DestState> {
    if let Some(state) = DESTS.get_ptr_mut(key) {
        return Some(state);
    }
    let zero = ZERO_DEST.get(0)?;
    // SAFETY: ZERO_DEST's value has the size of a DestState and is all zeroes,
    // a valid (CLOSED, empty) DestState.
    let zero: &DestState = unsafe { &*(zero as *const [u64; size_of::<DestState>() / 8]).cast() };
    // Another CPU may insert the same key between lookup and insert: NOEXIST makes
    // that a harmless EEXIST, and the lookup below finds the winner's entry.
    let inserted = DESTS.insert(key, zero, BPF_NOEXIST.into());
    if inserted.is_ok()
        && let Some(stats) = POLICY_STATS.get_ptr_mut(policy_id)
    {
        // SAFETY: a value of POLICY_STATS.
        atomic::add(unsafe { &raw mut (*stats).tracked }, 1);
    }
    let found = DESTS.get_ptr_mut(key);
    if found.is_none() {
        counters::bump(GlobalCounter::DestMapFull);
        if logs {
            rare!(
                warn,
                "destination map full: [{:i}]:{} not tracked (policy {}, insert errno {})",
                key.octets(),
                key.port,
                policy_id,
                -inserted.err().unwrap_or(0)
            );
        }
    }
    found
}

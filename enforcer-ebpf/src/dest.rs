//! A destination's state and what surrounds it: its lock, its policy, the group
//! guard and the events its transitions send.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::helpers::{
    bpf_ktime_get_ns,
    generated::{bpf_spin_lock, bpf_spin_unlock},
};
use enforcer_common::{
    breaker::{OpenGuard, OpenView, Transition},
    counters::GlobalCounter,
    dest::{DestKey, DestState, add_shared},
    event::{self, Event},
    outcome::{End, Outcome},
    policy::{BackoffRow, Policy, PolicyStats, guard_allows},
    sock::{SockInfo, flags},
};

use crate::{
    atomic, counters,
    maps::{DESTS, EVENTS, POLICY_STATS},
    policies::Policies,
};

/// What the gate's lock-free check of an OPEN circuit reads of `dest`, each
/// field read once (see [`OpenView`] for why a torn view is harmless).
#[inline(always)]
pub fn open_view(dest: *const DestState) -> OpenView {
    // SAFETY: a live value of DESTS; plain aligned reads of fields that
    // writers change under the lock.
    unsafe {
        OpenView {
            generation: read_volatile(&raw const (*dest).generation),
            open_until_ns: read_volatile(&raw const (*dest).breaker.open_until_ns),
            policy_id: read_volatile(&raw const (*dest).policy_id),
            policy_epoch: read_volatile(&raw const (*dest).policy_epoch),
            state: read_volatile(&raw const (*dest).breaker.state),
        }
    }
}

/// Counts a connect rejected by an OPEN circuit at `now`, without the lock:
/// all the rejection changes ([`OpenView::rejects`]).
#[inline(always)]
pub fn count_open_rejection(dest: *mut DestState, now: u64) {
    // SAFETY: a live value of DESTS. The last attempt is only ever stored
    // (never read-modified-written), and every change to `rejected_circuit`,
    // the locked decision's too, goes through `add_shared`.
    unsafe {
        write_volatile(&raw mut (*dest).last_attempt_ns, now);
        add_shared(&mut (*dest).counters.rejected_circuit);
    }
}

/// A destination's spin lock, held until dropped.
///
/// Not a closure-taking helper on purpose: the verifier allows no function calls
/// while a lock is held, so everything between `acquire` and the drop must be
/// inlined into the hook, which straight-line code guarantees and a closure call
/// does not.
pub struct Locked {
    dest: *mut DestState,
}

impl Locked {
    #[inline(always)]
    pub fn acquire(dest: *mut DestState) -> Self {
        // SAFETY: `dest` is a live value of DESTS, whose BTF declares the lock.
        unsafe { bpf_spin_lock((&raw mut (*dest).lock).cast()) };
        Self { dest }
    }

    /// The destination, exclusively ours while the lock is held.
    #[inline(always)]
    pub fn state(&mut self) -> &mut DestState {
        // SAFETY: every writer of this value holds the lock.
        unsafe { &mut *self.dest }
    }
}

impl Drop for Locked {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: acquired in `acquire`.
        unsafe { bpf_spin_unlock((&raw mut (*self.dest).lock).cast()) };
    }
}

/// Records how an admitted connect moved on (a socket's, from the outcome
/// hooks; a flow's, from the packet plane), under its destination's lock, by
/// its policy in the run's `policies`. `cookie` is the socket's the caller
/// found the record by (0 for a flow): a record removed meanwhile and its
/// memory given to another socket's is left alone.
///
/// The record is shared: a flow's ends come from packets either way on other
/// CPUs, a socket's from hooks that do not all hold the socket's lock. What
/// it holds (its flags) is decided under the destination's lock alone,
/// through [`LockedRecord`], whatever references the caller holds: a `&mut`
/// held across the lock lets the compiler decide on flags it read before,
/// and two ends recorded at once would each give back the slot.
#[inline(always)]
pub fn record_end(sock: *mut SockInfo, cookie: u64, end: End, policies: Policies) {
    // SAFETY: a live record; its destination and policy are written at the
    // admission, before the record is shared, and never after.
    let (dest, policy_id) = unsafe { (&(*sock).dest, (*sock).policy_id) };
    let Some(mut t) = Tracked::of(dest, policy_id, policies) else {
        return;
    };
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let (policy, backoff) = (t.policy, t.backoff);
    let Some(mut held) = LockedRecord::acquire(t.dest, sock, cookie) else {
        return;
    };
    let (d, sock) = held.parts();
    if !d.admitted(sock) {
        // Admitted by an entry of this key that was forgotten since: what it
        // holds was forgotten with it, and must not come out of this one.
        sock.flags = flags::OUTCOME_RECORDED;
        drop(held);
        counters::bump(GlobalCounter::StaleRecords);
        return;
    }
    let first = sock.flags & flags::OUTCOME_RECORDED == 0;
    let transition = match end {
        End::Established => d.on_established(policy, backoff, now, sock, &mut t.guard),
        End::Failed(outcome) => {
            let transition = d.on_failed(policy, backoff, now, sock, outcome, &mut t.guard);
            d.on_closed(sock);
            transition
        }
        End::Closed => {
            d.on_connection_closed(policy, now, sock);
            None
        }
    };
    let change = Change::after(transition, d);
    drop(held);
    if let Some(change) = change {
        change.emit(dest, policy_id, now);
    }
    counters::bump(match end {
        _ if !first => return,
        End::Established => GlobalCounter::Successes,
        End::Failed(Outcome::Abandoned) => GlobalCounter::Abandoned,
        End::Failed(Outcome::LocalError) => GlobalCounter::LocalErrors,
        End::Failed(_) => GlobalCounter::Failures,
        End::Closed => return,
    });
}

/// A destination's lock, held for an admission record of it (see
/// [`record_end`]): the record's flags are read once the lock is taken and
/// written out, on drop, before it is released. Volatile at both edges, so
/// that neither a value read before the lock nor a store left for after it
/// can stand in. Taken only while the record is still the one its caller
/// found (its cookie): the flags of a record written since for another
/// socket are that socket's hooks' to change.
struct LockedRecord {
    sock: *mut SockInfo,
    // Dropped (unlocked) after `drop` below has written the flags out.
    lock: Locked,
}

impl LockedRecord {
    #[inline(always)]
    fn acquire(dest: *mut DestState, sock: *mut SockInfo, cookie: u64) -> Option<Self> {
        let lock = Locked::acquire(dest);
        // SAFETY: a map value (removed ones stay readable), whose flags
        // change only under this lock while it is the caller's record.
        unsafe {
            if core::ptr::read_volatile(&raw const (*sock).cookie) != cookie {
                drop(lock);
                counters::bump(GlobalCounter::StaleRecords);
                return None;
            }
            let fresh = core::ptr::read_volatile(&raw const (*sock).flags);
            (*sock).flags = fresh;
        }
        Some(Self { sock, lock })
    }

    /// The destination and the record, both ours while the lock is held.
    #[inline(always)]
    fn parts(&mut self) -> (&mut DestState, &mut SockInfo) {
        // SAFETY: see `acquire`; the references live no longer than `self`.
        (self.lock.state(), unsafe { &mut *self.sock })
    }
}

impl Drop for LockedRecord {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: as in `acquire`; the lock is still held.
        unsafe { core::ptr::write_volatile(&raw mut (*self.sock).flags, (*self.sock).flags) };
    }
}

/// Records the response latency of an admitted socket under its
/// destination's lock, by its policy in the run's `policies`.
#[inline(always)]
pub fn record_answer(sock: &SockInfo, latency: u64, policies: Policies) {
    let Some(t) = Tracked::of(&sock.dest, sock.policy_id, policies) else {
        return;
    };
    let mut lock = Locked::acquire(t.dest);
    let d = lock.state();
    // An entry of this key forgotten and tracked anew since the admission is
    // not the one this connection belongs to.
    if d.admitted(sock) {
        d.on_answered(t.policy, latency);
    }
}

/// What an outcome path needs about a tracked socket's destination.
pub struct Tracked {
    pub dest: *mut DestState,
    pub policy: &'static Policy,
    pub backoff: &'static BackoffRow,
    pub guard: PolicyGuard,
}

impl Tracked {
    /// The destination `dest` of a record admitted under policy `policy_id`,
    /// or `None` when the entry is gone (garbage-collected) or the policy id
    /// is out of range. A policy id names the same policy in every set (ids
    /// stay with their policy's name), so an outcome after a flip is judged
    /// by the policy as it is now.
    #[inline(always)]
    pub fn of(dest: &DestKey, policy_id: u32, policies: Policies) -> Option<Self> {
        let state = DESTS.get_ptr_mut(dest)?;
        let policy = policies.policy(policy_id)?;
        Some(Self {
            dest: state,
            policy,
            backoff: policies.backoff(policy_id)?,
            guard: PolicyGuard::of(policy_id, policy),
        })
    }
}

/// The group guard backed by the policy's shared counters.
///
/// Every decrement stops at 0 ([`atomic::sub_saturating`]): a count that
/// drifted (a race between a forget and a connect, a daemon of an older
/// version) errs by one until the daemon's next reconciliation, instead of
/// wrapping to 2^64 - 1, which would make the guard allow every trip.
pub struct PolicyGuard {
    stats: Option<*mut PolicyStats>,
    max_open_percent: u32,
}

impl PolicyGuard {
    #[inline(always)]
    pub fn of(policy_id: u32, policy: &Policy) -> Self {
        Self {
            stats: POLICY_STATS.get_ptr_mut(policy_id),
            max_open_percent: policy.max_open_percent,
        }
    }
}

impl PolicyGuard {
    /// The shared counts of policy `id`, if the id is in range.
    #[inline(always)]
    pub fn stats(id: u32) -> Option<*mut PolicyStats> {
        POLICY_STATS.get_ptr_mut(id)
    }

    /// A destination (open or not) moves from one policy's counts to another's.
    #[inline(always)]
    pub fn move_dest(from: Option<*mut PolicyStats>, to: Option<*mut PolicyStats>, open: bool) {
        // SAFETY: values of POLICY_STATS, valid for the program's run.
        if let Some(from) = from {
            // SAFETY: `from` points to a value of POLICY_STATS (see above);
            // only a field's address is taken, no reference.
            atomic::sub_saturating(unsafe { &raw mut (*from).tracked }, 1);
            if open {
                // SAFETY: as above.
                atomic::sub_saturating(unsafe { &raw mut (*from).open }, 1);
            }
        }
        if let Some(to) = to {
            // SAFETY: `to` points to a value of POLICY_STATS (see above).
            atomic::add(unsafe { &raw mut (*to).tracked }, 1);
            if open {
                // SAFETY: as above.
                atomic::add(unsafe { &raw mut (*to).open }, 1);
            }
        }
    }

    /// One destination of the policy left the map.
    #[inline(always)]
    pub fn untracked(&self) {
        if let Some(stats) = self.stats {
            // SAFETY: a value of POLICY_STATS, valid for the program's run.
            atomic::sub_saturating(unsafe { &raw mut (*stats).tracked }, 1);
        }
    }

    /// The daemon's correction of policy counts it found drifted: signed
    /// deltas, added atomically (so concurrent changes by the hooks are kept),
    /// each count stopping at 0.
    #[inline(always)]
    pub fn adjust(stats: *mut PolicyStats, tracked: i64, open: i64) {
        // SAFETY: a value of POLICY_STATS, valid for the program's run.
        let counts = unsafe {
            [
                (&raw mut (*stats).tracked, tracked),
                (&raw mut (*stats).open, open),
            ]
        };
        for (count, delta) in counts {
            if delta >= 0 {
                atomic::add(count, delta as u64);
            } else {
                atomic::sub_saturating(count, delta.unsigned_abs());
            }
        }
    }
}

impl OpenGuard for PolicyGuard {
    /// Reserve-then-check: count the open destination first, then read the
    /// count back (which includes every concurrent reservation) and roll back
    /// when the guard forbids it. Concurrent trips of different destinations can
    /// therefore never both slip over the cap; at worst both roll back.
    #[inline(always)]
    fn try_open(&mut self) -> bool {
        let Some(stats) = self.stats else {
            return true;
        };
        // SAFETY: a value of POLICY_STATS, valid for the program's run.
        let (open, tracked) = unsafe { (&raw mut (*stats).open, &raw const (*stats).tracked) };
        atomic::add(open, 1);
        if guard_allows(
            atomic::load(open),
            atomic::load(tracked),
            self.max_open_percent,
        ) {
            return true;
        }
        atomic::sub_saturating(open, 1);
        // SAFETY: `stats` points to a value of POLICY_STATS, valid for the
        // program's run; only a field's address is taken.
        atomic::add(unsafe { &raw mut (*stats).guard_refusals }, 1);
        false
    }

    #[inline(always)]
    fn closed(&mut self) {
        if let Some(stats) = self.stats {
            // SAFETY: as above.
            atomic::sub_saturating(unsafe { &raw mut (*stats).open }, 1);
        }
    }
}

/// A transition and what the event about it says, read under the lock.
pub struct Change {
    pub transition: Transition,
    pub trips: u32,
    pub open_until_ns: u64,
}

impl Change {
    /// Captures the state after `transition`, if any.
    #[inline(always)]
    pub fn after(transition: Option<Transition>, state: &DestState) -> Option<Self> {
        transition.map(|transition| Self {
            transition,
            trips: state.breaker.trips,
            open_until_ns: state.breaker.open_until_ns,
        })
    }

    /// Sends the event (after the lock is released: it calls a helper).
    #[inline(always)]
    pub fn emit(self, dest: &DestKey, policy_id: u32, now: u64) {
        let event = Event {
            kind: event::Kind::of(self.transition) as u32,
            policy_id,
            dest: *dest,
            trips: self.trips,
            class: 0,
            at_ns: now,
            open_until_ns: self.open_until_ns,
        };
        if EVENTS.output(event, 0).is_err() {
            counters::bump(GlobalCounter::EventsDropped);
        }
    }
}

/// A class starting or ending to be shed at a destination (one admission
/// changes at most its own class's bit).
pub struct ClassChange {
    pub kind: event::Kind,
    pub class: u32,
}

impl ClassChange {
    /// The change between the shedding bits before and after an admission.
    #[inline(always)]
    pub fn between(before: u32, after: u32) -> Option<Self> {
        let changed = before ^ after;
        if changed == 0 {
            return None;
        }
        let kind = if after & changed != 0 {
            event::Kind::ClassShed
        } else {
            event::Kind::ClassRestored
        };
        Some(Self {
            kind,
            class: changed.trailing_zeros(),
        })
    }

    /// Sends the event (after the lock is released).
    #[inline(always)]
    pub fn emit(self, dest: &DestKey, policy_id: u32, now: u64) {
        let event = Event {
            kind: self.kind as u32,
            policy_id,
            dest: *dest,
            trips: 0,
            class: self.class,
            at_ns: now,
            open_until_ns: 0,
        };
        if EVENTS.output(event, 0).is_err() {
            counters::bump(GlobalCounter::EventsDropped);
        }
    }
}

//! The per-destination circuit breaker and bulkhead, as pure code.
//!
//! Every function here runs with the destination's `bpf_spin_lock` held (in the
//! kernel) or on a plain value (in host tests): they see and change one
//! destination's state sequentially, so caps are exact (reserve-then-check comes
//! for free) and every slot is released exactly once. Shared per-policy counts
//! (the group guard) go through [`OpenGuard`], which the kernel backs with atomics.
//!
//! States: CLOSED → OPEN on `failure_threshold` consecutive failures or when the
//! window's failure share reaches `failure_rate` over at least `min_attempts`;
//! OPEN rejects until `open_until`; the first connect after that moves to
//! HALF_OPEN, which admits at most K probes at once; M probe successes → CLOSED,
//! a probe failure → OPEN for the next backoff step.

mod window;

pub use window::{Bucket, Totals, WINDOW_BUCKETS, Window};

use crate::{
    class::{self, Caller, ClassVerdict, Priority},
    dest::{DestState, add_shared},
    outcome::Outcome,
    policy::{BackoffRow, Mode, Policy, Signal, spread_ns},
    raw_enum,
    sock::{SockInfo, flags},
};

raw_enum! {
    /// A breaker's state ([`Breaker::state`]).
    pub enum State {
        Closed = 0,
        Open = 1,
        HalfOpen = 2,
    }
}

/// What the gate reads of a destination, without its lock, to tell whether
/// a connect meets an OPEN (or forced-open) circuit: the common rejection,
/// which then costs neither the lock nor the decision. Fields read apart may
/// be torn by a change made meanwhile under the lock; any mix of old and new
/// values that still [`rejects`](Self::rejects) is a rejection the connect
/// could have met just before that change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenView {
    pub generation: u64,
    pub open_until_ns: u64,
    pub policy_id: u32,
    pub policy_epoch: u32,
    pub state: u32,
}

impl OpenView {
    /// Whether [`DestState::admit`] (after [`DestState::join_epoch`]) would
    /// reject a connect of `policy_id` at `now`, not forced open, because the
    /// circuit is OPEN, and change nothing but `rejected_circuit` (one more)
    /// and the caller's `last_attempt_ns`.
    #[inline(always)]
    pub fn rejects(&self, policy_id: u32, policy: &Policy, now: u64) -> bool {
        self.is_open(policy_id, policy) && now < self.open_until_ns
    }

    /// Whether the circuit is OPEN, for `policy_id` as it is now, enforcing:
    /// all [`rejects`](Self::rejects) asks but the time, which a caller
    /// reads only then.
    #[inline(always)]
    pub fn is_open(&self, policy_id: u32, policy: &Policy) -> bool {
        self.state == State::Open as u32 && self.settled(policy_id, policy)
    }

    /// Whether the destination has admitted before, under `policy_id` as it
    /// is now, enforcing: then [`DestState::admit`] (after
    /// [`DestState::join_epoch`]) of a forced-open connect rejects it and
    /// changes nothing but what [`rejects`](Self::rejects) names.
    #[inline(always)]
    pub fn settled(&self, policy_id: u32, policy: &Policy) -> bool {
        self.generation != 0
            && self.policy_id == policy_id
            && self.policy_epoch == policy.epoch
            && policy.mode == Mode::Enforce as u32
    }
}

/// The breaker and bulkhead part of a destination's state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    /// A [`State`].
    pub state: u32,
    /// Trip level: the backoff step of the current or next open period. Rises with
    /// every trip, decays while healthy.
    pub trips: u32,
    pub consecutive_failures: u32,
    pub probes_in_flight: u32,
    pub probe_successes: u32,
    /// Connections holding a bulkhead slot (admitted, not yet closed).
    pub active: u32,
    /// Of those, still in SYN_SENT.
    pub pending: u32,
    /// The destination's own cap, learned by the daemon when its policy is
    /// adaptive ([`Policy::adaptive`]); 0 = none learned yet.
    pub limit: u32,
    pub open_until_ns: u64,
    /// When the latest half-open probe was admitted, to reclaim probes that
    /// never end (`Policy::probe_timeout_ns`).
    pub probe_started_ns: u64,
    /// Bumped on every entry into HALF_OPEN; a probe remembers it, so a probe
    /// from an earlier episode cannot count in a later one.
    pub half_open_epoch: u64,
    /// Start of the current healthy stretch (CLOSED with no failure), for decay.
    pub healthy_since_ns: u64,
    pub window: Window,
}
const _: () = assert!(size_of::<Breaker>() == 64 + 16 * WINDOW_BUCKETS);

/// Why a connect is (or would be) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The circuit is open (or half-open with every probe slot taken), or forced open.
    Circuit,
    /// `max_connections` reached.
    Bulkhead,
    /// `max_pending` reached.
    Pending,
}

/// What the gate does with a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted, holding a slot; `probe` when it is a half-open probe.
    Admit { probe: bool },
    /// Refused with the policy's errno.
    Reject(Cause),
}

/// A state change worth an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// CLOSED → OPEN.
    Tripped,
    /// OPEN → HALF_OPEN.
    HalfOpened,
    /// HALF_OPEN → CLOSED.
    Closed,
    /// HALF_OPEN → OPEN (a probe failed).
    Reopened,
    /// CLOSED → OPEN: ejected as an outlier among its policy's peers.
    Ejected,
}

/// The group guard: shared counts of a policy's open destinations.
pub trait OpenGuard {
    /// Reserves one more open destination; false (and nothing reserved) when the
    /// policy's `max_open_percent` forbids it.
    fn try_open(&mut self) -> bool;
    /// One destination of the policy closed again.
    fn closed(&mut self);
}

/// A guard that always allows, for policies with no guard.
pub struct NoGuard;

impl OpenGuard for NoGuard {
    fn try_open(&mut self) -> bool {
        true
    }
    fn closed(&mut self) {}
}

impl DestState {
    /// The gate's decision for a connect at `now`. `forced_open` is the
    /// destination's forced-open override; `caller` the caller's class when
    /// classes are configured ([`crate::class`]). On `Admit`, `sock` is filled
    /// in (slot, class, probe epoch, generation); on `Reject` it is left alone.
    /// A class starting or ending to be shed flips its bit in
    /// [`DestState::shedding`].
    #[inline(always)]
    pub fn admit(
        &mut self,
        policy: &Policy,
        backoff: &BackoffRow,
        now: u64,
        forced_open: bool,
        caller: Option<Caller<'_>>,
        sock: &mut SockInfo,
    ) -> (Verdict, Option<Transition>) {
        if self.generation == 0 {
            self.generation = now.max(1);
        }
        let mut transition = None;
        if !forced_open && self.probes_outlived(policy, now) {
            self.counters.probes_reclaimed += self.breaker.probes_in_flight as u64;
            self.open(policy, backoff, now);
            transition = Some(Transition::Reopened);
        }
        let b = &mut self.breaker;
        let mut probe = false;
        let mut refused = None;
        if forced_open {
            refused = Some(Cause::Circuit);
        } else {
            if b.state == State::Open as u32 && now >= b.open_until_ns {
                b.state = State::HalfOpen as u32;
                b.half_open_epoch += 1;
                b.probes_in_flight = 0;
                b.probe_successes = 0;
                transition = Some(Transition::HalfOpened);
            }
            // The field is raw (see the crate's documentation): constant
            // patterns.
            const OPEN: u32 = State::Open as u32;
            const HALF_OPEN: u32 = State::HalfOpen as u32;
            match b.state {
                OPEN => refused = Some(Cause::Circuit),
                HALF_OPEN if b.probes_in_flight >= policy.half_open_probes.max(1) => {
                    refused = Some(Cause::Circuit)
                }
                HALF_OPEN => probe = true,
                _ => decay(b, policy, now),
            }
        }
        let mut class_refused = false;
        if refused.is_none() {
            let cap = policy.cap(b.limit);
            if cap != 0 && b.active >= cap {
                refused = Some(Cause::Bulkhead);
            } else if policy.max_pending != 0 && b.pending >= policy.max_pending {
                refused = Some(Cause::Pending);
            } else if let Some(caller) = caller {
                let bit = 1u32 << (caller.class as u32);
                let degraded = if caller.class == Priority::Critical {
                    0
                } else {
                    class::degradation(
                        b.window.totals(now, policy.window_ns),
                        policy.min_attempts,
                        policy.trip_permille(&self.baseline),
                    )
                };
                match class::decide(cap, caller.table, &self.classes, caller.class, degraded) {
                    ClassVerdict::Admit => self.shedding &= !bit,
                    ClassVerdict::Full => refused = Some(Cause::Bulkhead),
                    ClassVerdict::Shed => {
                        self.shedding |= bit;
                        refused = Some(Cause::Circuit);
                    }
                }
                class_refused = refused.is_some();
            }
        }
        let c = &mut self.counters;
        if let Some(cause) = refused {
            if class_refused
                && let Some(caller) = caller
                && let Some(counts) = self.classes.get_mut(caller.class as usize)
            {
                counts.shed += 1;
            }
            let enforce = policy.mode == Mode::Enforce as u32;
            let slot = match (cause, enforce) {
                (Cause::Circuit, true) => &mut c.rejected_circuit,
                (Cause::Circuit, false) => &mut c.would_reject_circuit,
                (_, true) => &mut c.rejected_bulkhead,
                (_, false) => &mut c.would_reject_bulkhead,
            };
            add_shared(slot);
            if enforce {
                return (Verdict::Reject(cause), transition);
            }
            // Observe: admitted, but never as a probe (its outcome must not move
            // the state machine as if the slot had been free).
            probe = false;
        }
        c.attempts += 1;
        b.active += 1;
        b.pending += 1;
        sock.flags = flags::HOLDS_SLOT | flags::PENDING;
        sock.marks = 0;
        sock.generation = self.generation;
        if let Some(caller) = caller
            && let Some(counts) = self.classes.get_mut(caller.class as usize)
        {
            counts.active += 1;
            counts.admitted += 1;
            sock.flags |= flags::CLASS_SLOT;
            sock.class = caller.class as u32;
        }
        if probe {
            b.probes_in_flight += 1;
            b.probe_started_ns = now;
            c.probes += 1;
            sock.flags |= flags::PROBE;
            sock.probe_epoch = b.half_open_epoch;
        }
        (Verdict::Admit { probe }, transition)
    }

    /// What the gate's lock-free check of an OPEN circuit reads.
    pub const fn open_view(&self) -> OpenView {
        OpenView {
            generation: self.generation,
            open_until_ns: self.breaker.open_until_ns,
            policy_id: self.policy_id,
            policy_epoch: self.policy_epoch,
            state: self.breaker.state,
        }
    }

    /// HALF_OPEN with every probe slot taken by probes older than the
    /// policy's bound: they will not answer in any useful time.
    #[inline(always)]
    fn probes_outlived(&self, policy: &Policy, now: u64) -> bool {
        let b = &self.breaker;
        b.state == State::HalfOpen as u32
            && policy.probe_timeout_ns != 0
            && b.probes_in_flight >= policy.half_open_probes.max(1)
            && now.saturating_sub(b.probe_started_ns) >= policy.probe_timeout_ns
    }

    /// Whether `sock` was admitted by this entry, not by an earlier one of the
    /// same key that was forgotten since.
    #[inline(always)]
    pub const fn admitted(&self, sock: &SockInfo) -> bool {
        self.generation == sock.generation
    }

    /// The destination is (again) under the policy `epoch`: when it was under
    /// another policy that held the same id, it starts over CLOSED.
    #[inline(always)]
    pub fn join_epoch(
        &mut self,
        epoch: u32,
        now: u64,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        if self.policy_epoch == epoch {
            return None;
        }
        let fresh = self.generation == 0;
        self.policy_epoch = epoch;
        if fresh {
            return None;
        }
        // What was learned under another policy is not this one's to trip on.
        self.baseline.windows = 0;
        self.reset(now, guard)
    }

    /// The handshake completed at `now`.
    #[inline(always)]
    pub fn on_established(
        &mut self,
        policy: &Policy,
        backoff: &BackoffRow,
        now: u64,
        sock: &mut SockInfo,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        self.release_pending(sock);
        if !take_outcome(sock) {
            return None;
        }
        sock.flags |= flags::ESTABLISHED;
        let latency = now.saturating_sub(sock.start_ns);
        self.latency.record(latency);
        if policy.signal == Signal::Handshake as u32 {
            self.signal.record(latency);
        }
        self.counters.successes += 1;
        let slow_ns = policy.slow_ns(&self.baseline);
        if slow_ns != 0 && latency > slow_ns {
            self.counters.slow += 1;
            return self.breaker_failure(policy, backoff, now, sock, guard);
        }
        self.breaker_success(policy, now, sock, guard)
    }

    /// The connect ended without a handshake: a failure, or abandoned.
    #[inline(always)]
    pub fn on_failed(
        &mut self,
        policy: &Policy,
        backoff: &BackoffRow,
        now: u64,
        sock: &mut SockInfo,
        outcome: Outcome,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        self.release_pending(sock);
        if !take_outcome(sock) {
            return None;
        }
        let c = &mut self.counters;
        match outcome {
            Outcome::Refused => c.failures_refused += 1,
            Outcome::Timeout => c.failures_timeout += 1,
            Outcome::Unreachable => c.failures_unreachable += 1,
            Outcome::Abandoned => {
                c.abandoned += 1;
                self.free_probe(sock);
                return None;
            }
            Outcome::LocalError => {
                c.local_errors += 1;
                self.free_probe(sock);
                return None;
            }
        }
        self.breaker_failure(policy, backoff, now, sock, guard)
    }

    /// The gate admitted a connect but could not record it on the socket (its
    /// storage could not be created): give back what the admission holds and
    /// count the connect as abandoned, so every attempt still ends exactly once.
    #[inline(always)]
    pub fn cancel(&mut self, sock: &mut SockInfo) {
        if take_outcome(sock) {
            self.counters.abandoned += 1;
            self.free_probe(sock);
        }
        self.on_closed(sock);
    }

    /// The connect ended without an outcome of the destination's making: a
    /// probe's slot is free again.
    #[inline(always)]
    fn free_probe(&mut self, sock: &SockInfo) {
        if self.is_current_probe(sock) {
            self.breaker.probes_in_flight -= 1;
        }
    }

    /// An established connection closed at `now`: give back what it holds,
    /// and its lifetime is the policy's signal when the policy asks for it.
    /// Once per connection.
    #[inline(always)]
    pub fn on_connection_closed(&mut self, policy: &Policy, now: u64, sock: &mut SockInfo) {
        if sock.flags & flags::ESTABLISHED != 0 {
            sock.flags &= !flags::ESTABLISHED;
            if policy.signal == Signal::Lifetime as u32 {
                self.signal.record(now.saturating_sub(sock.start_ns));
            }
        }
        self.on_closed(sock);
    }

    /// The first byte of the answer to the caller's first byte arrived,
    /// `latency` after it: the policy's signal when it asks for it.
    #[inline(always)]
    pub fn on_answered(&mut self, policy: &Policy, latency: u64) {
        if policy.signal == Signal::Response as u32 {
            self.signal.record(latency);
        }
    }

    /// The socket reached CLOSE or was released: give back whatever it holds.
    /// Idempotent: the flags say what is still held.
    #[inline(always)]
    pub fn on_closed(&mut self, sock: &mut SockInfo) {
        self.release_pending(sock);
        if sock.flags & flags::HOLDS_SLOT != 0 {
            sock.flags &= !flags::HOLDS_SLOT;
            self.breaker.active = self.breaker.active.saturating_sub(1);
            if sock.flags & flags::CLASS_SLOT != 0
                && let Some(counts) = self.classes.get_mut(sock.class as usize)
            {
                counts.active = counts.active.saturating_sub(1);
            }
        }
    }

    #[inline(always)]
    fn release_pending(&mut self, sock: &mut SockInfo) {
        if sock.flags & flags::PENDING != 0 {
            sock.flags &= !flags::PENDING;
            self.breaker.pending = self.breaker.pending.saturating_sub(1);
        }
    }

    #[inline(always)]
    fn is_current_probe(&self, sock: &SockInfo) -> bool {
        sock.flags & flags::PROBE != 0
            && self.breaker.state == State::HalfOpen as u32
            && sock.probe_epoch == self.breaker.half_open_epoch
    }

    #[inline(always)]
    fn breaker_success(
        &mut self,
        policy: &Policy,
        now: u64,
        sock: &SockInfo,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        if self.is_current_probe(sock) {
            let b = &mut self.breaker;
            b.probes_in_flight -= 1;
            b.probe_successes += 1;
            if b.probe_successes < policy.close_after.max(1) {
                return None;
            }
            b.close(now, guard);
            return Some(Transition::Closed);
        }
        let b = &mut self.breaker;
        if b.state == State::Closed as u32 && sock.flags & flags::PROBE == 0 {
            b.consecutive_failures = 0;
            b.window.record(now, policy.window_ns, false);
            decay(b, policy, now);
        }
        None
    }

    #[inline(always)]
    fn breaker_failure(
        &mut self,
        policy: &Policy,
        backoff: &BackoffRow,
        now: u64,
        sock: &SockInfo,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        if self.is_current_probe(sock) {
            self.open(policy, backoff, now);
            return Some(Transition::Reopened);
        }
        let b = &mut self.breaker;
        if b.state != State::Closed as u32 || sock.flags & flags::PROBE != 0 {
            // Admitted before the trip, or a stale probe: the state already knows.
            return None;
        }
        b.consecutive_failures += 1;
        b.healthy_since_ns = now;
        b.window.record(now, policy.window_ns, true);
        if !should_trip(policy, policy.trip_permille(&self.baseline), b, now) {
            return None;
        }
        if !guard.try_open() {
            self.counters.guard_refusals += 1;
            return None;
        }
        self.open(policy, backoff, now);
        Some(Transition::Tripped)
    }

    /// Moves to OPEN for the next backoff step, spread by the policy's
    /// jitter: the clock's low bits and the entry's generation make each
    /// destination's spread its own.
    #[inline(always)]
    fn open(&mut self, policy: &Policy, backoff: &BackoffRow, now: u64) {
        let seed = now ^ self.generation.rotate_left(32);
        let b = &mut self.breaker;
        b.trips = b.trips.saturating_add(1);
        b.state = State::Open as u32;
        let step = backoff.open_ns(b.trips, policy.backoff_steps);
        b.open_until_ns = now + spread_ns(step, policy.jitter_permille, seed);
        b.probes_in_flight = 0;
        b.probe_successes = 0;
        b.consecutive_failures = 0;
        b.window.clear();
        self.counters.trips += 1;
    }
}

/// Commands from the daemon (see [`crate::control`]).
impl DestState {
    /// Gives back every slot (connections, pending handshakes, half-open
    /// probes) and starts a new generation at `now`: whatever was admitted
    /// before can no longer release into this entry. `None` when it held
    /// none. Errs towards admitting: connections admitted before run
    /// uncounted until they end, and none can strand a slot.
    #[inline(always)]
    pub fn orphan_slots(&mut self, now: u64) -> Option<()> {
        let b = &mut self.breaker;
        if b.active == 0 && b.pending == 0 && b.probes_in_flight == 0 {
            return None;
        }
        b.active = 0;
        b.pending = 0;
        b.probes_in_flight = 0;
        self.generation = now.max(self.generation + 1);
        Some(())
    }

    /// Back to CLOSED as new. Counters stay.
    #[inline(always)]
    pub fn reset(&mut self, now: u64, guard: &mut impl OpenGuard) -> Option<Transition> {
        let b = &mut self.breaker;
        let was_open = b.state != State::Closed as u32;
        b.state = State::Closed as u32;
        b.trips = 0;
        b.consecutive_failures = 0;
        b.probes_in_flight = 0;
        b.probe_successes = 0;
        b.open_until_ns = 0;
        b.healthy_since_ns = now;
        b.window.clear();
        if was_open {
            guard.closed();
            return Some(Transition::Closed);
        }
        None
    }

    /// The daemon judged the destination an outlier among its policy's
    /// peers: a CLOSED one opens until `now + duration_ns`, without moving
    /// its trip level (a failed probe reopens it for the backoff's step as
    /// usual). `None` (and nothing changed) when it is not CLOSED or the
    /// group guard refuses.
    #[inline(always)]
    pub fn eject(
        &mut self,
        now: u64,
        duration_ns: u64,
        guard: &mut impl OpenGuard,
    ) -> Option<Transition> {
        if self.breaker.state != State::Closed as u32 {
            return None;
        }
        if !guard.try_open() {
            self.counters.guard_refusals += 1;
            return None;
        }
        let b = &mut self.breaker;
        b.state = State::Open as u32;
        b.open_until_ns = now.saturating_add(duration_ns);
        b.probes_in_flight = 0;
        b.probe_successes = 0;
        b.consecutive_failures = 0;
        Some(Transition::Ejected)
    }

    /// A healing probe reached the destination: OPEN goes HALF_OPEN at once, and
    /// in HALF_OPEN the probe counts as one probe success. `None` (and nothing
    /// changed) when the destination is CLOSED.
    #[inline(always)]
    pub fn heal_probe_ok(
        &mut self,
        policy: &Policy,
        now: u64,
        guard: &mut impl OpenGuard,
    ) -> Option<Option<Transition>> {
        let b = &mut self.breaker;
        let mut transition = None;
        if b.state == State::Open as u32 {
            b.state = State::HalfOpen as u32;
            b.half_open_epoch += 1;
            b.probes_in_flight = 0;
            b.probe_successes = 0;
            transition = Some(Transition::HalfOpened);
        }
        if b.state != State::HalfOpen as u32 {
            return None;
        }
        b.probe_successes += 1;
        self.counters.probes += 1;
        if b.probe_successes >= policy.close_after.max(1) {
            b.close(now, guard);
            transition = Some(Transition::Closed);
        }
        Some(transition)
    }

    /// A healing probe failed while HALF_OPEN: reopen for the next step. `None`
    /// in any other state (an OPEN destination simply stays open).
    #[inline(always)]
    pub fn heal_probe_failed(
        &mut self,
        policy: &Policy,
        backoff: &BackoffRow,
        now: u64,
    ) -> Option<Transition> {
        if self.breaker.state != State::HalfOpen as u32 {
            return None;
        }
        self.counters.probes += 1;
        self.open(policy, backoff, now);
        Some(Transition::Reopened)
    }
}

impl Breaker {
    /// HALF_OPEN → CLOSED: a healthy stretch starts with a clean window.
    #[inline(always)]
    fn close(&mut self, now: u64, guard: &mut impl OpenGuard) {
        self.state = State::Closed as u32;
        self.consecutive_failures = 0;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        self.healthy_since_ns = now;
        self.window.clear();
        guard.closed();
    }
}

/// An outcome is taken once per connect, whichever hook sees it first.
#[inline(always)]
fn take_outcome(sock: &mut SockInfo) -> bool {
    let first = sock.flags & flags::OUTCOME_RECORDED == 0;
    sock.flags |= flags::OUTCOME_RECORDED;
    first
}

/// Whether a failure at `now` trips the breaker: the consecutive failures,
/// or the window's failure share against `trip_permille` (the policy's rate
/// or the destination's learned one).
#[inline(always)]
fn should_trip(policy: &Policy, trip_permille: u32, b: &Breaker, now: u64) -> bool {
    if policy.failure_threshold != 0 && b.consecutive_failures >= policy.failure_threshold {
        return true;
    }
    if trip_permille == 0 {
        return false;
    }
    let t = b.window.totals(now, policy.window_ns);
    t.attempts != 0
        && t.attempts >= policy.min_attempts
        && t.failures as u64 * 1000 >= trip_permille as u64 * t.attempts as u64
}

/// While CLOSED and healthy for `trip_decay`, the trip level drops by one.
#[inline(always)]
fn decay(b: &mut Breaker, policy: &Policy, now: u64) {
    if b.state == State::Closed as u32
        && b.trips > 0
        && policy.trip_decay_ns != 0
        && now.saturating_sub(b.healthy_since_ns) >= policy.trip_decay_ns
    {
        b.trips -= 1;
        b.healthy_since_ns = now;
    }
}

#[cfg(test)]
mod tests;

//! Scenario tests of the breaker; `tests/breaker_model.rs` drives it with random
//! event sequences against a reference model.

use super::*;
use crate::policy::Mode;

const MS: u64 = 1_000_000;

fn policy() -> Policy {
    Policy {
        mode: Mode::Enforce as u32,
        failure_threshold: 3,
        failure_rate_permille: 0,
        min_attempts: 0,
        window_ns: 10_000 * MS,
        half_open_probes: 2,
        close_after: 2,
        errno: 111,
        max_open_percent: 100,
        backoff_steps: 16,
        ..Policy::default()
    }
}

fn backoff() -> BackoffRow {
    BackoffRow::exponential(100 * MS, 10_000 * MS)
}

struct Dest {
    state: DestState,
    policy: Policy,
    backoff: BackoffRow,
}

impl Dest {
    fn new(policy: Policy) -> Self {
        Self {
            state: DestState::new(1, 0),
            policy,
            backoff: backoff(),
        }
    }

    fn connect(&mut self, now: u64) -> (Verdict, SockInfo) {
        let mut sock = SockInfo {
            start_ns: now,
            ..SockInfo::default()
        };
        let (v, _) = self
            .state
            .admit(&self.policy, &self.backoff, now, false, None, &mut sock);
        (v, sock)
    }

    fn fail(&mut self, now: u64, sock: &mut SockInfo) -> Option<Transition> {
        let t = self.state.on_failed(
            &self.policy,
            &self.backoff,
            now,
            sock,
            Outcome::Refused,
            &mut NoGuard,
        );
        self.state.on_closed(sock);
        t
    }

    fn succeed(&mut self, now: u64, sock: &mut SockInfo) -> Option<Transition> {
        self.state
            .on_established(&self.policy, &self.backoff, now, sock, &mut NoGuard)
    }

    /// A connect that fails at once.
    fn refused(&mut self, now: u64) -> Option<Transition> {
        let (v, mut sock) = self.connect(now);
        assert!(matches!(v, Verdict::Admit { .. }), "{v:?}");
        self.fail(now, &mut sock)
    }
}

#[test]
fn consecutive_failures_trip_and_open_rejects() {
    let mut d = Dest::new(policy());
    assert_eq!(d.refused(0), None);
    assert_eq!(d.refused(1), None);
    assert_eq!(d.refused(2), Some(Transition::Tripped));
    assert_eq!(d.state.breaker.state, State::Open as u32);
    assert_eq!(d.state.breaker.open_until_ns, 2 + 100 * MS);
    let (v, _) = d.connect(50 * MS);
    assert_eq!(v, Verdict::Reject(Cause::Circuit));
    assert_eq!(d.state.counters.rejected_circuit, 1);
    // Our own rejection is not a failure of the destination.
    assert_eq!(d.state.counters.failures(), 3);
}

#[test]
fn the_lock_free_open_check_sees_only_an_open_circuit_of_this_policy() {
    let mut d = Dest::new(policy());
    let p = d.policy;
    let id = d.state.policy_id;
    assert!(!d.state.open_view().rejects(id, &p, 1), "CLOSED");
    for t in 0..3 {
        d.refused(t);
    }
    let open_until = d.state.breaker.open_until_ns;
    let view = d.state.open_view();
    assert!(view.rejects(id, &p, open_until - 1));
    // HALF_OPEN is the lock's to decide, as is another policy's (or an
    // earlier epoch's) destination, and observe mode counts would-rejects.
    assert!(!view.rejects(id, &p, open_until));
    assert!(!view.rejects(id + 1, &p, 1));
    let next_epoch = Policy {
        epoch: p.epoch + 1,
        ..p
    };
    assert!(!view.rejects(id, &next_epoch, 1));
    let observe = Policy {
        mode: Mode::Observe as u32,
        ..p
    };
    assert!(!view.rejects(id, &observe, 1));
    // What it rejects, `admit` rejects, changing only the count.
    let before = d.state;
    let (v, _) = d.connect(open_until - 1);
    assert_eq!(v, Verdict::Reject(Cause::Circuit));
    let mut counted = before;
    counted.counters.rejected_circuit += 1;
    assert_eq!(d.state, counted);
}

#[test]
fn the_lock_free_forced_open_check_needs_an_admission_under_this_policy_epoch() {
    let forced = |d: &mut Dest, now| {
        let mut sock = SockInfo::default();
        d.state
            .admit(&d.policy, &d.backoff, now, true, None, &mut sock)
            .0
    };
    let mut d = Dest::new(policy());
    let (p, id) = (d.policy, d.state.policy_id);
    // A first admission stamps the generation: the lock's to do.
    assert!(!d.state.open_view().settled(id, &p), "never admitted");
    assert_eq!(forced(&mut d, 1), Verdict::Reject(Cause::Circuit));
    assert_ne!(d.state.generation, 0);
    let view = d.state.open_view();
    assert!(view.settled(id, &p));
    assert!(!view.settled(id + 1, &p));
    assert!(!view.settled(
        id,
        &Policy {
            epoch: p.epoch + 1,
            ..p
        }
    ));
    assert!(!view.settled(
        id,
        &Policy {
            mode: Mode::Observe as u32,
            ..p
        }
    ));
    // CLOSED, OPEN or HALF_OPEN: what it lets through unlocked, `admit`
    // rejects, changing only the count.
    let check = |d: &mut Dest, now, state: State| {
        assert_eq!(d.state.breaker.state, state as u32);
        assert!(d.state.open_view().settled(id, &p));
        let before = d.state;
        assert_eq!(forced(d, now), Verdict::Reject(Cause::Circuit));
        let mut counted = before;
        counted.counters.rejected_circuit += 1;
        assert_eq!(d.state, counted, "{state:?} at {now}");
    };
    check(&mut d, 1, State::Closed);
    for t in 2..5 {
        d.refused(t);
    }
    check(&mut d, 5, State::Open);
    // The open period over, a probe takes the circuit HALF_OPEN.
    let (probe, _) = d.connect(200 * MS);
    assert_eq!(probe, Verdict::Admit { probe: true });
    check(&mut d, 200 * MS, State::HalfOpen);
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut d = Dest::new(policy());
    d.refused(0);
    d.refused(1);
    let (_, mut s) = d.connect(2);
    d.succeed(3, &mut s);
    assert_eq!(d.refused(4), None);
    assert_eq!(d.refused(5), None);
    assert_eq!(d.state.breaker.state, State::Closed as u32);
}

#[test]
fn half_open_admits_k_probes_and_m_successes_close() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    let after = d.state.breaker.open_until_ns;
    let (v1, mut p1) = d.connect(after);
    let (v2, mut p2) = d.connect(after);
    let (v3, _) = d.connect(after);
    assert_eq!(v1, Verdict::Admit { probe: true });
    assert_eq!(v2, Verdict::Admit { probe: true });
    assert_eq!(v3, Verdict::Reject(Cause::Circuit));
    assert_eq!(d.succeed(after + 1, &mut p1), None);
    // A probe slot is free again.
    let (v4, mut p4) = d.connect(after + 2);
    assert_eq!(v4, Verdict::Admit { probe: true });
    assert_eq!(d.succeed(after + 3, &mut p2), Some(Transition::Closed));
    assert_eq!(d.state.breaker.state, State::Closed as u32);
    // A probe of the closed episode no longer counts as a probe.
    assert_eq!(d.succeed(after + 4, &mut p4), None);
    assert_eq!(d.state.breaker.probes_in_flight, 0);
}

#[test]
fn a_failed_probe_reopens_for_the_next_longer_step() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    let first_open = d.state.breaker.open_until_ns - 2;
    let after = d.state.breaker.open_until_ns;
    let (_, mut probe) = d.connect(after);
    assert_eq!(d.fail(after + 1, &mut probe), Some(Transition::Reopened));
    assert_eq!(d.state.breaker.state, State::Open as u32);
    let second_open = d.state.breaker.open_until_ns - (after + 1);
    assert_eq!(second_open, 2 * first_open);
    assert_eq!(d.state.counters.trips, 2);
}

#[test]
fn failure_rate_needs_min_attempts_and_forgets_old_buckets() {
    let mut p = policy();
    p.failure_threshold = 0;
    p.failure_rate_permille = 500;
    p.min_attempts = 4;
    p.window_ns = 8_000 * MS;
    let mut d = Dest::new(p);
    // 3 failures of 3: 100% but below min_attempts.
    for t in 0..3 {
        assert_eq!(d.refused(t * MS), None);
    }
    // Much later the old failures have left the window: 1 failure of 1 again.
    let later = 100_000 * MS;
    assert_eq!(d.refused(later), None);
    let (_, mut s) = d.connect(later);
    d.succeed(later, &mut s);
    let (_, mut s) = d.connect(later);
    d.succeed(later, &mut s);
    // 2 failures of 4 = 50% with min_attempts met.
    assert_eq!(d.refused(later + 1), Some(Transition::Tripped));
}

#[test]
fn bulkhead_caps_active_and_pending() {
    let mut p = policy();
    p.max_connections = 2;
    p.max_pending = 1;
    let mut d = Dest::new(p);
    let (v1, mut s1) = d.connect(0);
    assert_eq!(v1, Verdict::Admit { probe: false });
    let (v2, _) = d.connect(0);
    assert_eq!(v2, Verdict::Reject(Cause::Pending));
    d.succeed(1, &mut s1);
    let (v3, mut s3) = d.connect(2);
    assert_eq!(v3, Verdict::Admit { probe: false });
    d.succeed(3, &mut s3);
    let (v4, _) = d.connect(4);
    assert_eq!(v4, Verdict::Reject(Cause::Bulkhead));
    d.state.on_closed(&mut s1);
    d.state.on_closed(&mut s1); // released exactly once
    assert_eq!(d.state.breaker.active, 1);
    d.state.on_closed(&mut s3);
    assert_eq!((d.state.breaker.active, d.state.breaker.pending), (0, 0));
    assert_eq!(d.state.counters.rejected_bulkhead, 2);
    assert_eq!(d.state.counters.failures(), 0);
}

#[test]
fn an_adaptive_policy_caps_at_the_learned_limit_and_a_static_one_ignores_it() {
    let mut p = policy();
    p.max_connections = 4;
    p.adaptive = 1;
    let mut d = Dest::new(p);
    // Nothing learned yet: max_connections is where the destination starts.
    let held = [d.connect(0), d.connect(1), d.connect(2), d.connect(3)];
    assert!(
        held.iter()
            .all(|(v, _)| *v == Verdict::Admit { probe: false })
    );
    assert_eq!(d.connect(4).0, Verdict::Reject(Cause::Bulkhead));
    // A learned limit below what is held refuses until enough close.
    d.state.breaker.limit = 2;
    for (_, mut s) in held.into_iter().take(2) {
        assert_eq!(d.connect(5).0, Verdict::Reject(Cause::Bulkhead));
        d.state.on_closed(&mut s);
    }
    assert_eq!(d.connect(6).0, Verdict::Reject(Cause::Bulkhead));
    // One above max_connections is the cap too: the daemon bounds it.
    d.state.breaker.limit = 5;
    for t in 7..10 {
        assert_eq!(d.connect(t).0, Verdict::Admit { probe: false }, "at {t}");
    }
    assert_eq!(d.connect(10).0, Verdict::Reject(Cause::Bulkhead));
    // A static policy never reads the learned limit.
    d.policy.adaptive = 0;
    d.state.breaker.limit = 100;
    assert_eq!(d.state.breaker.active, 5);
    assert_eq!(d.connect(11).0, Verdict::Reject(Cause::Bulkhead));
}

#[test]
fn observe_mode_never_rejects_but_counts() {
    let mut p = policy();
    p.mode = Mode::Observe as u32;
    p.max_connections = 1;
    let mut d = Dest::new(p);
    for t in 0..3 {
        d.refused(t);
    }
    assert_eq!(d.state.breaker.state, State::Open as u32);
    let (v, _) = d.connect(10);
    assert_eq!(v, Verdict::Admit { probe: false });
    assert_eq!(d.state.counters.would_reject_circuit, 1);
    assert_eq!(d.state.counters.rejected_circuit, 0);
}

#[test]
fn forced_open_rejects_without_changing_state() {
    let mut d = Dest::new(policy());
    let mut sock = SockInfo::default();
    let (v, t) = d
        .state
        .admit(&d.policy, &d.backoff, 0, true, None, &mut sock);
    assert_eq!((v, t), (Verdict::Reject(Cause::Circuit), None));
    assert_eq!(d.state.breaker.state, State::Closed as u32);
}

#[test]
fn slow_connects_count_as_failures() {
    let mut p = policy();
    p.slow_connect_ns = 10 * MS;
    p.failure_threshold = 2;
    let mut d = Dest::new(p);
    for t in [0, 100 * MS] {
        let (_, mut s) = d.connect(t);
        let transition = d.succeed(t + 20 * MS, &mut s);
        assert_eq!(transition.is_some(), t > 0);
    }
    assert_eq!(d.state.counters.slow, 2);
    assert_eq!(d.state.counters.successes, 2);
}

#[test]
fn trips_decay_after_a_healthy_stretch() {
    let mut p = policy();
    p.trip_decay_ns = 1_000 * MS;
    let mut d = Dest::new(p);
    for t in 0..3 {
        d.refused(t);
    }
    let after = d.state.breaker.open_until_ns;
    let (_, mut a) = d.connect(after);
    let (_, mut b) = d.connect(after);
    d.succeed(after, &mut a);
    d.succeed(after, &mut b);
    assert_eq!(d.state.breaker.trips, 1);
    d.connect(after + 500 * MS);
    assert_eq!(d.state.breaker.trips, 1);
    d.connect(after + 1_000 * MS);
    assert_eq!(d.state.breaker.trips, 0);
}

#[test]
fn the_group_guard_can_refuse_a_trip() {
    struct Full;
    impl OpenGuard for Full {
        fn try_open(&mut self) -> bool {
            false
        }
        fn closed(&mut self) {}
    }
    let mut d = Dest::new(policy());
    for t in 0..5 {
        let (_, mut s) = d.connect(t);
        let tr = d.state.on_failed(
            &d.policy,
            &d.backoff,
            t,
            &mut s,
            Outcome::Timeout,
            &mut Full,
        );
        assert_eq!(tr, None);
    }
    assert_eq!(d.state.breaker.state, State::Closed as u32);
    assert_eq!(d.state.counters.guard_refusals, 3);
}

#[test]
fn abandoned_is_not_a_failure_and_frees_the_probe() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    let after = d.state.breaker.open_until_ns;
    let (_, mut p) = d.connect(after);
    let t = d.state.on_failed(
        &d.policy,
        &d.backoff,
        after,
        &mut p,
        Outcome::Abandoned,
        &mut NoGuard,
    );
    assert_eq!(t, None);
    assert_eq!(d.state.breaker.probes_in_flight, 0);
    assert_eq!(d.state.breaker.state, State::HalfOpen as u32);
    assert_eq!(d.state.counters.abandoned, 1);
}

#[test]
fn healing_probes_half_open_then_close() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    // M = 2: the first good probe half-opens and counts, the second closes.
    assert_eq!(
        d.state.heal_probe_ok(&d.policy, 10, &mut NoGuard),
        Some(Some(Transition::HalfOpened))
    );
    assert_eq!(d.state.breaker.state, State::HalfOpen as u32);
    assert_eq!(
        d.state.heal_probe_ok(&d.policy, 20, &mut NoGuard),
        Some(Some(Transition::Closed))
    );
    assert_eq!(
        d.state.heal_probe_ok(&d.policy, 30, &mut NoGuard),
        None,
        "closed: moot"
    );
}

#[test]
fn a_failed_healing_probe_reopens_only_a_half_open_circuit() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    assert_eq!(d.state.heal_probe_failed(&d.policy, &d.backoff, 5), None);
    d.state.heal_probe_ok(&d.policy, 10, &mut NoGuard);
    assert_eq!(
        d.state.heal_probe_failed(&d.policy, &d.backoff, 20),
        Some(Transition::Reopened)
    );
    assert_eq!(d.state.breaker.trips, 2);
}

#[test]
fn reset_closes_and_forgets_the_trip_level_but_not_the_counters() {
    let mut d = Dest::new(policy());
    for t in 0..3 {
        d.refused(t);
    }
    assert_eq!(d.state.reset(5, &mut NoGuard), Some(Transition::Closed));
    assert_eq!(
        (d.state.breaker.state, d.state.breaker.trips),
        (State::Closed as u32, 0)
    );
    assert_eq!(d.state.counters.failures_refused, 3);
    assert_eq!(d.state.reset(6, &mut NoGuard), None);
}

#[test]
fn a_cancelled_admission_gives_everything_back() {
    let mut p = policy();
    p.max_connections = 1;
    let mut d = Dest::new(p);
    for t in 0..3 {
        d.refused(t);
    }
    let after = d.state.breaker.open_until_ns;
    let (v, mut probe) = d.connect(after);
    assert_eq!(v, Verdict::Admit { probe: true });
    d.state.cancel(&mut probe);
    let b = &d.state.breaker;
    assert_eq!((b.active, b.pending, b.probes_in_flight), (0, 0, 0));
    let c = &d.state.counters;
    assert_eq!(c.attempts, c.successes + c.failures() + c.abandoned);
    // The slot and the probe are free again.
    assert_eq!(d.connect(after).0, Verdict::Admit { probe: true });
}

#[test]
fn local_errors_and_abandoned_connects_never_trip() {
    let mut d = Dest::new(policy());
    for (t, outcome) in (0..10).zip([Outcome::LocalError, Outcome::Abandoned].iter().cycle()) {
        let (v, mut sock) = d.connect(t);
        assert!(matches!(v, Verdict::Admit { .. }));
        let tr = d
            .state
            .on_failed(&d.policy, &d.backoff, t, &mut sock, *outcome, &mut NoGuard);
        d.state.on_closed(&mut sock);
        assert_eq!(tr, None);
    }
    assert_eq!(d.state.breaker.state, State::Closed as u32);
    assert_eq!(d.state.counters.local_errors, 5);
    assert_eq!(d.state.counters.abandoned, 5);
    assert_eq!(d.state.counters.failures(), 0);
    assert_eq!((d.state.breaker.active, d.state.breaker.pending), (0, 0));
}

#[test]
fn a_probe_that_outlives_its_bound_is_reclaimed() {
    let mut p = policy();
    p.half_open_probes = 1;
    p.probe_timeout_ns = 500 * MS;
    let mut d = Dest::new(p);
    for t in 0..3 {
        d.refused(t);
    }
    let open_until = d.state.breaker.open_until_ns;
    // The probe is admitted and never heard of again.
    let (v, stuck) = d.connect(open_until);
    assert_eq!(v, Verdict::Admit { probe: true });
    let (v, _) = d.connect(open_until + 499 * MS);
    assert_eq!(v, Verdict::Reject(Cause::Circuit));
    let (v, _) = d.connect(open_until + 500 * MS);
    assert_eq!(v, Verdict::Reject(Cause::Circuit));
    assert_eq!(d.state.breaker.state, State::Open as u32);
    assert_eq!(d.state.counters.probes_reclaimed, 1);
    assert_eq!(d.state.breaker.trips, 2);
    // The stuck probe's late end changes nothing but its slot.
    let mut stuck = stuck;
    let tr = d.fail(open_until + 600 * MS, &mut stuck);
    assert_eq!(tr, None);
    assert_eq!(d.state.breaker.trips, 2);
    assert_eq!((d.state.breaker.active, d.state.breaker.pending), (0, 0));
}

#[test]
fn a_record_from_a_forgotten_entry_is_told_apart() {
    let mut d = Dest::new(policy());
    let (_, sock) = d.connect(5);
    assert!(d.state.admitted(&sock));
    let mut again = Dest::new(policy());
    let (_, newer) = again.connect(9);
    assert!(!again.state.admitted(&sock));
    assert!(again.state.admitted(&newer));
}

#[test]
fn another_policy_on_the_same_id_starts_over_closed() {
    let mut d = Dest::new(policy());
    assert_eq!(d.state.join_epoch(7, 0, &mut NoGuard), None);
    for t in 0..3 {
        d.refused(t);
    }
    assert_eq!(d.state.breaker.state, State::Open as u32);
    assert_eq!(d.state.join_epoch(7, 5, &mut NoGuard), None);
    assert_eq!(d.state.breaker.state, State::Open as u32);
    assert_eq!(
        d.state.join_epoch(8, 6, &mut NoGuard),
        Some(Transition::Closed)
    );
    assert_eq!(d.state.breaker.state, State::Closed as u32);
}

#[test]
fn orphaned_slots_come_back_and_earlier_admissions_never_release_into_the_new_generation() {
    let mut p = policy();
    p.max_connections = 2;
    let mut d = Dest::new(p);
    let (_, old) = d.connect(MS);
    let (_, _lost) = d.connect(2 * MS);
    assert!(matches!(
        d.connect(3 * MS).0,
        Verdict::Reject(Cause::Bulkhead)
    ));

    // Their records are gone (a new install): both slots come back at once.
    assert_eq!(d.state.orphan_slots(10 * MS), Some(()));
    assert_eq!(d.state.breaker.active, 0);
    assert_eq!(d.state.orphan_slots(11 * MS), None, "nothing held any more");
    let (v, new) = d.connect(12 * MS);
    assert!(matches!(v, Verdict::Admit { .. }), "{v:?}");

    // The hooks end a record only if this entry admitted it: a record of the
    // earlier admissions that does end gives nothing back.
    assert!(!d.state.admitted(&old));
    assert!(d.state.admitted(&new));
}

#[test]
fn the_signal_sums_what_the_policy_learns_from_once_per_connection() {
    use crate::policy::Signal;
    for signal in [Signal::Handshake, Signal::Response, Signal::Lifetime] {
        let mut p = policy();
        p.signal = signal as u32;
        let mut d = Dest::new(p);
        let (_, mut sock) = d.connect(10 * MS);
        d.succeed(12 * MS, &mut sock);
        d.state.on_answered(&d.policy, 5 * MS);
        d.state.on_connection_closed(&d.policy, 30 * MS, &mut sock);
        // A second close (sock_release after the state callback) adds nothing.
        d.state.on_connection_closed(&d.policy, 40 * MS, &mut sock);
        // A connect that failed has no lifetime.
        let (_, mut failed) = d.connect(50 * MS);
        d.fail(51 * MS, &mut failed);
        d.state
            .on_connection_closed(&d.policy, 60 * MS, &mut failed);
        let want = match signal {
            Signal::Handshake => 2 * MS,
            Signal::Response => 5 * MS,
            Signal::Lifetime => 20 * MS,
        };
        assert_eq!(
            (d.state.signal.count, d.state.signal.sum_ns),
            (1, want),
            "{signal:?}"
        );
        assert_eq!(d.state.breaker.active, 0);
    }
}

#[test]
fn classes_share_the_cap_exactly_and_the_lowest_is_shed_first() {
    use crate::class::{Caller, ClassTable, Priority};
    let table = ClassTable {
        share_permille: [500, 0, 0, 0],
        enabled: 1,
        _pad: 0,
    };
    let mut p = policy();
    p.max_connections = 10;
    p.failure_threshold = 0;
    p.failure_rate_permille = 500;
    p.min_attempts = 4;
    let mut d = Dest::new(p);
    let connect = |d: &mut Dest, class: Priority, now: u64| {
        let mut sock = SockInfo::default();
        let caller = Caller {
            table: &table,
            class,
        };
        let (v, _) = d
            .state
            .admit(&d.policy, &d.backoff, now, false, Some(caller), &mut sock);
        (v, sock)
    };
    let mut held = std::vec::Vec::new();
    for _ in 0..20 {
        let (v, s) = connect(&mut d, Priority::Sheddable, 1);
        if v == (Verdict::Admit { probe: false }) {
            held.push(s);
        }
    }
    assert_eq!(held.len(), 5, "the unreserved half");
    for _ in 0..5 {
        let (v, s) = connect(&mut d, Priority::Critical, 2);
        assert_eq!(v, Verdict::Admit { probe: false });
        held.push(s);
    }
    assert_eq!(d.state.breaker.active, 10);
    assert_eq!(
        connect(&mut d, Priority::Critical, 3).0,
        Verdict::Reject(Cause::Bulkhead)
    );
    let c = &d.state.classes;
    assert_eq!(
        (c[0].active, c[3].active, c[3].admitted, c[3].shed),
        (5, 5, 5, 15)
    );
    // Closing gives the class its slot back, once.
    let mut s = held.pop().expect("a critical one");
    d.state.on_closed(&mut s);
    d.state.on_closed(&mut s);
    assert_eq!((d.state.classes[0].active, d.state.breaker.active), (4, 9));
    for mut s in held {
        d.state.on_closed(&mut s);
    }
    assert_eq!(d.state.classes.iter().map(|c| c.active).sum::<u32>(), 0);

    // A degrading destination: 2 failures of 8 is half the trip point. The
    // sheddable class is shed (its bit set), default no longer borrows,
    // critical goes on.
    for t in 0..8 {
        let (_, mut s) = connect(&mut d, Priority::Critical, 10 + t);
        if t < 2 {
            d.fail(10 + t, &mut s);
        } else {
            d.succeed(10 + t, &mut s);
            d.state.on_closed(&mut s);
        }
    }
    assert_eq!(d.state.breaker.state, State::Closed as u32);
    assert_eq!(
        connect(&mut d, Priority::Sheddable, 20).0,
        Verdict::Reject(Cause::Circuit)
    );
    assert_eq!(d.state.shedding, 1 << Priority::Sheddable as u32);
    assert_eq!(
        connect(&mut d, Priority::Default, 21).0,
        Verdict::Reject(Cause::Circuit)
    );
    assert_eq!(
        connect(&mut d, Priority::Critical, 22).0,
        Verdict::Admit { probe: false }
    );
    // The failures age out of the window: admitted again, the bit cleared.
    let later = 20 + d.policy.window_ns;
    assert_eq!(
        connect(&mut d, Priority::Sheddable, later).0,
        Verdict::Admit { probe: false }
    );
    assert_eq!(d.state.shedding, 1 << Priority::Default as u32);
}

#[test]
fn an_ejection_opens_a_closed_destination_for_its_time_and_the_probes_bring_it_back() {
    let mut d = Dest::new(policy());
    assert_eq!(
        d.state.eject(10 * MS, 30_000 * MS, &mut NoGuard),
        Some(Transition::Ejected)
    );
    assert_eq!(d.state.breaker.state, State::Open as u32);
    assert_eq!(d.state.breaker.trips, 0, "the trip level stays");
    assert_eq!(d.connect(20 * MS).0, Verdict::Reject(Cause::Circuit));
    // Already open: nothing more.
    assert_eq!(d.state.eject(30 * MS, 30_000 * MS, &mut NoGuard), None);
    // After its time, the half-open probes (close_after 2) bring it back.
    let later = 10 * MS + 30_000 * MS;
    for t in 0..2 {
        let (v, mut s) = d.connect(later + t);
        assert_eq!(v, Verdict::Admit { probe: true });
        d.succeed(later + t, &mut s);
    }
    assert_eq!(d.state.breaker.state, State::Closed as u32);
    // A guard that refuses: not ejected, counted.
    struct Full;
    impl OpenGuard for Full {
        fn try_open(&mut self) -> bool {
            false
        }
        fn closed(&mut self) {}
    }
    assert_eq!(d.state.eject(later + 10, 1, &mut Full), None);
    assert_eq!(d.state.counters.guard_refusals, 1);
}

/// A policy that learns both thresholds, highest rate 50 %, lowest 5 %.
fn learning() -> Policy {
    use crate::baseline::learn;
    let mut p = policy();
    p.failure_threshold = 0;
    p.failure_rate_permille = 500;
    p.min_attempts = 20;
    p.learn = learn::RATE | learn::SLOW;
    p.sensitivity_milli = 3000;
    p.rate_min_permille = 50;
    p.slow_factor_milli = 3000;
    p
}

/// `n` connects at `t`, every `every`-th refused.
fn traffic(d: &mut Dest, t: u64, n: u64, every: u64) -> Option<Transition> {
    let mut last = None;
    for i in 0..n {
        let at = t + i;
        last = if i % every == every - 1 {
            d.refused(at)
        } else {
            let (_, mut s) = d.connect(at);
            d.succeed(at, &mut s)
        };
        if last.is_some() {
            return last;
        }
    }
    last
}

#[test]
fn a_learned_rate_trips_where_the_destination_is_abnormal_not_at_the_policys_highest() {
    use crate::baseline::{Baseline, WARMUP_WINDOWS};
    // 1 in 10 failing: below the cold 50 %.
    let mut cold = Dest::new(learning());
    assert_eq!(traffic(&mut cold, 0, 100, 10), None);
    // Learned: 1 % ± 1 %, so it trips at 5 % (the floor).
    let mut warm = Dest::new(learning());
    warm.state.baseline = Baseline {
        share_ppm: 10_000,
        spread_ppm: 10_000,
        p99_us: 0,
        windows: WARMUP_WINDOWS,
    };
    assert_eq!(traffic(&mut warm, 0, 100, 10), Some(Transition::Tripped));
    // Another policy on the id: what was learned is not its to trip on.
    let mut moved = Dest::new(learning());
    moved.state.baseline = warm.state.baseline;
    moved.state.join_epoch(1, 0, &mut NoGuard);
    moved.connect(0);
    moved.state.join_epoch(2, 1, &mut NoGuard);
    assert_eq!(traffic(&mut moved, 10, 100, 10), None);
}

#[test]
fn a_learned_slow_bound_makes_slow_handshakes_failures() {
    use crate::baseline::{Baseline, WARMUP_WINDOWS};
    let mut p = learning();
    p.failure_threshold = 2;
    let mut d = Dest::new(p);
    // Cold: nothing is slow.
    let (_, mut s) = d.connect(0);
    d.succeed(50 * MS, &mut s);
    assert_eq!(d.state.counters.slow, 0);
    // p99 2 ms × 3: slower than 6 ms is slow.
    d.state.baseline = Baseline {
        p99_us: 2_000,
        windows: WARMUP_WINDOWS,
        ..Baseline::default()
    };
    let (_, mut s) = d.connect(100 * MS);
    d.succeed(105 * MS, &mut s);
    assert_eq!(d.state.counters.slow, 0);
    for t in [200 * MS, 300 * MS] {
        let (_, mut s) = d.connect(t);
        let transition = d.succeed(t + 7 * MS, &mut s);
        assert_eq!(transition.is_some(), t == 300 * MS);
    }
    assert_eq!(d.state.counters.slow, 2);
}

#[test]
fn destinations_tripped_together_come_back_apart() {
    let mut p = policy();
    p.jitter_permille = 200;
    let mut until = [0u64; 64];
    for (i, u) in until.iter_mut().enumerate() {
        let mut d = Dest::new(p);
        // Entries first seen at different times, tripping in the same
        // microsecond.
        d.state.generation = 1_000 + i as u64 * 7_919;
        let at = 5_000 * MS + i as u64 * 10;
        for k in 0..3 {
            d.refused(at + k);
        }
        assert_eq!(d.state.breaker.state, State::Open as u32);
        *u = d.state.breaker.open_until_ns - (at + 2);
    }
    // The first step is 100 ms, spread by ± 20 %.
    assert!(
        until.iter().all(|u| (80 * MS..=120 * MS).contains(u)),
        "{until:?}"
    );
    let (low, high) = (until.iter().min().unwrap(), until.iter().max().unwrap());
    assert!(
        high - low > 30 * MS,
        "spread over {} ms only",
        (high - low) / MS
    );
}

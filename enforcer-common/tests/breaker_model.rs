//! Drives the breaker with random event sequences and compares every verdict,
//! transition, counter and slot count with a small reference model written
//! straight from the specification (a list of outcomes instead of time buckets,
//! explicit per-socket bookkeeping instead of flags).

use std::collections::BTreeMap;

use enforcer_common::{
    breaker::{Cause, OpenGuard, Transition, Verdict, state},
    dest::DestState,
    outcome::Outcome,
    policy::{BackoffRow, Policy, mode},
    sock::SockInfo,
};
use proptest::prelude::*;

const WINDOW: u64 = 8_000;

#[derive(Clone, Debug)]
enum Op {
    Connect,
    Establish(usize, u64),
    Fail(usize, Outcome, bool),
    Close(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Connect),
        3 => (any::<usize>(), 0..3_000u64).prop_map(|(i, lat)| Op::Establish(i, lat)),
        3 => (
            any::<usize>(),
            prop_oneof![
                Just(Outcome::Refused),
                Just(Outcome::Timeout),
                Just(Outcome::Unreachable),
                Just(Outcome::Abandoned)
            ],
            prop::bool::weighted(0.8),
        )
            .prop_map(|(i, o, g)| Op::Fail(i, o, g)),
        3 => any::<usize>().prop_map(Op::Close),
        2 => (1..4_000u64).prop_map(Op::Advance),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::bool::ANY,
        0..5u32,
        prop_oneof![Just(0u32), 200..=1000u32],
        0..6u32,
        1..4u32,
        1..4u32,
        0..5u32,
        0..4u32,
        prop_oneof![Just(0u64), 500..3_000u64],
        prop_oneof![Just(0u64), 1_000..10_000u64],
    )
        .prop_map(
            |(observe, threshold, rate, min, k, m, max_c, max_p, slow, decay)| Policy {
                mode: if observe {
                    mode::OBSERVE
                } else {
                    mode::ENFORCE
                },
                failure_threshold: threshold,
                failure_rate_permille: rate,
                min_attempts: min,
                window_ns: WINDOW,
                slow_connect_ns: slow,
                half_open_probes: k,
                close_after: m,
                max_connections: max_c,
                max_pending: max_p,
                errno: 111,
                max_open_percent: 100,
                backoff_steps: 4,
                trip_decay_ns: decay,
                ..Policy::default()
            },
        )
}

/// A guard whose answer the test chooses per event.
struct Answer(bool, u32);

impl OpenGuard for Answer {
    fn try_open(&mut self) -> bool {
        self.0
    }
    fn closed(&mut self) {
        self.1 += 1;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        epoch: u64,
        in_flight: u32,
        successes: u32,
    },
}

#[derive(Clone, Debug, Default)]
struct MSock {
    start: u64,
    holds_slot: bool,
    pending: bool,
    outcome_taken: bool,
    probe_of: Option<u64>,
}

/// The reference model.
struct Model {
    p: Policy,
    backoff: BackoffRow,
    state: MState,
    trips: u32,
    consecutive: u32,
    healthy_since: u64,
    /// (bucket slot, failed) of completed connects since the window was cleared.
    outcomes: Vec<(u64, bool)>,
    epochs: u64,
    socks: BTreeMap<usize, MSock>,
    c: enforcer_common::dest::DestCounters,
}

fn slot(now: u64) -> u64 {
    now / (WINDOW / 8) + 1
}

impl Model {
    fn new(p: Policy) -> Self {
        Self {
            p,
            backoff: BackoffRow::exponential(1_000, 100_000),
            state: MState::Closed,
            trips: 0,
            consecutive: 0,
            healthy_since: 0,
            outcomes: Vec::new(),
            epochs: 0,
            socks: BTreeMap::new(),
            c: Default::default(),
        }
    }

    fn active(&self) -> u32 {
        self.socks.values().filter(|s| s.holds_slot).count() as u32
    }

    fn pending(&self) -> u32 {
        self.socks.values().filter(|s| s.pending).count() as u32
    }

    fn maybe_decay(&mut self, now: u64) {
        if self.state == MState::Closed
            && self.trips > 0
            && self.p.trip_decay_ns > 0
            && now - self.healthy_since >= self.p.trip_decay_ns
        {
            self.trips -= 1;
            self.healthy_since = now;
        }
    }

    fn connect(&mut self, id: usize, now: u64) -> (Verdict, Option<Transition>) {
        let mut transition = None;
        if let MState::Open { until } = self.state
            && now >= until
        {
            self.epochs += 1;
            self.state = MState::HalfOpen {
                epoch: self.epochs,
                in_flight: 0,
                successes: 0,
            };
            transition = Some(Transition::HalfOpened);
        }
        let mut cause = match self.state {
            MState::Open { .. } => Some(Cause::Circuit),
            MState::HalfOpen { in_flight, .. } if in_flight >= self.p.half_open_probes => {
                Some(Cause::Circuit)
            }
            _ => None,
        };
        if self.state == MState::Closed {
            self.maybe_decay(now);
        }
        if cause.is_none() {
            if self.p.max_connections > 0 && self.active() >= self.p.max_connections {
                cause = Some(Cause::Bulkhead);
            } else if self.p.max_pending > 0 && self.pending() >= self.p.max_pending {
                cause = Some(Cause::Pending);
            }
        }
        let observe = self.p.mode == mode::OBSERVE;
        match (cause, observe) {
            (Some(Cause::Circuit), false) => self.c.rejected_circuit += 1,
            (Some(Cause::Circuit), true) => self.c.would_reject_circuit += 1,
            (Some(_), false) => self.c.rejected_bulkhead += 1,
            (Some(_), true) => self.c.would_reject_bulkhead += 1,
            (None, _) => {}
        }
        if let (Some(cause), false) = (cause, observe) {
            return (Verdict::Reject(cause), transition);
        }
        let mut sock = MSock {
            start: now,
            holds_slot: true,
            pending: true,
            ..MSock::default()
        };
        let mut probe = false;
        if cause.is_none()
            && let MState::HalfOpen {
                epoch, in_flight, ..
            } = &mut self.state
        {
            *in_flight += 1;
            sock.probe_of = Some(*epoch);
            probe = true;
            self.c.probes += 1;
        }
        self.c.attempts += 1;
        self.socks.insert(id, sock);
        (Verdict::Admit { probe }, transition)
    }

    fn current_probe(&self, id: usize) -> bool {
        matches!(
            (self.state, self.socks[&id].probe_of),
            (MState::HalfOpen { epoch, .. }, Some(e)) if e == epoch
        )
    }

    fn open(&mut self, now: u64) {
        self.trips += 1;
        let step = (self.trips.min(self.p.backoff_steps) - 1) as usize;
        self.state = MState::Open {
            until: now + self.backoff.steps_ns[step],
        };
        self.consecutive = 0;
        self.outcomes.clear();
        self.c.trips += 1;
    }

    fn take(&mut self, id: usize) -> bool {
        let s = self.socks.get_mut(&id).unwrap();
        s.pending = false;
        !std::mem::replace(&mut s.outcome_taken, true)
    }

    fn success(&mut self, id: usize, now: u64, latency: u64) -> Option<Transition> {
        if !self.take(id) {
            return None;
        }
        self.c.successes += 1;
        if self.p.slow_connect_ns > 0 && latency > self.p.slow_connect_ns {
            self.c.slow += 1;
            return self.failure(id, now, true);
        }
        if self.current_probe(id) {
            let MState::HalfOpen {
                in_flight,
                successes,
                ..
            } = &mut self.state
            else {
                unreachable!()
            };
            *in_flight -= 1;
            *successes += 1;
            if *successes >= self.p.close_after {
                self.state = MState::Closed;
                self.consecutive = 0;
                self.outcomes.clear();
                self.healthy_since = now;
                return Some(Transition::Closed);
            }
            return None;
        }
        if self.state == MState::Closed && self.socks[&id].probe_of.is_none() {
            self.consecutive = 0;
            self.outcomes.push((slot(now), false));
            self.maybe_decay(now);
        }
        None
    }

    fn failure(&mut self, id: usize, now: u64, guard: bool) -> Option<Transition> {
        if self.current_probe(id) {
            self.open(now);
            return Some(Transition::Reopened);
        }
        if self.state != MState::Closed || self.socks[&id].probe_of.is_some() {
            return None;
        }
        self.consecutive += 1;
        self.healthy_since = now;
        self.outcomes.push((slot(now), true));
        let live: Vec<bool> = self
            .outcomes
            .iter()
            .filter(|(s, _)| *s + 8 > slot(now))
            .map(|(_, f)| *f)
            .collect();
        let failures = live.iter().filter(|f| **f).count() as u64;
        let by_count = self.p.failure_threshold > 0 && self.consecutive >= self.p.failure_threshold;
        let by_rate = self.p.failure_rate_permille > 0
            && !live.is_empty()
            && live.len() as u32 >= self.p.min_attempts
            && failures * 1000 >= self.p.failure_rate_permille as u64 * live.len() as u64;
        if !(by_count || by_rate) {
            return None;
        }
        if !guard {
            self.c.guard_refusals += 1;
            return None;
        }
        self.open(now);
        Some(Transition::Tripped)
    }

    fn fail(&mut self, id: usize, now: u64, outcome: Outcome, guard: bool) -> Option<Transition> {
        if !self.take(id) {
            return None;
        }
        match outcome {
            Outcome::Refused => self.c.failures_refused += 1,
            Outcome::Timeout => self.c.failures_timeout += 1,
            Outcome::Unreachable => self.c.failures_unreachable += 1,
            _ => {
                self.c.abandoned += 1;
                if self.current_probe(id) {
                    let MState::HalfOpen { in_flight, .. } = &mut self.state else {
                        unreachable!()
                    };
                    *in_flight -= 1;
                }
                return None;
            }
        }
        self.failure(id, now, guard)
    }

    fn close(&mut self, id: usize) {
        let s = self.socks.get_mut(&id).unwrap();
        s.holds_slot = false;
        s.pending = false;
    }
}

fn check(model: &Model, real: &DestState) {
    let b = &real.breaker;
    let (st, until, in_flight) = match model.state {
        MState::Closed => (state::CLOSED, None, 0),
        MState::Open { until } => (state::OPEN, Some(until), 0),
        MState::HalfOpen { in_flight, .. } => (state::HALF_OPEN, None, in_flight),
    };
    assert_eq!(b.state, st, "state");
    if let Some(until) = until {
        assert_eq!(b.open_until_ns, until, "open_until");
    }
    assert_eq!(b.probes_in_flight, in_flight, "probes in flight");
    assert!(in_flight <= model.p.half_open_probes, "more than K probes");
    assert_eq!(b.trips, model.trips, "trip level");
    assert_eq!(b.active, model.active(), "active");
    assert_eq!(b.pending, model.pending(), "pending");
    assert_eq!(real.counters, model.c, "counters");
    if model.p.mode == mode::ENFORCE && model.p.max_connections > 0 {
        assert!(b.active <= model.p.max_connections, "bulkhead cap exceeded");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn breaker_matches_the_reference_model(p in policy(), ops in prop::collection::vec(op(), 1..120)) {
        let mut model = Model::new(p);
        let mut real = DestState::new(1, 0);
        let mut socks: BTreeMap<usize, SockInfo> = BTreeMap::new();
        let mut now = 0u64;
        let mut next_id = 0usize;
        for op in ops {
            match op {
                Op::Connect => {
                    let id = next_id;
                    next_id += 1;
                    let mut sock = SockInfo { start_ns: now, ..SockInfo::default() };
                    let got = real.admit(&model.p, &model.backoff, now, false, &mut sock);
                    let want = model.connect(id, now);
                    prop_assert_eq!(got, want, "connect at {}", now);
                    if matches!(got.0, Verdict::Admit { .. }) {
                        socks.insert(id, sock);
                    }
                }
                Op::Establish(pick, latency) => {
                    let live: Vec<usize> = socks.keys().copied().filter(|id| model.socks[id].pending).collect();
                    if live.is_empty() { continue; }
                    let id = live[pick % live.len()];
                    now += latency;
                    let got = real.on_established(&model.p, &model.backoff, now, socks.get_mut(&id).unwrap(), &mut Answer(true, 0));
                    let latency = now - model.socks[&id].start;
                    let want = model.success(id, now, latency);
                    prop_assert_eq!(got, want, "establish {} at {}", id, now);
                }
                Op::Fail(pick, outcome, guard) => {
                    let live: Vec<usize> = socks.keys().copied().filter(|id| model.socks[id].pending).collect();
                    if live.is_empty() { continue; }
                    let id = live[pick % live.len()];
                    let got = real.on_failed(&model.p, &model.backoff, now, socks.get_mut(&id).unwrap(), outcome, &mut Answer(guard, 0));
                    let want = model.fail(id, now, outcome, guard);
                    prop_assert_eq!(got, want, "fail {} at {}", id, now);
                    // A failed connect's socket usually closes right away.
                    real.on_closed(socks.get_mut(&id).unwrap());
                    model.close(id);
                }
                Op::Close(pick) => {
                    if socks.is_empty() { continue; }
                    let id = *socks.keys().nth(pick % socks.len()).unwrap();
                    let sock = socks.get_mut(&id).unwrap();
                    // Closing mid-handshake is an abandon, then a close; twice is harmless.
                    if model.socks[&id].pending {
                        let got = real.on_failed(&model.p, &model.backoff, now, sock, Outcome::Abandoned, &mut Answer(true, 0));
                        let want = model.fail(id, now, Outcome::Abandoned, true);
                        prop_assert_eq!(got, want);
                    }
                    real.on_closed(sock);
                    real.on_closed(sock);
                    model.close(id);
                }
                Op::Advance(dt) => now += dt,
            }
            check(&model, &real);
        }
        // Close everything: no slot may leak.
        for sock in socks.values_mut() {
            real.on_closed(sock);
        }
        prop_assert_eq!((real.breaker.active, real.breaker.pending), (0, 0));
    }
}

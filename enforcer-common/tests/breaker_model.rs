//! Drives the breaker with random event sequences and compares every verdict,
//! transition, counter and slot count with a small reference model written
//! straight from the specification (a list of outcomes instead of time buckets,
//! explicit per-socket bookkeeping instead of flags).
//!
//! The events are those the kernel hooks produce for a socket's life: the gate
//! (policy epoch, admission, a socket connecting again), the state callbacks
//! (established, SYN_SENT → CLOSE, retransmissions, a connection's close),
//! `sock_release`, and the garbage collector forgetting an idle destination
//! while a connect slips in. Every end is applied to the record the way the
//! kernel's `record_end` does. The model classifies what it is told about a
//! socket (its TCP state, its marks, the socket error) from the documented
//! tables, never through the implementation's helpers.

use std::collections::BTreeMap;

use enforcer_common::{
    breaker::{Cause, OpenGuard, State, Transition, Verdict},
    control::may_forget,
    dest::{DestCounters, DestState},
    outcome::{
        ECONNREFUSED, ETIMEDOUT, End, Outcome, SynSentClose, classify_syn_sent_close, on_reconnect,
        on_release, tcp_state,
    },
    policy::{BackoffRow, Mode, Policy},
    sock::{SockInfo, flags, marks},
};
use proptest::{prelude::*, test_runner::TestCaseError};

/// What the kernel's FORGET decides for a CLOSED-only garbage collection of
/// an idle destination (any last connect, no stale-policy condition).
fn forgettable(d: &DestState) -> bool {
    may_forget(d, u64::MAX, 0, d.policy_epoch, 0)
}

const WINDOW: u64 = 8_000;
/// `BPF_TCP_ESTABLISHED`.
const ESTABLISHED: u32 = 1;
const EHOSTUNREACH: i32 = 113;

type Checked = Result<(), TestCaseError>;

/// How an admitted `connect()` goes on right after the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Its SYN left and `TCP_CONNECT_CB` enabled the state callbacks; the
    /// caller may have lowered its hop limit, and the socket may carry an
    /// earlier connect's error.
    Callbacks {
        hop_limited: bool,
        stale: bool,
        silent: bool,
    },
    /// Its SYN left but the callbacks could not be enabled: the connect is
    /// ended at once, abandoned, and goes on untracked.
    NoCallbacks,
    /// A TCP Fast Open deferred connect: SYN_SENT, no SYN yet, no callback.
    FastOpen,
    /// `connect()` failed inside, before any SYN left: the socket is back in
    /// CLOSE, its record as the gate wrote it.
    SyncFail,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new socket connects.
    Connect(Kind),
    /// A socket in CLOSE (a synchronous or asynchronous failure, a
    /// disconnect) connects again.
    Retry(usize, Kind),
    /// A deferred Fast Open connect sends its SYN with the first data:
    /// `TCP_CONNECT_CB` runs now (hop limit lowered or not).
    FastOpenSend(usize, bool),
    /// The handshake completes after the latency.
    Establish(usize, u64),
    /// An outcome path reports a failure directly (guard answer).
    Fail(usize, Outcome, bool),
    /// SYN_SENT → CLOSE with this socket error (`Some(0)`: `shutdown` or
    /// `connect(AF_UNSPEC)`) and these segments received (guard answer).
    SynSentClose(usize, Option<i32>, u32, bool),
    /// The SYN's retransmission timer fired; 1: it gave up and the socket
    /// closed with ETIMEDOUT, 2: the same with no readable socket error.
    Retransmit(usize, u8),
    /// An established connection reaches CLOSE (peer, `shutdown`,
    /// `connect(AF_UNSPEC)`).
    Disconnect(usize),
    /// The application releases the socket.
    Release(usize),
    /// The policy id moves to another policy (a new epoch) or is rewritten
    /// with the same one; the destination joins at once or at its next connect.
    Epoch {
        new: bool,
        join_now: bool,
    },
    /// Garbage collection forgets the destination if it may, with maybe a
    /// connect admitted between its check and the delete.
    Forget(Option<Kind>),
    Advance(u64),
    /// Time moves to one of the model's deadlines (or just short of it),
    /// where maybe a connect arrives.
    Until(Deadline, bool, Option<Kind>),
}

/// Instants where the specification changes its answer.
#[derive(Clone, Copy, Debug)]
enum Deadline {
    /// The end of the open period.
    Reopen,
    /// The latest probe's bound (`probe_timeout`).
    ProbeBound,
    /// A healthy stretch of `trip_decay`.
    Decay,
}

/// Picks a weighted choice with `r`; 0 picks the first.
fn weighted<T: Copy>(r: u32, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    let mut r = r % total;
    for (w, choice) in choices {
        if r < *w {
            return *choice;
        }
        r -= w;
    }
    unreachable!()
}

/// True for `percent` of the values of `r % 100` (the top ones: 0, where
/// shrinking goes, says no and keeps cases plain).
fn chance(r: u32, percent: u32) -> bool {
    (100 - r % 100) <= percent
}

/// A [`Kind`] from a random word.
fn kind_of(r: u32) -> Kind {
    let (k, r) = (r % 10, r / 10);
    match k {
        0..=5 => Kind::Callbacks {
            hop_limited: chance(r, 20),
            stale: chance(r / 100, 15),
            silent: chance(r / 10_000, 30),
        },
        6 => Kind::NoCallbacks,
        7 => Kind::FastOpen,
        _ => Kind::SyncFail,
    }
}

/// An op from a flat random tuple (choice, socket pick, duration, word):
/// unions of strategies cost proptest a runner clone per arm, which made
/// generation dominate the run time.
fn op_of(choice: u32, pick: usize, t: u64, r: u32) -> Op {
    const OPS: &[(u32, u8)] = &[
        (4, 0),  // Connect
        (2, 1),  // Retry
        (1, 2),  // FastOpenSend
        (3, 3),  // Establish
        (2, 4),  // Fail
        (3, 5),  // SynSentClose
        (2, 6),  // Retransmit
        (1, 7),  // Disconnect
        (3, 8),  // Release
        (1, 9),  // Epoch
        (1, 10), // Forget
        (2, 11), // Advance
        (2, 12), // Until
    ];
    match weighted(choice, OPS) {
        0 => Op::Connect(kind_of(r)),
        1 => Op::Retry(pick, kind_of(r)),
        2 => Op::FastOpenSend(pick, chance(r, 20)),
        3 => Op::Establish(pick, t % 3_000),
        4 => Op::Fail(
            pick,
            weighted(
                r,
                &[
                    (1, Outcome::Refused),
                    (1, Outcome::Timeout),
                    (1, Outcome::Unreachable),
                    (1, Outcome::Abandoned),
                    (1, Outcome::LocalError),
                ],
            ),
            !chance(r / 10, 20),
        ),
        5 => Op::SynSentClose(
            pick,
            weighted(
                r,
                &[
                    (4, Some(0)),
                    (1, Some(ECONNREFUSED)),
                    (1, Some(ETIMEDOUT)),
                    (1, Some(EHOSTUNREACH)),
                    (1, None),
                ],
            ),
            if chance(r / 10, 25) {
                1 + r / 1_000 % 2
            } else {
                0
            },
            !chance(r / 10_000, 20),
        ),
        6 => Op::Retransmit(pick, weighted(r, &[(3, 0), (1, 1), (1, 2)])),
        7 => Op::Disconnect(pick),
        8 => Op::Release(pick),
        9 => Op::Epoch {
            new: chance(r, 30),
            join_now: chance(r / 100, 50),
        },
        10 => Op::Forget(chance(r, 50).then(|| kind_of(r / 100))),
        11 => Op::Advance(1 + t % 3_999),
        _ => Op::Until(
            weighted(
                r,
                &[
                    (1, Deadline::Reopen),
                    (1, Deadline::ProbeBound),
                    (1, Deadline::Decay),
                ],
            ),
            !chance(r / 10, 30),
            chance(r / 1_000, 70).then(|| kind_of(r / 100_000)),
        ),
    }
}

fn op() -> impl Strategy<Value = Op> {
    (any::<u32>(), any::<usize>(), any::<u64>(), any::<u32>())
        .prop_map(|(choice, pick, t, r)| op_of(choice, pick, t, r))
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
        prop_oneof![1 => Just(0u64), 3 => 200..3_000u64],
    )
        .prop_map(
            |(observe, threshold, rate, min, k, m, max_c, max_p, slow, decay, probe_timeout)| {
                Policy {
                    mode: if observe {
                        Mode::Observe as u32
                    } else {
                        Mode::Enforce as u32
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
                    probe_timeout_ns: probe_timeout,
                    ..Policy::default()
                }
            },
        )
}

/// A guard whose answer the test chooses per event, counting closes.
struct Answer(bool, u32);

impl OpenGuard for Answer {
    fn try_open(&mut self) -> bool {
        self.0
    }
    fn closed(&mut self) {
        self.1 += 1;
    }
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        episode: u64,
        in_flight: u32,
        successes: u32,
    },
}

/// The model's record of one socket's latest admitted connect.
#[derive(Clone, Debug, Default)]
struct MSock {
    /// The entry of the destination that admitted it.
    entry: u32,
    start: u64,
    holds_slot: bool,
    pending: bool,
    outcome_taken: bool,
    probe_of: Option<u64>,
}

/// A socket's TCP state as the hooks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tcp {
    SynSent,
    Established,
    Close,
}

struct Model {
    p: Policy,
    backoff: BackoffRow,
    /// Bumped each time the destination is forgotten: its next entry is new.
    entry: u32,
    /// The entry has seen a connect.
    admitted_ever: bool,
    /// The policy epoch the entry last joined.
    joined: u32,
    state: MState,
    trips: u32,
    consecutive: u32,
    healthy_since: u64,
    /// (bucket slot, failed) of completed connects since the window was cleared.
    outcomes: Vec<(u64, bool)>,
    /// Half-open episodes so far.
    episodes: u64,
    /// When the latest half-open probe was admitted.
    last_probe_start: u64,
    socks: BTreeMap<usize, MSock>,
    c: DestCounters,
}

fn slot(now: u64) -> u64 {
    now / (WINDOW / 8) + 1
}

/// A caller ending a connect in SYN_SENT: abandoned, or a timeout once its
/// SYN was retransmitted (the caller's own if it lowered its hop limit).
fn spec_caller_ended(m: u64) -> Outcome {
    if m & marks::SYN_RETRANSMITTED != 0 {
        spec_path(Outcome::Timeout, m)
    } else {
        Outcome::Abandoned
    }
}

/// Silence or an ICMP error about the SYN of a hop-limited socket is local.
fn spec_path(o: Outcome, m: u64) -> Outcome {
    if m & marks::HOP_LIMITED != 0 && matches!(o, Outcome::Timeout | Outcome::Unreachable) {
        Outcome::LocalError
    } else {
        o
    }
}

/// The table of `outcome.rs` for SYN_SENT → CLOSE.
fn spec_syn_sent_close(sk_err: Option<i32>, segs_in: u32, m: u64) -> Outcome {
    let err = if m & marks::STALE_ERROR != 0 {
        None
    } else {
        sk_err
    };
    match err {
        Some(0) => spec_caller_ended(m),
        Some(ECONNREFUSED) => Outcome::Refused,
        Some(ETIMEDOUT) => spec_path(Outcome::Timeout, m),
        Some(_) => spec_path(Outcome::Unreachable, m),
        None if segs_in > 0 => Outcome::Refused,
        None if m & marks::SYN_TIMED_OUT != 0 => spec_path(Outcome::Timeout, m),
        None => spec_caller_ended(m),
    }
}

impl Model {
    fn new(p: Policy) -> Self {
        Self {
            p,
            backoff: BackoffRow::exponential(1_000, 100_000),
            entry: 0,
            admitted_ever: false,
            joined: 0,
            state: MState::Closed,
            trips: 0,
            consecutive: 0,
            healthy_since: 0,
            outcomes: Vec::new(),
            episodes: 0,
            last_probe_start: 0,
            socks: BTreeMap::new(),
            c: DestCounters::default(),
        }
    }

    /// The destination was forgotten: the next connect meets a new, zeroed
    /// entry. Sockets keep their records.
    fn forget(&mut self) {
        let socks = std::mem::take(&mut self.socks);
        let entry = self.entry + 1;
        *self = Self {
            entry,
            socks,
            ..Self::new(self.p)
        };
    }

    fn current(&self) -> impl Iterator<Item = &MSock> {
        self.socks.values().filter(|s| s.entry == self.entry)
    }

    fn active(&self) -> u32 {
        self.current().filter(|s| s.holds_slot).count() as u32
    }

    fn pending(&self) -> u32 {
        self.current().filter(|s| s.pending).count() as u32
    }

    /// Admitted connects of this entry whose outcome is still to come.
    fn unended(&self) -> u64 {
        self.current().filter(|s| !s.outcome_taken).count() as u64
    }

    /// Probes of the current half-open episode still waiting for their outcome.
    fn probes_waiting(&self) -> u32 {
        let MState::HalfOpen { episode, .. } = self.state else {
            return 0;
        };
        self.current()
            .filter(|s| s.probe_of == Some(episode) && !s.outcome_taken)
            .count() as u32
    }

    fn forgettable(&self) -> bool {
        self.state == MState::Closed && self.active() == 0 && self.pending() == 0
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

    /// The destination under policy `epoch`: under another one it starts over
    /// CLOSED as new (counters and held slots stay), unless it never saw a
    /// connect.
    fn join(&mut self, epoch: u32, now: u64) -> Option<Transition> {
        if self.joined == epoch {
            return None;
        }
        self.joined = epoch;
        if !self.admitted_ever {
            return None;
        }
        let was_open = self.state != MState::Closed;
        self.state = MState::Closed;
        self.trips = 0;
        self.consecutive = 0;
        self.outcomes.clear();
        self.healthy_since = now;
        was_open.then_some(Transition::Closed)
    }

    fn admit(&mut self, id: usize, now: u64) -> (Verdict, Option<Transition>) {
        self.admitted_ever = true;
        let mut transition = None;
        // K probes in flight, the youngest older than the bound: reclaimed,
        // the destination reopens for the next step.
        if let MState::HalfOpen { in_flight, .. } = self.state
            && self.p.probe_timeout_ns > 0
            && in_flight >= self.p.half_open_probes
            && now - self.last_probe_start >= self.p.probe_timeout_ns
        {
            self.c.probes_reclaimed += in_flight as u64;
            self.open(now);
            transition = Some(Transition::Reopened);
        }
        if let MState::Open { until } = self.state
            && now >= until
        {
            self.episodes += 1;
            self.state = MState::HalfOpen {
                episode: self.episodes,
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
        let observe = self.p.mode == Mode::Observe as u32;
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
            entry: self.entry,
            start: now,
            holds_slot: true,
            pending: true,
            ..MSock::default()
        };
        let mut probe = false;
        if cause.is_none()
            && let MState::HalfOpen {
                episode, in_flight, ..
            } = &mut self.state
        {
            *in_flight += 1;
            sock.probe_of = Some(*episode);
            probe = true;
            self.c.probes += 1;
            self.last_probe_start = now;
        }
        self.c.attempts += 1;
        self.socks.insert(id, sock);
        (Verdict::Admit { probe }, transition)
    }

    fn current_probe(&self, id: usize) -> bool {
        matches!(
            (self.state, self.socks[&id].probe_of),
            (MState::HalfOpen { episode, .. }, Some(e)) if e == episode
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
            Outcome::Abandoned | Outcome::LocalError => {
                if outcome == Outcome::Abandoned {
                    self.c.abandoned += 1;
                } else {
                    self.c.local_errors += 1;
                }
                // Not the destination's doing: a probe's slot is free again.
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

    /// How a connect moved on, applied to its record.
    fn apply(&mut self, id: usize, end: End, now: u64, guard: bool) -> Option<Transition> {
        let entry = self.entry;
        let s = self.socks.get_mut(&id).unwrap();
        if s.entry != entry {
            // Admitted by a forgotten entry: what it held went with it.
            *s = MSock {
                entry: s.entry,
                outcome_taken: true,
                ..MSock::default()
            };
            return None;
        }
        match end {
            End::Established => {
                let latency = now - s.start;
                self.success(id, now, latency)
            }
            End::Failed(outcome) => {
                let transition = self.fail(id, now, outcome, guard);
                self.close(id);
                transition
            }
            End::Closed => {
                self.close(id);
                None
            }
        }
    }

    /// The gate meets a socket in CLOSE connecting again: a previous connect
    /// still holding something, or without its outcome, failed inside
    /// `connect()`.
    fn reconnect_end(&self, id: usize) -> Option<End> {
        let s = &self.socks[&id];
        (!s.outcome_taken || s.holds_slot || s.pending).then_some(End::Failed(Outcome::LocalError))
    }

    /// `sock_release` of a socket in `tcp` with marks `m`.
    fn release_end(&self, id: usize, tcp: Tcp, m: u64) -> Option<End> {
        match tcp {
            Tcp::SynSent => Some(End::Failed(spec_caller_ended(m))),
            Tcp::Close => self.reconnect_end(id),
            Tcp::Established => None,
        }
    }
}

// ---------------------------------------------------------------------------
// The world: the implementation, the model, and the sockets' kernel side.
// ---------------------------------------------------------------------------

/// A socket as the kernel holds it: its record and TCP state.
struct Sk {
    info: SockInfo,
    tcp: Tcp,
    /// A TCP Fast Open connect whose SYN has not left.
    deferred: bool,
    /// No answer will come (only the caller or the timer ends it).
    silent: bool,
}

impl Sk {
    fn callbacks(&self) -> bool {
        self.info.marks & marks::CALLBACKS_ON != 0
    }

    /// In SYN_SENT with its SYN out, and the peer or the path will answer.
    fn answerable(&self) -> bool {
        self.tcp == Tcp::SynSent && !self.deferred && !self.silent
    }
}

struct World {
    policies: [Policy; 2],
    /// The policy id's current epoch (never 0).
    epoch: u32,
    real: DestState,
    model: Model,
    socks: BTreeMap<usize, Sk>,
    now: u64,
    next_id: usize,
}

impl World {
    fn new(policies: [Policy; 2]) -> Self {
        let epoch = 1;
        let p = Policy {
            epoch,
            ..policies[(epoch % 2) as usize]
        };
        Self {
            policies,
            epoch,
            real: DestState::new(1, 0),
            model: Model::new(p),
            socks: BTreeMap::new(),
            // The kernel's clock is never 0 (a generation of 0 means none).
            now: 1,
            next_id: 0,
        }
    }

    fn pick(&self, pick: usize, fits: impl Fn(&Sk) -> bool) -> Option<usize> {
        let ids: Vec<usize> = self
            .socks
            .iter()
            .filter(|(_, s)| fits(s))
            .map(|(id, _)| *id)
            .collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    fn join(&mut self, what: &str) -> Checked {
        let mut guard = Answer(true, 0);
        let got = self.real.join_epoch(self.epoch, self.now, &mut guard);
        let want = self.model.join(self.epoch, self.now);
        prop_assert_eq!(
            got,
            want,
            "{} joins epoch {} at {}",
            what,
            self.epoch,
            self.now
        );
        prop_assert_eq!(
            guard.1,
            u32::from(got == Some(Transition::Closed)),
            "group guard closes"
        );
        Ok(())
    }

    /// The gate: the destination joins the policy's epoch, then the connect
    /// is decided; an admitted one's record is written on socket `id`.
    fn connect(&mut self, id: usize, kind: Kind) -> Checked {
        // The gate's lock-free check of an OPEN circuit, on the state as the
        // connect finds it.
        let before = self.real;
        let rejects_unlocked =
            before
                .open_view()
                .rejects(before.policy_id, &self.model.p, self.now);
        self.join("connect")?;
        let mut info = SockInfo {
            start_ns: self.now,
            ..SockInfo::default()
        };
        let got = self.real.admit(
            &self.model.p,
            &self.model.backoff,
            self.now,
            false,
            None,
            &mut info,
        );
        let want = self.model.admit(id, self.now);
        prop_assert_eq!(got, want, "connect {} at {}", id, self.now);
        if rejects_unlocked {
            // What the gate then does instead of the locked decision must be
            // all that decision does.
            let mut counted = before;
            counted.counters.rejected_circuit += 1;
            prop_assert_eq!(
                got,
                (Verdict::Reject(Cause::Circuit), None),
                "unlocked rejection"
            );
            prop_assert_eq!(
                self.real,
                counted,
                "an unlocked rejection changes only its count"
            );
        }
        if !matches!(got.0, Verdict::Admit { .. }) {
            return Ok(());
        }
        // (A lowered cap binds new connects, not those admitted before.)
        let p = &self.model.p;
        if p.mode == Mode::Enforce as u32 && p.max_connections > 0 {
            prop_assert!(
                self.real.breaker.active <= p.max_connections,
                "bulkhead cap exceeded"
            );
        }
        let silent = matches!(kind, Kind::Callbacks { silent: true, .. });
        let (tcp, deferred, noted) = match kind {
            Kind::Callbacks {
                hop_limited, stale, ..
            } => (
                Tcp::SynSent,
                false,
                marks::CALLBACKS_ON
                    | if hop_limited { marks::HOP_LIMITED } else { 0 }
                    | if stale { marks::STALE_ERROR } else { 0 },
            ),
            Kind::NoCallbacks => (Tcp::SynSent, false, 0),
            Kind::FastOpen => (Tcp::SynSent, true, 0),
            Kind::SyncFail => (Tcp::Close, false, 0),
        };
        info.marks |= noted;
        self.socks.insert(
            id,
            Sk {
                info,
                tcp,
                deferred,
                silent,
            },
        );
        if kind == Kind::NoCallbacks {
            // Nothing would report its end: given back at once, and the
            // connection is none of the breaker's business any more.
            self.record(
                id,
                End::Failed(Outcome::Abandoned),
                true,
                "callbacks refused",
            )?;
            self.socks.remove(&id);
            let m = self.model.socks.remove(&id).unwrap();
            prop_assert!(!m.holds_slot && !m.pending, "model: {:?}", m);
        }
        Ok(())
    }

    /// What the kernel's `record_end` does with an end of socket `id`.
    fn record(&mut self, id: usize, end: End, allow: bool, what: &str) -> Checked {
        let (p, backoff, now) = (self.model.p, self.model.backoff, self.now);
        let sock = &mut self.socks.get_mut(&id).unwrap().info;
        let real = &mut self.real;
        let mut guard = Answer(allow, 0);
        let got = if !real.admitted(sock) {
            sock.flags = flags::OUTCOME_RECORDED;
            None
        } else {
            match end {
                End::Established => real.on_established(&p, &backoff, now, sock, &mut guard),
                End::Failed(outcome) => {
                    let t = real.on_failed(&p, &backoff, now, sock, outcome, &mut guard);
                    real.on_closed(sock);
                    t
                }
                End::Closed => {
                    real.on_connection_closed(&p, now, sock);
                    None
                }
            }
        };
        let want = self.model.apply(id, end, now, allow);
        prop_assert_eq!(got, want, "{}: {:?} of {} at {}", what, end, id, now);
        prop_assert_eq!(
            guard.1,
            u32::from(got == Some(Transition::Closed)),
            "group guard closes"
        );
        Ok(())
    }

    /// The state callback's SYN_SENT → CLOSE, classified by both sides.
    fn syn_sent_closed(
        &mut self,
        id: usize,
        sk_err: Option<i32>,
        segs_in: u32,
        allow: bool,
    ) -> Checked {
        let sk = &self.socks[&id];
        let seen = SynSentClose {
            sk_err,
            segs_in,
            marks: sk.info.marks,
        };
        let got = classify_syn_sent_close(seen);
        let want = spec_syn_sent_close(sk_err, segs_in, sk.info.marks);
        prop_assert_eq!(got, want, "classify {:?}", seen);
        self.record(id, End::Failed(got), allow, "SYN_SENT → CLOSE")
    }

    fn release(&mut self, id: usize) -> Checked {
        let sk = &self.socks[&id];
        let (tcp, m, callbacks) = (sk.tcp, sk.info.marks, sk.callbacks());
        let state = match tcp {
            Tcp::SynSent => tcp_state::SYN_SENT,
            Tcp::Established => ESTABLISHED,
            Tcp::Close => tcp_state::CLOSE,
        };
        let got = on_release(state, sk.info.flags, m);
        let want = self.model.release_end(id, tcp, m);
        prop_assert_eq!(got, want, "release of {} in {:?}", id, tcp);
        if let Some(end) = got {
            self.record(id, end, true, "release")?;
        }
        // The protocol's close follows; the state callback reports it, if on.
        if callbacks {
            match tcp {
                Tcp::SynSent => self.syn_sent_closed(id, Some(0), 0, true)?,
                Tcp::Established => self.record(id, End::Closed, true, "close")?,
                Tcp::Close => {}
            }
        }
        let sk = self.socks.remove(&id).unwrap();
        let m = self.model.socks.remove(&id).unwrap();
        prop_assert!(
            m.outcome_taken && !m.holds_slot && !m.pending,
            "model: {:?}",
            m
        );
        let f = sk.info.flags;
        prop_assert!(
            f & (flags::HOLDS_SLOT | flags::PENDING) == 0 && f & flags::OUTCOME_RECORDED != 0,
            "socket {} released in {:?} holding {:#x}",
            id,
            tcp,
            f
        );
        Ok(())
    }

    fn step(&mut self, op: Op) -> Checked {
        match op {
            Op::Connect(kind) => {
                let id = self.next_id;
                self.next_id += 1;
                self.connect(id, kind)?;
            }
            Op::Retry(pick, kind) => {
                let Some(id) = self.pick(pick, |s| s.tcp == Tcp::Close) else {
                    return Ok(());
                };
                // The previous connect gives back what it still holds before
                // the new one is decided (so that a dead connect's slot or
                // probe never counts against its own retry); an admitted
                // connect then writes the record anew, a rejected one leaves
                // it as it is.
                let got = on_reconnect(self.socks[&id].info.flags);
                let want = self.model.reconnect_end(id);
                prop_assert_eq!(got, want, "reconnect of {}", id);
                if let Some(end) = got {
                    self.record(id, end, true, "reconnect")?;
                }
                self.connect(id, kind)?;
            }
            Op::FastOpenSend(pick, hop_limited) => {
                let Some(id) = self.pick(pick, |s| s.deferred && s.tcp == Tcp::SynSent) else {
                    return Ok(());
                };
                let sk = self.socks.get_mut(&id).unwrap();
                sk.deferred = false;
                sk.info.marks |= marks::CALLBACKS_ON;
                if hop_limited {
                    sk.info.marks |= marks::HOP_LIMITED;
                }
            }
            Op::Establish(pick, latency) => {
                let Some(id) = self.pick(pick, Sk::answerable) else {
                    return Ok(());
                };
                self.now += latency;
                self.record(id, End::Established, true, "established")?;
                self.socks.get_mut(&id).unwrap().tcp = Tcp::Established;
            }
            Op::Fail(pick, outcome, allow) => {
                let Some(id) = self.pick(pick, Sk::answerable) else {
                    return Ok(());
                };
                self.record(id, End::Failed(outcome), allow, "failed")?;
                self.socks.get_mut(&id).unwrap().tcp = Tcp::Close;
            }
            Op::SynSentClose(pick, sk_err, segs_in, allow) => {
                let Some(id) = self.pick(pick, |s| s.tcp == Tcp::SynSent) else {
                    return Ok(());
                };
                // A deferred Fast Open connect or a silent destination's can
                // only be given up on.
                let sk_err = if !self.socks[&id].answerable() {
                    Some(0)
                } else {
                    sk_err
                };
                // Without callbacks nothing reports it: the record waits for
                // the next connect or the release.
                if self.socks[&id].callbacks() {
                    self.syn_sent_closed(id, sk_err, segs_in, allow)?;
                }
                self.socks.get_mut(&id).unwrap().tcp = Tcp::Close;
            }
            Op::Retransmit(pick, gave_up) => {
                let Some(id) = self.pick(pick, |s| s.tcp == Tcp::SynSent && s.callbacks()) else {
                    return Ok(());
                };
                let sk = self.socks.get_mut(&id).unwrap();
                sk.info.marks |= marks::SYN_RETRANSMITTED;
                if gave_up != 0 {
                    sk.info.marks |= marks::SYN_TIMED_OUT;
                    let sk_err = (gave_up == 1).then_some(ETIMEDOUT);
                    self.syn_sent_closed(id, sk_err, 0, true)?;
                    self.socks.get_mut(&id).unwrap().tcp = Tcp::Close;
                }
            }
            Op::Disconnect(pick) => {
                let Some(id) = self.pick(pick, |s| s.tcp == Tcp::Established) else {
                    return Ok(());
                };
                if self.socks[&id].callbacks() {
                    self.record(id, End::Closed, true, "disconnect")?;
                }
                self.socks.get_mut(&id).unwrap().tcp = Tcp::Close;
            }
            Op::Release(pick) => {
                let Some(id) = self.pick(pick, |_| true) else {
                    return Ok(());
                };
                self.release(id)?;
            }
            Op::Epoch { new, join_now } => {
                if new {
                    self.epoch += 1;
                    self.model.p = Policy {
                        epoch: self.epoch,
                        ..self.policies[(self.epoch % 2) as usize]
                    };
                }
                if join_now {
                    self.join("policy move")?;
                }
            }
            Op::Forget(race) => {
                let may = forgettable(&self.real);
                prop_assert_eq!(may, self.model.forgettable(), "forgettable");
                if may {
                    // Every connect of the entry ended exactly one way.
                    self.ended_one_way()?;
                    if let Some(kind) = race {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.connect(id, kind)?;
                    }
                    self.real = DestState {
                        policy_id: 1,
                        ..DestState::default()
                    };
                    self.model.forget();
                    // A later entry has a later clock.
                    self.now += 1;
                }
            }
            Op::Advance(dt) => self.now += dt,
            Op::Until(deadline, exact, then) => {
                let m = &self.model;
                let at = match (deadline, m.state) {
                    (Deadline::Reopen, MState::Open { until }) => until,
                    (Deadline::ProbeBound, MState::HalfOpen { .. }) => {
                        m.last_probe_start + m.p.probe_timeout_ns
                    }
                    (Deadline::Decay, MState::Closed) => m.healthy_since + m.p.trip_decay_ns,
                    _ => 0,
                };
                let at = if exact { at } else { at.saturating_sub(1) };
                self.now = self.now.max(at);
                if let Some(kind) = then {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.connect(id, kind)?;
                }
            }
        }
        self.check()
    }

    fn ended_one_way(&self) -> Checked {
        let c = &self.real.counters;
        prop_assert_eq!(
            c.attempts,
            c.successes + c.failures() + c.abandoned + c.local_errors + self.model.unended(),
            "attempts vs ends ({} still to end)",
            self.model.unended()
        );
        Ok(())
    }

    fn check(&self) -> Checked {
        let (model, real) = (&self.model, &self.real);
        let b = &real.breaker;
        let (st, until, in_flight) = match model.state {
            MState::Closed => (State::Closed, None, 0),
            MState::Open { until } => (State::Open, Some(until), 0),
            MState::HalfOpen { in_flight, .. } => (State::HalfOpen, None, in_flight),
        };
        prop_assert_eq!(State::from_raw(b.state), Some(st), "state");
        if let Some(until) = until {
            prop_assert_eq!(b.open_until_ns, until, "open_until");
        }
        prop_assert_eq!(in_flight, model.probes_waiting(), "model: probes in flight");
        prop_assert_eq!(b.probes_in_flight, in_flight, "probes in flight");
        if model.joined == self.epoch {
            prop_assert!(in_flight <= model.p.half_open_probes, "more than K probes");
        }
        prop_assert_eq!(b.trips, model.trips, "trip level");
        prop_assert_eq!(b.active, model.active(), "active");
        prop_assert_eq!(b.pending, model.pending(), "pending");
        prop_assert_eq!(real.counters, model.c, "counters");
        prop_assert_eq!(real.policy_epoch, model.joined, "policy epoch");
        prop_assert_eq!(real.generation != 0, model.admitted_ever, "generation");
        prop_assert_eq!(forgettable(real), model.forgettable(), "forgettable");
        self.ended_one_way()?;
        for (id, sk) in &self.socks {
            let m = &model.socks[id];
            let f = sk.info.flags;
            prop_assert_eq!(
                real.admitted(&sk.info),
                m.entry == model.entry,
                "admitted {}",
                id
            );
            prop_assert_eq!(f & flags::HOLDS_SLOT != 0, m.holds_slot, "slot of {}", id);
            prop_assert_eq!(f & flags::PENDING != 0, m.pending, "pending of {}", id);
            prop_assert_eq!(
                f & flags::OUTCOME_RECORDED != 0,
                m.outcome_taken,
                "outcome of {}",
                id
            );
            prop_assert_eq!(f & flags::PROBE != 0, m.probe_of.is_some(), "probe {}", id);
        }
        Ok(())
    }

    /// Every socket is released: no slot may leak, every connect ended once.
    fn finish(&mut self) -> Checked {
        let ids: Vec<usize> = self.socks.keys().copied().collect();
        for id in ids {
            self.release(id)?;
            self.check()?;
        }
        prop_assert_eq!(
            (self.real.breaker.active, self.real.breaker.pending),
            (0, 0)
        );
        prop_assert_eq!(self.model.unended(), 0);
        self.ended_one_way()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn breaker_matches_the_reference_model(
        p0 in policy(),
        p1 in policy(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let mut world = World::new([p0, p1]);
        for op in ops {
            world.step(op)?;
        }
        world.finish()?;
    }
}

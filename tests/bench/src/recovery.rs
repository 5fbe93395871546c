//! Scenario 4, recovery: from the moment a down backend comes back to the
//! client's first successful connect through the breaker.
//!
//! Per trial a fresh destination (its own 127.0.0.0/8 address and port, bound
//! but not listening: refused). A client in the protected cgroup connects every
//! R (as an application retrying would); its first refusal trips the breaker
//! (failure_threshold 1). Once the kernel's map shows the destination OPEN, the
//! parent waits a pseudo-random part of the open duration, then starts
//! listening on the port: the backend is back. The figure is that moment to the
//! return of the client's first successful `connect()`.
//!
//! - (breaker) the kernel alone: open C, then one half-open probe (the client's
//!   next connect) closes the circuit (close_after 1). Bound: C + R.
//! - (healing) the daemon with healing probes every `heal_interval`, and an
//!   open duration of an hour, so that only a probe can bring it back: a
//!   successful probe moves the destination to HALF_OPEN and the client's next
//!   connect closes it. Bound: the probe interval (+ R).
//!
//! The two variants alternate trial by trial.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use enforcer::bpf::{Enforcer, pins};
use enforcer_common::{
    breaker::State,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    bpffs::PinDir, cgroup::ScratchCgroup, daemon::Daemon, exec::Place, fixtures, net::RefusingPort,
};
use serde::Serialize;

use crate::{
    client::{self, Dest},
    clock,
    compare::Check,
    fail_fast::EHOSTUNREACH,
    report::{self, Goal, Table},
    stats::Summary,
};

const ECONNREFUSED: i32 = 111;
/// C: the breaker's open duration (every trip, no backoff growth).
const OPEN_MS: u64 = 200;
/// R: the client's retry interval.
const RETRY_MS: u64 = 10;
/// The daemon's healing probe interval (its minimum is 100 ms).
const HEAL_INTERVAL_MS: u64 = 100;
/// How long a trial may take before it fails (a broken recovery is reported,
/// not waited for).
const TRIAL_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub trials: usize,
}

pub const FULL: Size = Size { trials: 100 };
pub const QUICK: Size = Size { trials: 5 };

#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    pub name: &'static str,
    /// Backend up → first successful connect returned.
    pub recovery: Summary,
    /// What the figure should stay under.
    pub bound_ns: u64,
    pub check: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub open_ms: u64,
    pub retry_ms: u64,
    pub heal_interval_ms: u64,
    pub breaker: VariantResult,
    pub healing: VariantResult,
}

/// One variant: where its client runs and how to read its destinations.
struct Variant {
    cgroup: ScratchCgroup,
    /// The second octet of its destinations' addresses.
    net: u8,
    reader: Enforcer,
    /// Keeps the daemon (healing) running, and its pins.
    _daemon: Option<(Daemon, PinDir)>,
}

impl Variant {
    fn breaker() -> Self {
        let cgroup = ScratchCgroup::new();
        let mut reader = fixtures::attached(&cgroup);
        let policy = Policy {
            failure_threshold: 1,
            errno: EHOSTUNREACH as u32,
            ..fixtures::base_policy()
        };
        let open_ns = OPEN_MS * 1_000_000;
        fixtures::apply(
            &mut reader,
            &["127.192.0.0/16:*"],
            policy,
            BackoffRow::exponential(open_ns, open_ns),
        );
        Self {
            cgroup,
            net: 192,
            reader,
            _daemon: None,
        }
    }

    fn healing() -> Self {
        let cgroup = ScratchCgroup::new();
        let pin_dir = PinDir::new();
        let daemon = Daemon::start(
            &cgroup,
            &pin_dir,
            &format!(
                "[[policy]]\nname = \"healed\"\nmatch = [\"127.193.0.0/16:*\"]\n\
                 failure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\nclose_after = 1\n\
                 half_open_probes = 1\nerrno = \"EHOSTUNREACH\"\nheal = true\n\
                 heal_interval = \"{HEAL_INTERVAL_MS}ms\"\n"
            ),
        );
        // The daemon's maps, opened from its pins, to watch the breaker.
        let reader =
            Enforcer::adopt(&pins::PinDir::new(&daemon.pin_dir)).expect("opening the pins");
        Self {
            cgroup,
            net: 193,
            reader,
            _daemon: Some((daemon, pin_dir)),
        }
    }

    fn state(&self, dest: SocketAddrV4) -> Option<u32> {
        self.reader
            .maps()
            .dests
            .get(&enforcer_tests::key(SocketAddr::V4(dest)))
            .expect("reading DESTS")
            .map(|s| s.breaker.state)
    }

    /// Waits (bounded) until `dest` is in `want`.
    fn wait_for(&self, dest: SocketAddrV4, want: u32) -> bool {
        let end = Instant::now() + TRIAL_LIMIT;
        while Instant::now() < end {
            if self.state(dest) == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        false
    }

    /// Trial `i`: the recovery time, the client's rejections before it, and
    /// whether the breaker ended CLOSED.
    fn trial(&self, i: usize, up_within_ms: u64) -> (u64, u64, bool) {
        let ip = Ipv4Addr::new(127, self.net, (i / 254) as u8, (1 + i % 254) as u8);
        let port = RefusingPort::bind(SocketAddr::new(IpAddr::V4(ip), 0));
        let SocketAddr::V4(dest) = port.addr else {
            unreachable!("an IPv4 address")
        };
        let (up, out) = std::thread::scope(|s| {
            let client = s.spawn(|| Place::cgroup(&self.cgroup).run(|| retry_until_up(dest)));
            assert!(
                self.wait_for(dest, State::Open as u32),
                "{dest} never tripped (trial {i})"
            );
            let wait = (clock::unit(i as u64) * (up_within_ms * 1_000_000) as f64) as u64;
            std::thread::sleep(Duration::from_nanos(wait));
            let listener = port.listen();
            let up = clock::monotonic_ns();
            let out = client.join().expect("the client thread");
            drop(listener);
            (up, out)
        });
        let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        let (ok_at, rejected) = (it.next().unwrap(), it.next().unwrap());
        let closed = self.state(dest) == Some(State::Closed as u32);
        (ok_at.saturating_sub(up), rejected, closed)
    }
}

/// The client: connects every R until one succeeds; when it returned
/// (CLOCK_MONOTONIC) and how many connects the breaker rejected before.
fn retry_until_up(dest: SocketAddrV4) -> String {
    let target = Dest::new(dest);
    let end = Instant::now() + TRIAL_LIMIT;
    let mut rejected = 0u64;
    loop {
        let a = client::attempt(&target);
        match a.result {
            Ok(()) => {
                let ok_at = clock::monotonic_ns() - client::nanos(a.returned.elapsed());
                return format!("{ok_at} {rejected}");
            }
            Err(EHOSTUNREACH) => rejected += 1,
            Err(ECONNREFUSED) => {}
            Err(errno) => panic!("connect to {dest}: errno {errno}"),
        }
        assert!(
            Instant::now() < end,
            "{dest}: no success within {TRIAL_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(RETRY_MS));
    }
}

/// The figures of one variant's trials.
fn result(name: &'static str, trials: &[(u64, u64, bool)], bound_ns: u64) -> VariantResult {
    let recovery: Vec<u64> = trials.iter().map(|t| t.0).collect();
    let closed = trials.iter().filter(|t| t.2).count();
    let rejected_before = trials.iter().filter(|t| t.1 > 0).count();
    VariantResult {
        name,
        recovery: Summary::of(&recovery),
        bound_ns,
        check: Check::expect(
            closed == trials.len() && rejected_before == trials.len(),
            format!(
                "{name}: {closed} of {} destinations CLOSED after the first success, {} of \
                 them with rejections while the backend was down",
                trials.len(),
                rejected_before
            ),
        ),
    }
}

pub fn run(size: Size) -> Results {
    let breaker = Variant::breaker();
    let healing = Variant::healing();
    let (mut b, mut h) = (Vec::new(), Vec::new());
    for i in 0..size.trials {
        if i % 10 == 0 {
            eprintln!(
                "bench: recovery: trials {}-{} of {}",
                i + 1,
                (i + 10).min(size.trials),
                size.trials
            );
        }
        b.push(breaker.trial(i, OPEN_MS));
        // The backend comes back at any point of two probe intervals.
        h.push(healing.trial(i, 2 * HEAL_INTERVAL_MS));
    }
    let ms = 1_000_000;
    Results {
        size,
        open_ms: OPEN_MS,
        retry_ms: RETRY_MS,
        heal_interval_ms: HEAL_INTERVAL_MS,
        breaker: result(
            "(breaker) open C, then a half-open probe",
            &b,
            (OPEN_MS + RETRY_MS + 1) * ms,
        ),
        healing: result(
            "(healing) daemon probes, open 1 h",
            &h,
            (HEAL_INTERVAL_MS + 1) * ms,
        ),
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 4: recovery, backend back up → first successful connect()",
            &["variant", "p50", "p99", "max", "goal (p99 at most)"],
        );
        for v in [&self.breaker, &self.healing] {
            t.row(vec![
                v.name.to_owned(),
                report::duration(v.recovery.p50_ns),
                report::duration(v.recovery.p99_ns),
                report::duration(v.recovery.max_ns),
                report::duration(v.bound_ns),
            ]);
        }
        t.note(format!(
            "{} trials per variant, alternating; C (open) {} ms, R (client retry interval) {} ms, \
             heal_interval {} ms (the daemon jitters it ±20 % and checks every 100 ms); \
             failure_threshold 1, close_after 1",
            self.breaker.recovery.n, self.open_ms, self.retry_ms, self.heal_interval_ms
        ));
        t.note(format!(
            "the backend comes back at a pseudo-random point of the open period (breaker: within \
             C; healing: within 2 × {} ms)",
            self.heal_interval_ms
        ));
        t.note(self.breaker.check.note());
        t.note(self.healing.check.note());
        vec![t]
    }

    pub fn goals(&self) -> Vec<Goal> {
        let (b, h) = (&self.breaker, &self.healing);
        vec![
            Goal {
                scenario: 4,
                goal: format!(
                    "recovery p99 at most C + R + 1 ms = {} (C {} ms, R {} ms)",
                    report::duration(b.bound_ns),
                    self.open_ms,
                    self.retry_ms
                ),
                measured: format!(
                    "p50 {}, p99 {}, max {} over {} trials",
                    report::duration(b.recovery.p50_ns),
                    report::duration(b.recovery.p99_ns),
                    report::duration(b.recovery.max_ns),
                    b.recovery.n
                ),
                met: b.recovery.p99_ns <= b.bound_ns,
            },
            Goal {
                scenario: 4,
                goal: format!(
                    "with healing probes: recovery p99 at most the probe interval + 1 ms = {}",
                    report::duration(h.bound_ns)
                ),
                measured: format!(
                    "p50 {}, p99 {}, max {} over {} trials (the client retries every {} ms: it \
                     sees a healed destination at its next retry)",
                    report::duration(h.recovery.p50_ns),
                    report::duration(h.recovery.p99_ns),
                    report::duration(h.recovery.max_ns),
                    h.recovery.n,
                    self.retry_ms
                ),
                met: h.recovery.p99_ns <= h.bound_ns,
            },
        ]
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        [&self.breaker.check, &self.healing.check].into_iter()
    }
}

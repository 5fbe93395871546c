//! Scenario 3, trip latency: from the failure that crosses the threshold to the
//! first `connect()` the gate rejects.
//!
//! - Refused: failure_threshold N; per trial a fresh destination (another
//!   127.0.0.0/8 address on one reserved port), N-1 refused connects, then the
//!   N-th (the crossing failure), then connects until one is rejected with the
//!   policy's errno. On loopback the RST is handled before the N-th `connect()`
//!   returns, so the kernel has recorded the failure by then: the time from its
//!   return to the first rejection's return bounds the trip latency from above,
//!   and the connects in between that were not rejected ("slipped") show whether
//!   the trip lagged the failure at all.
//! - Blackholed: failure_threshold 1 and connect_timeout 1 s against a port whose
//!   SYNs a namespace drops; from the start of the connect that times out to the
//!   first rejection.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    breaker::State,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    cgroup::ScratchCgroup, exec::Place, fixtures, net::RefusingPort, netns::NetNs,
};
use serde::Serialize;

use crate::{
    client::{self, Attempt, Dest, nanos, wire},
    compare::Check,
    fail_fast::EHOSTUNREACH,
    report::{self, Goal, Table},
    stats::{self, Summary},
    syn_timeout::SynTimeout,
};

const ECONNREFUSED: i32 = 111;
const ETIMEDOUT: i32 = 110;
const HOUR_NS: u64 = 3_600_000_000_000;
/// The consecutive failures that trip, in the refused case.
const THRESHOLD: u32 = 3;
/// The policy's connect timeout, in the blackholed case.
const CONNECT_TIMEOUT_MS: u32 = 1_000;
/// Connects a child tries after the crossing failure before it gives up on ever
/// seeing a rejection (a broken trip, reported, not waited for forever).
const MAX_SLIPPED: u64 = 1_000;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub refused_trials: usize,
    pub blackhole_trials: usize,
}

pub const FULL: Size = Size {
    refused_trials: 1_000,
    blackhole_trials: 5,
};
pub const QUICK: Size = Size {
    refused_trials: 200,
    blackhole_trials: 1,
};

#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub threshold: u32,
    /// The crossing failure's own `connect()` (the reference: what the
    /// application already paid to learn the destination is down).
    pub crossing_connect: Summary,
    /// Its return → the first rejection's return.
    pub trip: Summary,
    /// Its start → the first rejection's return.
    pub trip_from_start: Summary,
    /// Connects after the crossing failure that were not rejected, all trials.
    pub slipped: u64,
    pub check: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Blackholed {
    pub connect_timeout_ms: u32,
    /// The `connect()` that timed out.
    pub timed_out_connect: Summary,
    /// Its start → the first rejection's return.
    pub trip_from_start: Summary,
    /// Its return → the first rejection's return.
    pub trip: Summary,
    pub slipped: u64,
    /// Without the policy: the kernel's SYN schedule.
    pub kernel_default: SynTimeout,
    pub check: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub refused: Refused,
    pub blackholed: Blackholed,
}

/// One trial as the child saw it.
struct Trial {
    crossing: Attempt,
    first_rejection: Attempt,
    slipped: u64,
}

impl Trial {
    /// After `before` failures with `errno` to `dest`, the crossing one, then
    /// connects until the first rejection.
    fn run(dest: &Dest, before: u32, errno: i32) -> Self {
        for i in 0..before {
            let a = client::attempt(dest);
            assert_eq!(a.result, Err(errno), "failure {i} before the crossing one");
        }
        let crossing = client::attempt(dest);
        assert_eq!(crossing.result, Err(errno), "the crossing failure");
        let mut slipped = 0;
        loop {
            let a = client::attempt(dest);
            if a.result == Err(EHOSTUNREACH) {
                return Self {
                    crossing,
                    first_rejection: a,
                    slipped,
                };
            }
            slipped += 1;
            assert!(
                slipped < MAX_SLIPPED,
                "no rejection after {slipped} connects"
            );
        }
    }

    /// crossing connect, return → rejection, start → rejection, slipped.
    fn figures(&self) -> [u64; 4] {
        let trip = nanos(self.first_rejection.returned - self.crossing.returned);
        [
            self.crossing.connect_ns,
            trip,
            trip + self.crossing.connect_ns,
            self.slipped,
        ]
    }
}

/// Runs `trials` in one child in `cgroup`, one destination each; the figures of
/// each trial, transposed into series.
fn trials(
    cgroup: &ScratchCgroup,
    dests: &[SocketAddrV4],
    before: u32,
    errno: i32,
) -> Vec<Vec<u64>> {
    let out = Place::cgroup(cgroup).run(|| {
        client::pin_to_cpu(0);
        let mut series: [Vec<u64>; 4] = Default::default();
        for dest in dests {
            let figures = Trial::run(&Dest::new(*dest), before, errno).figures();
            for (s, f) in series.iter_mut().zip(figures) {
                s.push(f);
            }
        }
        wire::encode(&series.each_ref().map(Vec::as_slice))
    });
    wire::decode(&out, 4)
}

/// Every destination must be OPEN after one trip, with `failures` failures each.
fn check_open(enforcer: &Enforcer, dests: &[SocketAddrV4], failures: u64) -> Check {
    let wrong: Vec<String> = dests
        .iter()
        .filter_map(|d| {
            let state = enforcer
                .maps()
                .dests
                .get(&enforcer_tests::key(SocketAddr::V4(*d)))
                .expect("reading DESTS")
                .unwrap_or_default();
            let ok = state.breaker.state == State::Open as u32
                && state.counters.trips == 1
                && state.counters.failures() == failures;
            (!ok).then(|| format!("{d}: {:?}", state.counters))
        })
        .collect();
    Check::expect(
        wrong.is_empty(),
        format!(
            "{} of {} destinations OPEN after one trip on {failures} failures{}",
            dests.len() - wrong.len(),
            dests.len(),
            wrong
                .first()
                .map_or_else(String::new, |w| format!(" (e.g. {w})"))
        ),
    )
}

fn refused(trials_n: usize) -> Refused {
    // One port, reserved on every local address, so that no one else can listen
    // on it: each 127.0.0.0/8 address gives a fresh destination that refuses.
    let port = RefusingPort::bind("0.0.0.0:0".parse().unwrap());
    let dests: Vec<SocketAddrV4> = (0..trials_n)
        .map(|i| {
            // 127.91.x.1 to 127.91.x.254: no network or broadcast look-alikes.
            let (hi, lo) = (i / 254, 1 + i % 254);
            let hi = u8::try_from(hi).expect("at most 65 024 trials");
            SocketAddrV4::new(Ipv4Addr::new(127, 91, hi, lo as u8), port.addr.port())
        })
        .collect();
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let policy = Policy {
        failure_threshold: THRESHOLD,
        errno: EHOSTUNREACH as u32,
        ..fixtures::base_policy()
    };
    let rule = format!("127.0.0.0/8:{}", port.addr.port());
    fixtures::apply(
        &mut enforcer,
        &[&rule],
        policy,
        BackoffRow::exponential(HOUR_NS, HOUR_NS),
    );
    eprintln!("bench: trip latency: {trials_n} refused trials");
    let s = trials(&cgroup, &dests, THRESHOLD - 1, ECONNREFUSED);
    Refused {
        threshold: THRESHOLD,
        crossing_connect: Summary::of(&s[0]),
        trip: Summary::of(&s[1]),
        trip_from_start: Summary::of(&s[2]),
        slipped: s[3].iter().sum(),
        check: check_open(&enforcer, &dests, THRESHOLD.into()),
    }
}

fn blackholed(trials_n: usize) -> Blackholed {
    let ns = NetNs::new();
    let dests: Vec<SocketAddrV4> = (0..trials_n)
        .map(|i| SocketAddrV4::new(ns.ns_v4, 7400 + i as u16))
        .collect();
    for d in &dests {
        ns.tcp_port(d.port(), "drop");
    }
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let policy = Policy {
        failure_threshold: 1,
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        errno: EHOSTUNREACH as u32,
        ..fixtures::base_policy()
    };
    let rule = format!("{}/32:*", ns.ns_v4);
    fixtures::apply(
        &mut enforcer,
        &[&rule],
        policy,
        BackoffRow::exponential(HOUR_NS, HOUR_NS),
    );
    eprintln!("bench: trip latency: {trials_n} blackholed trials (about 1 s each)");
    let s = trials(&cgroup, &dests, 0, ETIMEDOUT);
    Blackholed {
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        timed_out_connect: Summary::of(&s[0]),
        trip_from_start: Summary::of(&s[2]),
        trip: Summary::of(&s[1]),
        slipped: s[3].iter().sum(),
        kernel_default: SynTimeout::of_this_host(),
        check: check_open(&enforcer, &dests, 1),
    }
}

pub fn run(size: Size) -> Results {
    Results {
        size,
        refused: refused(size.refused_trials),
        blackholed: blackholed(size.blackhole_trials),
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let headers = ["from → to", "p50", "p99", "max"];
        let row = |t: &mut Table, what: &str, s: &Summary| {
            t.row(vec![
                what.to_owned(),
                report::duration(s.p50_ns),
                report::duration(s.p99_ns),
                report::duration(s.max_ns),
            ]);
        };
        let r = &self.refused;
        let mut refused = Table::new(
            format!(
                "Scenario 3: trip latency, refused destination (failure_threshold {})",
                r.threshold
            ),
            &headers,
        );
        row(
            &mut refused,
            "the crossing failure's connect() (RST), start → return",
            &r.crossing_connect,
        );
        row(
            &mut refused,
            "its return → first rejection returned",
            &r.trip,
        );
        row(
            &mut refused,
            "its start → first rejection returned",
            &r.trip_from_start,
        );
        refused.note(format!(
            "{} trials, a fresh destination each; connects after the crossing failure that were \
             not rejected: {}",
            r.crossing_connect.n, r.slipped
        ));
        refused.note(format!(
            "trip p50 {} the crossing connect()'s own p50",
            report::times(stats::ratio(r.crossing_connect.p50_ns, r.trip.p50_ns))
        ));
        refused.note(r.check.note());

        let b = &self.blackholed;
        let mut blackholed = Table::new(
            format!(
                "Scenario 3: trip latency, blackholed destination (failure_threshold 1, \
                 connect_timeout {} ms)",
                b.connect_timeout_ms
            ),
            &headers,
        );
        row(
            &mut blackholed,
            "the connect() that times out, start → ETIMEDOUT",
            &b.timed_out_connect,
        );
        row(
            &mut blackholed,
            "its start → first rejection returned",
            &b.trip_from_start,
        );
        row(
            &mut blackholed,
            "its return → first rejection returned",
            &b.trip,
        );
        blackholed.note(format!(
            "{} trials; not rejected after the timeout: {}; without the policy every such connect() \
             waits {} s (kernel SYN schedule, computed), {} the policy's start → rejection p50",
            b.timed_out_connect.n,
            b.slipped,
            b.kernel_default.total_ms / 1000,
            report::times(stats::ratio(b.trip_from_start.p50_ns, b.kernel_default.total_ns())),
        ));
        blackholed.note(b.check.note());
        vec![refused, blackholed]
    }

    pub fn goals(&self) -> Vec<Goal> {
        let (r, b) = (&self.refused, &self.blackholed);
        vec![
            Goal {
                scenario: 3,
                goal: "from the failure that crosses the threshold to the first rejection: \
                       under 1 ms (p99)"
                    .to_owned(),
                measured: format!(
                    "p50 {}, p99 {}, max {} over {} trials; {} connects slipped through",
                    report::duration(r.trip.p50_ns),
                    report::duration(r.trip.p99_ns),
                    report::duration(r.trip.max_ns),
                    r.trip.n,
                    r.slipped
                ),
                met: r.trip.p99_ns < 1_000_000 && r.slipped == 0,
            },
            Goal {
                scenario: 3,
                goal: format!(
                    "the same with a blackhole and a {} ms connect_timeout: from the failure \
                     (the connect timing out) to the first rejection under 1 ms (p99)",
                    b.connect_timeout_ms
                ),
                measured: format!(
                    "start of the timing-out connect → first rejection: p50 {}, max {} over {} \
                     trials (the timeout itself: p50 {}; after it: max {}); {} slipped",
                    report::duration(b.trip_from_start.p50_ns),
                    report::duration(b.trip_from_start.max_ns),
                    b.trip_from_start.n,
                    report::duration(b.timed_out_connect.p50_ns),
                    report::duration(b.trip.max_ns),
                    b.slipped
                ),
                met: b.trip.p99_ns < 1_000_000 && b.slipped == 0,
            },
        ]
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        [&self.refused.check, &self.blackholed.check].into_iter()
    }
}

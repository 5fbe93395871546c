//! Scenario 2, fail-fast: what `connect()` costs an application when the
//! destination is down. Against the same refusing loopback port, interleaved in
//! each round's client process ([`crate::interleave`]):
//! - the circuit is OPEN: the gate rejects in `connect()` with the policy's errno;
//! - no programs (a cgroup without them): the kernel sends the SYN and gets a RST;
//! - the floor: a `connect()` that fails before any hook and any packet (an
//!   address too short, EINVAL), which no rejection in `connect()` can beat;
//! - the hook's floor: a minimal program that rejects every connect (EPERM),
//!   which no rejection by a program at the gate's hook can beat;
//! - and, computed from the sysctls, a blackholed destination with the kernel's
//!   default SYN schedule, which the circuit exists to spare the application.

use std::net::SocketAddr;

use enforcer_common::{
    breaker::State,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{cgroup::ScratchCgroup, exec::Place, fixtures, net::RefusingPort};
use serde::Serialize;

use crate::{
    bpf_stats::{self, ProgramCost},
    client::{self, Dest},
    compare::{self, Check, Measured},
    interleave::{self, Round},
    minimal_prog::MinimalPrograms,
    report::{self, Goal, Table},
    stats,
    syn_timeout::SynTimeout,
};

/// The errno of a rejection: distinct from the RST's ECONNREFUSED, so that every
/// sample can be told apart (a connect that was refused by the port rather than
/// rejected by the gate would mean the circuit was not open).
pub const EHOSTUNREACH: i32 = 113;
const ECONNREFUSED: i32 = 111;
const HOUR_NS: u64 = 3_600_000_000_000;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub rounds: usize,
    pub round: Round,
}

pub const FULL: Size = Size {
    rounds: 10,
    round: Round {
        per_variant: 10_000,
        slice: 500,
    },
};
pub const QUICK: Size = Size {
    rounds: 2,
    round: Round {
        per_variant: 1_000,
        slice: 100,
    },
};

const EINVAL: i32 = 22;
/// What a cgroup hook's `return 0` makes of a connect.
const EPERM: i32 = 1;

/// The ways of failing measured, in the order of [`Results`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The subject: the circuit is OPEN, the gate rejects.
    Rejected,
    /// The baseline: no programs, the port answers the SYN with a RST.
    Refused,
    /// The floor: EINVAL before any hook.
    Floor,
    /// The hook's floor: a program that only rejects.
    HookFloor,
}

const WAYS: [Way; 4] = [Way::Rejected, Way::Refused, Way::Floor, Way::HookFloor];

impl Way {
    fn errno(self) -> i32 {
        match self {
            Self::Rejected => EHOSTUNREACH,
            Self::Refused => ECONNREFUSED,
            Self::Floor => EINVAL,
            Self::HookFloor => EPERM,
        }
    }
}

/// One way of failing, timed two ways, each against the RST baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Timed {
    /// The `connect()` call alone.
    pub connect: Measured,
    /// `socket()` + `connect()` + `close()`.
    pub cycle: Measured,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    /// Rejected by the gate (circuit OPEN): the subject.
    pub rejected: Timed,
    /// Refused with a RST, no programs: the baseline.
    pub refused: Timed,
    /// EINVAL before any hook: the floor of a failing `connect()` here.
    pub floor: Timed,
    /// EPERM from a program that only rejects: the floor of a rejection at
    /// the gate's hook here.
    pub hook_floor: Timed,
    /// The kernel's SYN schedule, and so how long a blackholed connect waits.
    pub blackhole: SynTimeout,
    /// Per program, per rejection, from a pass with BPF run-time statistics on.
    pub in_programs: Vec<ProgramCost>,
    pub check: Check,
}

/// One attempt to `target` that must fail as `way` says: its `connect()` time
/// and whole-cycle time.
fn failing(target: &Dest, way: Way) -> (u64, u64) {
    let attempt = client::attempt(target);
    assert_eq!(attempt.result, Err(way.errno()), "{way:?}");
    (attempt.connect_ns, attempt.cycle_ns)
}

pub fn run(size: Size) -> Results {
    let port = RefusingPort::loopback_v4();
    let SocketAddr::V4(dest) = port.addr else {
        unreachable!("loopback_v4")
    };
    let plain = ScratchCgroup::new();
    let guarded = ScratchCgroup::new();
    let rejecting = ScratchCgroup::new();
    let _minimal = MinimalPrograms::rejecting_connect4(rejecting.path());
    let mut enforcer = fixtures::attached(&guarded);
    let policy = Policy {
        failure_threshold: 1,
        errno: EHOSTUNREACH as u32,
        ..fixtures::base_policy()
    };
    fixtures::apply(
        &mut enforcer,
        &[&dest.to_string()],
        policy,
        BackoffRow::exponential(HOUR_NS, HOUR_NS),
    );
    // One refusal trips it, for an hour: longer than the run.
    Place::cgroup(&guarded).run(|| {
        failing(&Dest::new(dest), Way::Refused);
        String::new()
    });

    // Per way, its cgroup and what it connects to.
    let cgroups: Vec<&ScratchCgroup> = WAYS
        .iter()
        .map(|&w| match w {
            Way::Rejected => &guarded,
            Way::HookFloor => &rejecting,
            Way::Refused | Way::Floor => &plain,
        })
        .collect();
    let targets: Vec<Dest> = WAYS
        .iter()
        .map(|&w| {
            if w == Way::Floor {
                Dest::too_short(dest)
            } else {
                Dest::new(dest)
            }
        })
        .collect();
    let rounds: Vec<_> = (0..size.rounds)
        .map(|r| {
            eprintln!("bench: fail-fast: round {}/{}", r + 1, size.rounds);
            interleave::round(&cgroups, size.round, 0, |v| failing(&targets[v], WAYS[v]))
        })
        .collect();
    let measured = interleave::by_variant(&rounds);
    let in_programs = {
        let _on = bpf_stats::enable();
        let ids = bpf_stats::attached_programs(guarded.path());
        let before = bpf_stats::snapshot(&ids);
        let n = size.round.per_variant;
        Place::cgroup(&guarded).run(|| {
            for _ in 0..n {
                failing(&targets[0], Way::Rejected);
            }
            String::new()
        });
        bpf_stats::costs(&before, &bpf_stats::snapshot(&ids), n)
    };

    let rejections = ((size.rounds + 1) * size.round.per_variant) as u64;
    let state = enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(dest)))
        .expect("reading DESTS")
        .unwrap_or_default();
    let c = state.counters;
    let check = Check::expect(
        state.breaker.state == State::Open as u32
            && c.rejected_circuit == rejections
            && c.failures() == 1,
        format!(
            "the destination is {} with {} rejections of {rejections} and {} failure (the trip)",
            if state.breaker.state == State::Open as u32 {
                "OPEN"
            } else {
                "not open"
            },
            c.rejected_circuit,
            c.failures()
        ),
    );
    // Each way against the RST, which is what an application gets without us.
    let timed = |v: usize| Timed {
        connect: compare::measured(&measured[v].connect, &measured[1].connect),
        cycle: compare::measured(&measured[v].cycle, &measured[1].cycle),
    };
    Results {
        size,
        rejected: timed(0),
        refused: timed(1),
        floor: timed(2),
        hook_floor: timed(3),
        blackhole: SynTimeout::of_this_host(),
        in_programs,
        check,
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let rejected = &self.rejected;
        let mut t = Table::new(
            "Scenario 2: fail-fast, `connect()` to a destination that is down",
            &[
                "connect() to",
                "errno",
                "connect() p50",
                "connect() p99",
                "p50 × rejection's",
                "cycle p50",
                "cycle p99",
            ],
        );
        let ratio = |ns: u64| report::times(stats::ratio(rejected.connect.all.p50_ns, ns));
        for (what, errno, timed) in [
            (
                "an OPEN circuit (rejected by the gate)",
                "EHOSTUNREACH (policy)",
                rejected,
            ),
            (
                "a closed loopback port, no programs (RST)",
                "ECONNREFUSED",
                &self.refused,
            ),
            (
                "floor: an address too short, fails before any hook",
                "EINVAL",
                &self.floor,
            ),
            (
                "hook floor: a minimal program that rejects every connect",
                "EPERM",
                &self.hook_floor,
            ),
        ] {
            t.row(vec![
                what.to_owned(),
                errno.to_owned(),
                report::duration(timed.connect.all.p50_ns),
                report::duration(timed.connect.all.p99_ns),
                ratio(timed.connect.all.p50_ns),
                report::duration(timed.cycle.all.p50_ns),
                report::duration(timed.cycle.all.p99_ns),
            ]);
        }
        let b = &self.blackhole;
        t.row(vec![
            "a blackholed destination, kernel defaults (computed)".to_owned(),
            "ETIMEDOUT".to_owned(),
            report::duration(b.total_ns()),
            report::duration(b.total_ns()),
            ratio(b.total_ns()),
            "—".to_owned(),
            "—".to_owned(),
        ]);
        t.note(format!(
            "{} rounds × {} connects per way, each round one client process moving between a \
             cgroup with the programs and one without every {} connects; same destination (a \
             bound, not listening, 127.0.0.1 port); client pinned to CPU 0",
            self.size.rounds, self.size.round.per_variant, self.size.round.slice
        ));
        t.note(format!(
            "rejection vs RST per round (Δp50 of connect()): {}",
            rejected.connect.vs_baseline.block_spread()
        ));
        t.note(format!(
            "blackhole: tcp_syn_retries {} and tcp_syn_linear_timeouts {}: the SYN is sent {} times \
             and connect() fails after {} s (not waited for)",
            b.syn_retries,
            b.linear_timeouts,
            b.syn_retries + b.linear_timeouts + 1,
            b.total_ms / 1000
        ));
        t.note(format!(
            "inside the programs, per rejection (a separate pass with BPF run-time statistics \
             on; means, each run including the statistics' own clock reads): {}",
            self.in_programs_line()
        ));
        t.note(self.check.note());
        vec![t]
    }

    /// "gate_connect4 1.00 × 1.2 µs, … = total" for the programs that ran.
    fn in_programs_line(&self) -> String {
        let ran: Vec<&ProgramCost> = self
            .in_programs
            .iter()
            .filter(|p| p.runs_per_connect > 0.0)
            .collect();
        let parts: Vec<String> = ran
            .iter()
            .map(|p| {
                format!(
                    "{} {:.2} × {}",
                    p.program,
                    p.runs_per_connect,
                    report::duration(p.ns_per_run)
                )
            })
            .collect();
        format!(
            "{} = {}",
            parts.join(", "),
            report::duration(ran.iter().map(|p| p.ns_per_connect).sum())
        )
    }

    pub fn goals(&self) -> Vec<Goal> {
        let c = &self.rejected.connect.all;
        vec![
            Goal {
                scenario: 2,
                goal: "a rejected connect() takes at most 1 µs at p99".to_owned(),
                measured: format!(
                    "p50 {}, p99 {}, where a connect() failing before any hook takes p50 {}, p99 {} \
                 and the programs run {} per rejection (a RST from a closed loopback port: p50 \
                 {}, {} the rejection's; a blackhole: {}); whole cycle with socket() and close(): \
                 p99 {}",
                    report::duration(c.p50_ns),
                    report::duration(c.p99_ns),
                    report::duration(self.floor.connect.all.p50_ns),
                    report::duration(self.floor.connect.all.p99_ns),
                    report::duration(self.in_programs.iter().map(|p| p.ns_per_connect).sum()),
                    report::duration(self.refused.connect.all.p50_ns),
                    report::times(stats::ratio(c.p50_ns, self.refused.connect.all.p50_ns)),
                    report::duration(self.blackhole.total_ns()),
                    report::duration(self.rejected.cycle.all.p99_ns),
                ),
                met: c.p99_ns <= 1_000,
            },
            {
                let floor = self.floor.connect.all.p99_ns;
                let ratio = stats::ratio(floor, c.p99_ns);
                let hook = self.hook_floor.connect.all.p99_ns;
                Goal {
                    scenario: 2,
                    goal:
                        "issue 17: a rejected connect() at most 1.3× at p99 of a connect() failing \
                       before any hook"
                            .to_owned(),
                    measured: format!(
                        "{}: p99 {} against {}; control: a program that only rejects, p99 {} \
                         ({} the floor; the gate's rejection is {} of it)",
                        report::times(ratio),
                        report::duration(c.p99_ns),
                        report::duration(floor),
                        report::duration(hook),
                        report::times(stats::ratio(floor, hook)),
                        report::times(stats::ratio(hook, c.p99_ns)),
                    ),
                    met: ratio <= 1.3,
                }
            },
        ]
    }
}

//! The variants of scenario 1 and what each installs in its own cgroup.

use std::net::{SocketAddr, SocketAddrV4};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    counters::GlobalCounter,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{cgroup::ScratchCgroup, exec::Place, fixtures};

use crate::{
    bpf_stats,
    client::{self, Dest, wire},
    compare::Check,
    minimal_prog::MinimalPrograms,
};

/// A destination no connect of the benchmark goes to (TEST-NET-1), for the
/// rule of variant (b): the rule trie is not empty, the lookup just misses.
const ELSEWHERE: &str = "192.0.2.0/24:*";

const HOUR_NS: u64 = 3_600_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Detached,
    DetachedAgain,
    Minimal,
    MinimalAll,
    Unmatched,
    Tracked,
    Bulkhead,
    TrackedChaosElsewhere,
}

/// The baseline first: every other variant is compared with it.
pub const VARIANTS: [Variant; 8] = [
    Variant::Detached,
    Variant::DetachedAgain,
    Variant::Minimal,
    Variant::MinimalAll,
    Variant::Unmatched,
    Variant::Tracked,
    Variant::Bulkhead,
    Variant::TrackedChaosElsewhere,
];

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Self::Detached => "(a) detached",
            Self::DetachedAgain => "(a′) detached again: noise floor",
            Self::Minimal => "(m) minimal connect4 program: hook floor",
            Self::MinimalAll => {
                "(m⁺) minimal programs at connect4, sock_ops and sock_release: the floor of (b)'s runs"
            }
            Self::Unmatched => "(b) attached, no matching rule",
            Self::Tracked => "(c) tracked destination",
            Self::Bulkhead => "(d) tracked + bulkhead cap",
            Self::TrackedChaosElsewhere => {
                "(e) tracked, a chaos fault armed for another destination"
            }
        }
    }
}

/// A policy as an operator would write one, with both triggers and a connect
/// timeout on (so the connect runs every path a real one does: the window, the
/// TCP_USER_TIMEOUT set at SYN and cleared at ESTABLISHED), which successes
/// can never trip.
pub fn tracked_policy() -> Policy {
    Policy {
        failure_threshold: 1_000,
        failure_rate_permille: 500,
        min_attempts: 1_000,
        connect_timeout_ms: 1_000,
        ..fixtures::base_policy()
    }
}

/// Caps far above the one connection the loop holds at a time.
fn bulkhead_policy() -> Policy {
    Policy {
        max_connections: 1_024,
        max_pending: 256,
        ..tracked_policy()
    }
}

pub struct Arm {
    pub variant: Variant,
    pub cgroup: ScratchCgroup,
    enforcer: Option<Enforcer>,
    minimal: Option<MinimalPrograms>,
}

impl Arm {
    pub fn new(variant: Variant, server: SocketAddrV4) -> Self {
        let cgroup = ScratchCgroup::new();
        let backoff = BackoffRow::exponential(HOUR_NS, HOUR_NS);
        let server_rule = server.to_string();
        let installed = match variant {
            Variant::Detached | Variant::DetachedAgain | Variant::Minimal | Variant::MinimalAll => {
                None
            }
            Variant::Unmatched => Some((ELSEWHERE, tracked_policy())),
            Variant::Tracked | Variant::TrackedChaosElsewhere => {
                Some((server_rule.as_str(), tracked_policy()))
            }
            Variant::Bulkhead => Some((server_rule.as_str(), bulkhead_policy())),
        };
        let enforcer = installed.map(|(rule, policy)| {
            let mut enforcer = fixtures::attached(&cgroup);
            fixtures::apply(&mut enforcer, &[rule], policy, backoff);
            if variant == Variant::TrackedChaosElsewhere {
                arm_elsewhere(&mut enforcer);
            }
            enforcer
        });
        let minimal = match variant {
            Variant::Minimal => Some(MinimalPrograms::connect4(cgroup.path())),
            Variant::MinimalAll => Some(MinimalPrograms::untracked_hooks(cgroup.path())),
            _ => None,
        };
        Self {
            variant,
            cgroup,
            enforcer,
            minimal,
        }
    }

    /// `n` connect + close cycles to `server` from a child in this arm's cgroup:
    /// the `connect()` times and the whole-cycle times.
    pub fn connect_loop(&self, server: SocketAddrV4, n: usize, cpu: usize) -> (Vec<u64>, Vec<u64>) {
        let out = Place::cgroup(&self.cgroup).run(|| {
            client::pin_to_cpu(cpu);
            let dest = Dest::new(server);
            let (mut connect, mut cycle) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for i in 0..n {
                let attempt = client::attempt(&dest);
                if let Err(errno) = attempt.result {
                    panic!("connect {i} to {server} failed: errno {errno}");
                }
                connect.push(attempt.connect_ns);
                cycle.push(attempt.cycle_ns);
            }
            wire::encode(&[&connect, &cycle])
        });
        let mut series = wire::decode(&out, 2).into_iter();
        (series.next().unwrap(), series.next().unwrap())
    }

    /// Reads back what the kernel counted: `total` connects of this arm must show
    /// up where the variant says they go.
    pub fn check(&self, server: SocketAddrV4, total: u64) -> Check {
        let programs = bpf_stats::attached_programs(self.cgroup.path()).len();
        let Some(enforcer) = &self.enforcer else {
            let expected = self.minimal.as_ref().map_or(0, MinimalPrograms::count);
            return Check::expect(
                programs == expected,
                format!(
                    "{}: programs attached to its cgroup: {programs}",
                    self.variant.name()
                ),
            );
        };
        let counter = |c| enforcer.maps().counters.get(c).expect("reading a counter");
        match self.variant {
            Variant::Detached | Variant::DetachedAgain | Variant::Minimal | Variant::MinimalAll => {
                unreachable!("has no enforcer")
            }
            Variant::Unmatched => {
                let (unmatched, admitted) = (
                    counter(GlobalCounter::Unmatched),
                    counter(GlobalCounter::Admitted),
                );
                Check::expect(
                    unmatched == total && admitted == 0,
                    format!(
                        "{}: {unmatched} of {total} connects unmatched, {admitted} admitted",
                        self.variant.name()
                    ),
                )
            }
            Variant::Tracked | Variant::Bulkhead | Variant::TrackedChaosElsewhere => {
                let state = enforcer
                    .maps()
                    .dests
                    .get(&enforcer_tests::key(SocketAddr::V4(server)))
                    .expect("reading DESTS");
                let Some(state) = state else {
                    return Check::expect(false, format!("{server} is not tracked"));
                };
                let c = state.counters;
                let b = state.breaker;
                Check::expect(
                    c.attempts == total
                        && c.successes == total
                        && c.failures() == 0
                        && b.active == 0
                        && b.pending == 0,
                    format!(
                        "{}: {} attempts, {} successes, {} failures of {total} connects; \
                         {} slots held at the end",
                        self.variant.name(),
                        c.attempts,
                        c.successes,
                        c.failures(),
                        b.active
                    ),
                )
            }
        }
    }
}

/// Arms a refusal for a destination no connect of the benchmark goes to,
/// for an hour: every connect runs the chaos check's loop and misses.
fn arm_elsewhere(enforcer: &mut Enforcer) {
    use enforcer_common::chaos::{self, CgroupScope, Fault, Kind, Target};
    let elsewhere =
        enforcer_common::dest::DestKey::from("192.0.2.1:80".parse::<SocketAddr>().unwrap());
    let root = enforcer::cgroup::v2_mount()
        .ok()
        .and_then(|p| enforcer::cgroup::scope(&p))
        .expect("the cgroup v2 root");
    let fault = Fault {
        kind: Kind::Refuse as u32,
        errno: 111,
        chance: chaos::ALWAYS,
        until_ns: enforcer::clock::monotonic_ns() + HOUR_NS,
        target_count: 1,
        cgroup_count: 1,
        targets: [Target::prefix(&elsewhere, 96 + 24); chaos::MAX_TARGETS],
        cgroups: [CgroupScope {
            id: root.0,
            level: 0,
            _pad: 0,
        }; chaos::MAX_CGROUPS],
        ..Fault::default()
    };
    let maps = enforcer.maps_mut();
    maps.chaos
        .arm(&mut maps.config, &[(0, fault)])
        .expect("arming a fault");
}

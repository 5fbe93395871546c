//! Scenario 5, scale: does a connect cost more when the maps hold many
//! destinations and rules, and what do the maps take in memory?
//!
//! One arm per size (1, 1 000, 100 000 tracked destinations), each with its
//! own cgroup and its own loaded programs, all with the same destination-map
//! capacity (the largest size), and as many policy rules as the rule trie
//! holds up to the size: per-destination /32 rules, plus one rule covering the
//! rest. The arms' maps are filled by refused connects (see
//! [`crate::populate`]), then one client interleaves connects to a loopback
//! server (tracked, with its own rule) between the arms, as in scenario 1; the
//! 1-destination arm is the baseline.
//!
//! Memory: the kernel's `memlock` figure of each arm's maps (see
//! [`crate::map_memory`]), read after filling, and what the fill took from
//! the kernel's slab caches, where the destinations' entries really live.

use std::net::{SocketAddr, SocketAddrV4};

use enforcer::{
    bpf::{Enforcer, KernelPolicies, LoadOptions},
    rule::Rule,
};
use enforcer_common::{
    maps,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{cgroup::ScratchCgroup, fixtures};
use serde::Serialize;

use crate::{
    client::{self, Dest},
    compare::{self, Check, Measured},
    interleave::{self, Round},
    map_memory::{self, MapMemory},
    populate::Refusing,
    report::{self, Goal, Table},
    server::AcceptAndClose,
};

const HOUR_NS: u64 = 3_600_000_000_000;
/// The memory goal for 100 000 destinations.
const GOAL_BYTES: u64 = 16 << 20;
const GOAL_DESTS: u64 = 100_000;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    /// Tracked destinations per arm; the first is the baseline, the second the
    /// same again (an A/A pair: its distance to the baseline is the noise).
    pub dests: [usize; 4],
    pub rounds: usize,
    pub round: Round,
    pub warmup_connects: usize,
}

pub const FULL: Size = Size {
    dests: [1, 1, 1_000, 100_000],
    rounds: 10,
    round: Round {
        per_variant: 3_000,
        slice: 300,
    },
    warmup_connects: 1_000,
};
pub const QUICK: Size = Size {
    dests: [1, 1, 100, 10_000],
    rounds: 2,
    round: Round {
        per_variant: 300,
        slice: 100,
    },
    warmup_connects: 100,
};

#[derive(Clone, Debug, Serialize)]
pub struct ArmResult {
    pub dests: usize,
    pub rules: usize,
    pub connect: Measured,
    pub cycle: Measured,
    pub maps: Vec<MapMemory>,
    /// The kernel's `kmalloc` caches across the fill: what its destinations
    /// took (host-wide, so within the noise of everything else running).
    pub kmalloc_fill_bytes: Option<i64>,
    pub check: Check,
}

impl ArmResult {
    /// What one filled destination took from the slab caches.
    fn kmalloc_per_dest(&self) -> Option<i64> {
        // The server's destination is not filled; an arm of one fills none.
        let filled = self.dests.checked_sub(1).filter(|&n| n > 0)?;
        Some(self.kmalloc_fill_bytes? / filled as i64)
    }

    fn memlock(&self, name: &str) -> u64 {
        self.maps
            .iter()
            .filter(|m| m.name == name)
            .map(|m| m.memlock_bytes)
            .sum()
    }

    fn memlock_total(&self) -> u64 {
        self.maps.iter().map(|m| m.memlock_bytes).sum()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub dests_capacity: u32,
    pub rules_capacity: u32,
    pub arms: Vec<ArmResult>,
}

/// Never trips on the refusals that fill the map nor on the loop's successes.
fn policy() -> Policy {
    Policy {
        failure_threshold: 1_000_000,
        failure_rate_permille: 1_000,
        min_attempts: 1_000_000,
        ..fixtures::base_policy()
    }
}

struct Arm {
    dests: usize,
    cgroup: ScratchCgroup,
    enforcer: Enforcer,
    map_ids: Vec<u32>,
    kmalloc_fill: Option<i64>,
}

impl Arm {
    fn new(dests: usize, capacity: u32, server: SocketAddrV4, refusing: &Refusing) -> Self {
        let cgroup = ScratchCgroup::new();
        let before = map_memory::open_map_ids();
        let mut enforcer = fixtures::attached_with(
            &cgroup,
            &LoadOptions {
                dests_capacity: capacity,
                ..LoadOptions::default()
            },
        );
        let map_ids = map_memory::opened_since(&before);
        // The server's rule, one /32 rule per filled destination while the trie
        // has room (leaving one entry for the covering rule), then the rule that
        // covers the rest.
        let per_dest = (dests - 1).min(maps::POLICY_RULES_CAPACITY as usize - 2);
        let rules = std::iter::once(server.to_string())
            .chain((0..per_dest).map(|i| format!("{}/32:*", refusing.dest(i).ip())))
            .chain((dests > 1).then(|| refusing.covering_rule()))
            .map(|rule| {
                let rule: Rule = rule.parse().unwrap_or_else(|e| panic!("{e}"));
                (rule, fixtures::POLICY_ID)
            })
            .collect();
        let set = KernelPolicies {
            policies: vec![(
                fixtures::POLICY_ID,
                policy(),
                BackoffRow::exponential(HOUR_NS, HOUR_NS),
            )],
            rules,
        };
        let maps = enforcer.maps_mut();
        maps.policies
            .replace(&mut maps.config, &set)
            .expect("writing the policy set");
        let before = map_memory::kmalloc_in_use();
        refusing.connect_each(&cgroup, dests - 1);
        // The refused sockets' own memory goes back after an RCU grace period.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let kmalloc_fill = before
            .zip(map_memory::kmalloc_in_use())
            .map(|(before, after)| after as i64 - before as i64);
        Self {
            dests,
            cgroup,
            enforcer,
            map_ids,
            kmalloc_fill,
        }
    }

    /// The map holds exactly the filled destinations and the server, and the
    /// server's destination counted every connect of the loop as a success.
    fn check(&self, server: SocketAddrV4, total: u64) -> Check {
        let tracked = self
            .enforcer
            .maps()
            .dests
            .all()
            .expect("reading DESTS")
            .len();
        let s = self
            .enforcer
            .maps()
            .dests
            .get(&enforcer_tests::key(SocketAddr::V4(server)))
            .expect("reading DESTS")
            .unwrap_or_default();
        let c = s.counters;
        Check::expect(
            tracked == self.dests && c.attempts == total && c.successes == total,
            format!(
                "{} destinations: {tracked} tracked; the server's: {} attempts, {} successes \
                 of {total} connects",
                self.dests, c.attempts, c.successes
            ),
        )
    }
}

pub fn run(size: Size) -> Results {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (client_cpu, server_cpu) = (0, (cpus > 1).then_some(1));
    let server = AcceptAndClose::start(server_cpu);
    let capacity = u32::try_from(size.dests[3]).expect("a map capacity");
    let refusing = Refusing::new(64);
    let arms: Vec<Arm> = size
        .dests
        .iter()
        .map(|&n| {
            eprintln!("bench: scale: filling {n} destinations");
            Arm::new(n, capacity, server.addr, &refusing)
        })
        .collect();
    let rules: Vec<usize> = arms
        .iter()
        .map(|a| {
            let maps = a.enforcer.maps();
            let rules = maps.policies.rules(&maps.config);
            rules.expect("reading the rules").len()
        })
        .collect();

    let dest = Dest::new(server.addr);
    let cgroups: Vec<&ScratchCgroup> = arms.iter().map(|a| &a.cgroup).collect();
    let attempt = |_| {
        let a = client::attempt(&dest);
        if let Err(errno) = a.result {
            panic!("connect to {} failed: errno {errno}", server.addr);
        }
        (a.connect_ns, a.cycle_ns)
    };
    interleave::round(
        &cgroups,
        Round {
            per_variant: size.warmup_connects,
            slice: size.warmup_connects,
        },
        client_cpu,
        attempt,
    );
    let rounds: Vec<_> = (0..size.rounds)
        .map(|r| {
            eprintln!("bench: scale: round {}/{}", r + 1, size.rounds);
            interleave::round(&cgroups, size.round, client_cpu, attempt)
        })
        .collect();
    let measured = interleave::by_variant(&rounds);
    let total = (size.warmup_connects + size.rounds * size.round.per_variant) as u64;
    Results {
        size,
        dests_capacity: capacity,
        rules_capacity: maps::POLICY_RULES_CAPACITY,
        arms: arms
            .iter()
            .enumerate()
            .map(|(v, arm)| ArmResult {
                dests: arm.dests,
                rules: rules[v],
                connect: compare::measured(&measured[v].connect, &measured[0].connect),
                cycle: compare::measured(&measured[v].cycle, &measured[0].cycle),
                maps: map_memory::of(&arm.map_ids),
                kmalloc_fill_bytes: arm.kmalloc_fill,
                check: arm.check(server.addr, total),
            })
            .collect(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 5: scale, `connect()` to a tracked destination with many others tracked",
            &[
                "tracked destinations",
                "policy rules",
                "connect() p50",
                "connect() p99",
                "Δp50 vs 1",
                "Δp99 vs 1",
                "Δp50 per round: median [min, max]",
                "cycle Δp50 vs 1",
            ],
        );
        for (i, a) in self.arms.iter().enumerate() {
            let v = &a.connect.vs_baseline;
            t.row(vec![
                if i == 1 {
                    format!("{} (again: noise floor)", a.dests)
                } else {
                    a.dests.to_string()
                },
                a.rules.to_string(),
                report::duration(a.connect.all.p50_ns),
                report::duration(a.connect.all.p99_ns),
                report::signed(v.delta_p50_ns),
                report::signed(v.delta_p99_ns),
                v.block_spread(),
                report::signed(a.cycle.vs_baseline.delta_p50_ns),
            ]);
        }
        t.note(format!(
            "{} rounds × {} connects per arm, one client process moving between the arms' \
             cgroups every {} connects; destination map capacity {} in every arm; the rule trie \
             holds at most {} rules, so the largest arm has per-destination /32 rules for the \
             first ones and one /10 rule for the rest",
            self.size.rounds,
            self.size.round.per_variant,
            self.size.round.slice,
            self.dests_capacity,
            self.rules_capacity
        ));
        for a in &self.arms {
            t.note(a.check.note());
        }

        let mut m = Table::new(
            "Scenario 5: scale, map memory (the kernel's memlock figure, /proc/self/fdinfo)",
            &[
                "tracked destinations",
                "DESTS",
                "POLICY_RULES_0 + _1",
                "all maps",
                "DESTS per capacity entry",
                "slab caches taken by the fill, per destination",
            ],
        );
        for a in &self.arms {
            let dests = a.memlock(maps::DESTS);
            m.row(vec![
                a.dests.to_string(),
                mib(dests),
                mib(maps::POLICY_RULES.iter().map(|n| a.memlock(n)).sum()),
                mib(a.memlock_total()),
                format!("{} B", dests / u64::from(self.dests_capacity.max(1))),
                a.kmalloc_per_dest()
                    .map_or_else(|| "—".to_owned(), |b| format!("{b} B")),
            ]);
        }
        m.note(
            "the destination map is a hash (not LRU: an evicted entry would leak bulkhead slots), \
             not pre-allocated: it costs a bucket array for its capacity (16 B a bucket, one per \
             entry of capacity rounded up to a power of two) plus an element per destination it \
             holds; memlock counts the element at its size, the slab caches hand out the next \
             size they have (`/proc/slabinfo`, host-wide, before and after the fill)",
        );
        vec![t, m]
    }

    /// The largest arm against the baseline, and memory scaled to 100 000.
    pub fn goals(&self) -> Vec<Goal> {
        let (Some(base), Some(big)) = (self.arms.first(), self.arms.last()) else {
            return Vec::new();
        };
        // The A/A pair's largest per-round p50 difference: what this run
        // cannot tell from zero.
        let floor = self.arms[1]
            .connect
            .vs_baseline
            .block_delta_p50_ns
            .iter()
            .map(|d| d.unsigned_abs())
            .max()
            .unwrap_or(0);
        let delta = big.connect.vs_baseline.delta_p50_ns;
        let per_entry = big.memlock(maps::DESTS) as f64 / f64::from(self.dests_capacity.max(1));
        let for_goal = (per_entry * GOAL_DESTS as f64) as u64;
        vec![
            Goal {
                scenario: 5,
                goal: format!(
                    "connect() overhead flat from 1 to {} tracked destinations (within noise)",
                    big.dests
                ),
                measured: format!(
                    "{} at p50, {} at p99 against 1 destination (p50 {}); noise floor (the A/A \
                     pair's largest per-round p50 difference): ±{floor} ns",
                    report::signed(delta),
                    report::signed(big.connect.vs_baseline.delta_p99_ns),
                    report::duration(base.connect.all.p50_ns),
                ),
                // Flat: the overall delta is inside the per-round spread.
                met: delta.unsigned_abs() <= floor,
            },
            Goal {
                scenario: 5,
                goal: "100 000 destinations take at most 16 MiB of map memory".to_owned(),
                measured: format!(
                    "the destination map charges {per_entry:.0} B per entry of capacity: {} for \
                     100 000 (all maps of the {}-destination arm: {})",
                    mib(for_goal),
                    big.dests,
                    mib(big.memlock_total())
                ),
                met: for_goal <= GOAL_BYTES,
            },
            {
                // What one more tracked destination costs, all maps counted:
                // the largest arm against the smallest.
                let added = big.memlock_total().saturating_sub(base.memlock_total());
                let per_dest = added / (big.dests.saturating_sub(base.dests).max(1) as u64);
                // The slab caches' figure where it was read: what the
                // kernel really gave each entry, not its unrounded size.
                let taken = big.kmalloc_per_dest();
                let judged = taken.map_or(per_dest, |b| b.max(0) as u64);
                Goal {
                    scenario: 5,
                    goal:
                        "issue 17: kernel memory per tracked destination (all maps) at most 160 B"
                            .to_owned(),
                    measured: format!(
                        "{}memlock {per_dest} B: all maps {} with {} destinations, {} with {}",
                        taken.map_or_else(String::new, |b| format!(
                            "{b} B taken from the slab caches per destination filled; "
                        )),
                        mib(big.memlock_total()),
                        big.dests,
                        mib(base.memlock_total()),
                        base.dests
                    ),
                    met: judged <= 160,
                }
            },
        ]
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.arms.iter().map(|a| &a.check)
    }
}

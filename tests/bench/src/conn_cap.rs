//! Scenario 7, against a kernel connection cap: nftables `ct count` versus our
//! bulkhead (`max_connections`).
//!
//! Two network namespaces of our own, each reached over its veth: `plain` has no
//! firewall rule at all (its connections are not tracked by conntrack), `nft`
//! has one table of ours whose input chain caps connections per port with
//! `ct state new ct count over N reject with tcp reset`, as an operator would
//! cap a backend with nftables. Our bulkhead caps the same backend in `plain`
//! from the client's cgroup.
//!
//! - Per-connect cost, interleaved in one client (as scenario 1): (a) to
//!   `plain`, no cap; (t) to `nft` on a port without a rule: conntrack alone,
//!   which any nftables cap turns on for the whole namespace; (n) to `nft`
//!   under a `ct count` cap that is never reached; (b) to `plain` from the
//!   cgroup with the bulkhead (never reached either).
//! - Does the cap hold: 64 clients (threads) connect at once to a backend that
//!   holds every connection (it never accepts: the handshake completes in its
//!   backlog), each keeps what it got until all are done; how many got through.

use std::{
    net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener},
    os::fd::OwnedFd,
    sync::Barrier,
};

use enforcer::bpf::Enforcer;
use enforcer_common::policy::{BackoffRow, Policy};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{self, AcceptingServer, RefusingPort},
    netns::{self as ns, NetNs},
};
use serde::Serialize;

use crate::{
    client::{self, Dest},
    compare::{self, Check, Measured},
    interleave::{self, Round},
    report::{self, Goal, Table},
};

const HOUR_NS: u64 = 3_600_000_000_000;
/// The cap the overhead loop never reaches.
const HIGH_CAP: u32 = 1_024;
/// The cap the concurrent clients contend for.
const CAP: u32 = 8;
const CLIENTS: usize = 64;
const TABLE: &str = "enforcer_bench_cap";

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub rounds: usize,
    pub round: Round,
    pub cap_trials: usize,
}

pub const FULL: Size = Size {
    rounds: 10,
    round: Round {
        per_variant: 2_000,
        slice: 250,
    },
    cap_trials: 20,
};
pub const QUICK: Size = Size {
    rounds: 2,
    round: Round {
        per_variant: 200,
        slice: 100,
    },
    cap_trials: 3,
};

const VARIANTS: [&str; 4] = [
    "(a) no cap (no firewall rule, no conntrack)",
    "(t) conntrack on, port without a cap",
    "(n) nftables ct count cap (not reached)",
    "(b) enforcer bulkhead cap (not reached)",
];

#[derive(Clone, Debug, Serialize)]
pub struct Holds {
    pub name: &'static str,
    /// Connections that got through in each trial.
    pub through: Vec<u32>,
    pub check: Check,
}

impl Holds {
    fn exact(&self) -> usize {
        self.through.iter().filter(|&&n| n == CAP).count()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub cap: u32,
    pub clients: usize,
    pub connect: Vec<(&'static str, Measured)>,
    pub cycle: Vec<(&'static str, Measured)>,
    pub nft: Holds,
    pub bulkhead: Holds,
}

/// A listener on `ip` inside `netns` that never accepts.
fn holding_listener(netns: &NetNs, ip: IpAddr) -> TcpListener {
    let fd = netns.open();
    std::thread::spawn(move || {
        ns::enter_raw(&fd).expect("setns");
        RefusingPort::bind(SocketAddr::new(ip, 0)).listen()
    })
    .join()
    .expect("binding in the namespace")
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("IPv4 servers"),
    }
}

/// The packets the cap rule on `port` rejected, read back from the kernel.
fn nft_rejections(netns: &NetNs, port: u16) -> u64 {
    let listed = netns.exec("nft", &["list", "chain", "inet", TABLE, "input"]);
    listed
        .lines()
        .find(|l| l.contains(&format!("dport {port} ")))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// `CLIENTS` threads connect to `dest` at once from a child in `cgroup`, hold
/// what they got until all are done, then close with a RST: how many got through.
fn contend(cgroup: &ScratchCgroup, dest: SocketAddrV4) -> u32 {
    let out = Place::cgroup(cgroup).run(|| {
        let (start, done) = (Barrier::new(CLIENTS), Barrier::new(CLIENTS));
        let through: usize = std::thread::scope(|s| {
            let threads: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let held = net::connect(SocketAddr::V4(dest)).ok();
                        done.wait();
                        let ok = held.is_some();
                        if let Some(stream) = held {
                            net::close_with_rst(OwnedFd::from(stream));
                        }
                        ok
                    })
                })
                .collect();
            threads
                .into_iter()
                .filter_map(|t| t.join().unwrap().then_some(()))
                .count()
        });
        through.to_string()
    });
    out.trim().parse().expect("a count")
}

fn caps_policy(max_connections: u32) -> Policy {
    Policy {
        failure_threshold: 1_000_000,
        failure_rate_permille: 1_000,
        min_attempts: 1_000_000,
        max_connections,
        ..fixtures::base_policy()
    }
}

pub fn run(size: Size) -> Results {
    let plain = NetNs::new();
    let tracked = NetNs::new();
    let to_plain = AcceptingServer::bind_in(&plain, SocketAddr::new(plain.ns_v4.into(), 0));
    let untracked_port =
        AcceptingServer::bind_in(&tracked, SocketAddr::new(tracked.ns_v4.into(), 0));
    let capped = AcceptingServer::bind_in(&tracked, SocketAddr::new(tracked.ns_v4.into(), 0));
    let held_plain = holding_listener(&plain, plain.ns_v4.into());
    let held_nft = holding_listener(&tracked, tracked.ns_v4.into());
    let (held_plain_addr, held_nft_addr) = (
        v4(held_plain.local_addr().unwrap()),
        v4(held_nft.local_addr().unwrap()),
    );
    let rule = |port: u16, cap: u32| {
        format!(
            "add rule inet {TABLE} input tcp dport {port} ct state new ct count over {cap} \
             counter reject with tcp reset\n"
        )
    };
    tracked.nft(&format!(
        "add table inet {TABLE}\n\
             add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
             {}{}",
        rule(capped.addr.port(), HIGH_CAP),
        rule(held_nft_addr.port(), CAP)
    ));

    let bare = ScratchCgroup::new();
    let protected = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&protected);
    let backoff = BackoffRow::exponential(HOUR_NS, HOUR_NS);
    let (to_plain_rule, held_rule) = (v4(to_plain.addr).to_string(), held_plain_addr.to_string());
    fixtures::install(
        &mut enforcer,
        &[
            (1, caps_policy(HIGH_CAP), backoff),
            (2, caps_policy(CAP), backoff),
        ],
        &[(&to_plain_rule, 1), (&held_rule, 2)],
    );

    // The overhead loop.
    let dests = [
        Dest::new(v4(to_plain.addr)),
        Dest::new(v4(untracked_port.addr)),
        Dest::new(v4(capped.addr)),
        Dest::new(v4(to_plain.addr)),
    ];
    let cgroups = [&bare, &bare, &bare, &protected];
    let rounds: Vec<_> = (0..size.rounds)
        .map(|r| {
            eprintln!("bench: connection cap: round {}/{}", r + 1, size.rounds);
            interleave::round(&cgroups, size.round, 0, |v| {
                let a = client::attempt(&dests[v]);
                if let Err(errno) = a.result {
                    panic!("{}: connect failed: errno {errno}", VARIANTS[v]);
                }
                (a.connect_ns, a.cycle_ns)
            })
        })
        .collect();
    let m = interleave::by_variant(&rounds);

    // Does the cap hold, alternating the two caps.
    eprintln!(
        "bench: connection cap: {} trials of {CLIENTS} concurrent clients",
        size.cap_trials
    );
    let (mut nft_through, mut ours_through) = (Vec::new(), Vec::new());
    for _ in 0..size.cap_trials {
        nft_through.push(contend(&bare, held_nft_addr));
        ours_through.push(contend(&protected, held_plain_addr));
    }
    let refused = |through: &[u32]| -> u64 {
        through
            .iter()
            .map(|&n| (CLIENTS as u64).saturating_sub(n.into()))
            .sum()
    };
    let nft_counted = nft_rejections(&tracked, held_nft_addr.port());
    let nft = Holds {
        name: "nftables ct count",
        check: Check::expect(
            nft_counted == refused(&nft_through),
            format!(
                "nftables: the cap rule rejected {nft_counted} SYNs; the clients saw {} refusals",
                refused(&nft_through)
            ),
        ),
        through: nft_through,
    };
    let bulkhead = Holds {
        name: "enforcer bulkhead",
        check: bulkhead_check(&enforcer, held_plain_addr, refused(&ours_through)),
        through: ours_through,
    };
    tracked.nft(&format!("delete table inet {TABLE}\n"));

    let by_name = |pick: fn(&interleave::ByRound) -> &Vec<Vec<u64>>| {
        VARIANTS
            .iter()
            .zip(&m)
            .map(|(name, v)| (*name, compare::measured(pick(v), pick(&m[0]))))
            .collect()
    };
    Results {
        size,
        cap: CAP,
        clients: CLIENTS,
        connect: by_name(|v| &v.connect),
        cycle: by_name(|v| &v.cycle),
        nft,
        bulkhead,
    }
}

fn bulkhead_check(enforcer: &Enforcer, dest: SocketAddrV4, refused: u64) -> Check {
    let s = enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(dest)))
        .expect("reading DESTS")
        .unwrap_or_default();
    Check::expect(
        s.counters.rejected_bulkhead == refused && s.breaker.active == 0,
        format!(
            "bulkhead: {} rejections counted in the map, the clients saw {refused}; {} slots \
             held at the end",
            s.counters.rejected_bulkhead, s.breaker.active
        ),
    )
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 7: connection cap, per-connect cost (over a veth into a namespace)",
            &[
                "variant",
                "connect() p50",
                "connect() p99",
                "Δp50 vs (a)",
                "Δp99 vs (a)",
                "Δp50 per round: median [min, max]",
                "cycle p50",
                "cycle Δp50 vs (a)",
            ],
        );
        for ((name, c), (_, y)) in self.connect.iter().zip(&self.cycle) {
            t.row(vec![
                (*name).to_owned(),
                report::duration(c.all.p50_ns),
                report::duration(c.all.p99_ns),
                report::signed(c.vs_baseline.delta_p50_ns),
                report::signed(c.vs_baseline.delta_p99_ns),
                c.vs_baseline.block_spread(),
                report::duration(y.all.p50_ns),
                report::signed(y.vs_baseline.delta_p50_ns),
            ]);
        }
        t.note(format!(
            "{} rounds × {} connects per variant, interleaved every {} in one client process; \
             caps of {HIGH_CAP} connections, never reached",
            self.size.rounds, self.size.round.per_variant, self.size.round.slice
        ));

        let mut h = Table::new(
            format!(
                "Scenario 7: does a cap of {} hold under {} concurrent clients",
                self.cap, self.clients
            ),
            &[
                "cap",
                "through per trial: min",
                "max",
                "trials exactly at the cap",
            ],
        );
        for v in [&self.nft, &self.bulkhead] {
            h.row(vec![
                v.name.to_owned(),
                v.through.iter().min().copied().unwrap_or(0).to_string(),
                v.through.iter().max().copied().unwrap_or(0).to_string(),
                format!("{} of {}", v.exact(), v.through.len()),
            ]);
        }
        h.note(
            "each trial: the clients start together (a barrier), each keeps its connection until \
             all have tried; the backend never accepts, so every connection that got through is \
             held",
        );
        h.note(self.nft.check.note());
        h.note(self.bulkhead.check.note());
        vec![t, h]
    }

    pub fn goals(&self) -> Vec<Goal> {
        let get = |i: usize| &self.connect[i].1.vs_baseline;
        let (n, b) = (get(2), get(3));
        vec![
            Goal {
                scenario: 7,
                goal: "per-connect cost of our bulkhead at most that of nftables ct count (the issue sets \
                       no number: compared side by side)"
                    .to_owned(),
                measured: format!(
                    "connect() Δp50 vs no cap: bulkhead {} (per round {}), ct count {} (per \
                     round {}), conntrack alone {}",
                    report::signed(b.delta_p50_ns),
                    b.block_spread(),
                    report::signed(n.delta_p50_ns),
                    n.block_spread(),
                    report::signed(get(1).delta_p50_ns)
                ),
                met: b.delta_p50_ns <= n.delta_p50_ns,
            },
            Goal {
                scenario: 7,
                goal: format!(
                    "the cap holds exactly under {} concurrent clients (cap {})",
                    self.clients, self.cap
                ),
                measured: format!(
                    "bulkhead: {} of {} trials exactly {} through (min {}, max {}); ct count: {} \
                     of {} (min {}, max {})",
                    self.bulkhead.exact(),
                    self.bulkhead.through.len(),
                    self.cap,
                    self.bulkhead.through.iter().min().unwrap_or(&0),
                    self.bulkhead.through.iter().max().unwrap_or(&0),
                    self.nft.exact(),
                    self.nft.through.len(),
                    self.nft.through.iter().min().unwrap_or(&0),
                    self.nft.through.iter().max().unwrap_or(&0),
                ),
                met: self.bulkhead.exact() == self.bulkhead.through.len(),
            },
        ]
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        [&self.nft.check, &self.bulkhead.check].into_iter()
    }
}

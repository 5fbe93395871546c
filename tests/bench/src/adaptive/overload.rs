//! Scenario 10 (a), overload side by side: a backend of fixed capacity
//! (W workers, S of work per request, a connection per request; see
//! `enforcer_tests::capacity`) offered three times what it can serve, open
//! loop, from the protected cgroup, under each way of capping it:
//!
//! - no cap: no policy covers the backend, its queue (and the latency) grows
//!   for as long as the overload lasts;
//! - a static `max_connections = W`: what an operator who knows the capacity
//!   would set;
//! - `max_connections = "auto"` with each algorithm, learning from the
//!   response latency the kernel measures (`signal = "response"`, `min = 1`,
//!   `interval = "500ms"`, otherwise the defaults).
//!
//! One daemon (the release build `cargo xtask bench` points `ENFORCER_BIN`
//! at) holds a policy per capped backend. Each variant gets a backend of its
//! own, started with the others (the daemon's policies name their ports) and
//! dropped once measured, so no queue carries over; it first sees a warm-up at
//! a tenth of its capacity (where an adaptive limit learns the unloaded
//! latency, as on any service before its overload), then the overload. The
//! figures are those of the requests scheduled once a limit has had time to
//! settle (the settled window), set against an unloaded run measured in the
//! same run and against the backend's capacity.
//!
//! Twenty seconds of overload per variant cannot interleave finely as the
//! connect loops do: the variants run one after the other, the same way each,
//! with the same polling of `enforcer status` (a CLI process every 500 ms).

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::{Maps, pins};
use enforcer_tests::{
    bpffs::PinDir,
    capacity::{Backend, LoadOptions, Report},
    cgroup::ScratchCgroup,
    daemon::Daemon,
    exec::Place,
};
use serde::Serialize;

use crate::compare::Check;

/// Workers and work per request: a capacity of W / S = 160 requests/s, as in
/// the privileged test of adaptive limits (`tests/tests/adaptive.rs`).
pub const WORKERS: usize = 8;
pub const WORK_MS: u64 = 50;
/// Offered during the overload, as a multiple of the capacity.
pub(super) const OVERLOAD: f64 = 3.0;
/// Offered unloaded and during the warm-up, likewise.
pub(super) const LIGHT: f64 = 0.1;
/// How often the learnt limits are read while the load runs.
const POLL: Duration = Duration::from_millis(500);
/// The load's child is forked before the first `enforcer status`: a CLI
/// started while it forks would leave the child holding the CLI's output pipe,
/// and the status read waiting for the whole load.
const FORK_FIRST: Duration = Duration::from_millis(500);

fn capacity_per_s() -> f64 {
    WORKERS as f64 * 1_000.0 / WORK_MS as f64
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    /// The unloaded run, at a tenth of the capacity.
    pub unloaded_ms: u64,
    /// Each variant's warm-up, at a tenth of the capacity.
    pub warm_up_ms: u64,
    /// Each variant's overload.
    pub overload_ms: u64,
    /// Where the settled window starts in the overload (it ends with it).
    pub settle_ms: u64,
    /// A client gives up on a request not answered by then: it bounds the
    /// drain of the uncapped queue (and keeps the requests in flight below
    /// the generator's 4096 at the offered rate).
    pub timeout_ms: u64,
}

/// How a variant caps its backend.
#[derive(Clone, Copy, Debug)]
enum Cap {
    /// No policy covers the backend.
    None,
    Static(u32),
    /// `max_connections = "auto"` with this algorithm.
    Auto(&'static str),
}

struct Variant {
    name: &'static str,
    /// The daemon's policy for it (unused without a cap).
    policy: &'static str,
    cap: Cap,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "no cap (no policy)",
        policy: "",
        cap: Cap::None,
    },
    Variant {
        name: "static max_connections = 8 (= W)",
        policy: "static",
        cap: Cap::Static(WORKERS as u32),
    },
    Variant {
        name: "auto, gradient2",
        policy: "gradient2",
        cap: Cap::Auto("gradient2"),
    },
    Variant {
        name: "auto, vegas",
        policy: "vegas",
        cap: Cap::Auto("vegas"),
    },
    Variant {
        name: "auto, aimd",
        policy: "aimd",
        cap: Cap::Auto("aimd"),
    },
];

/// The learnt limits read in the settled window.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    pub median: u64,
    pub min: u64,
    pub max: u64,
}

impl Spread {
    fn of(values: &[u64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        Some(Self {
            median: sorted[(sorted.len().checked_sub(1)?) / 2],
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    pub name: &'static str,
    /// Answered requests per second among those scheduled in the settled
    /// window: answered within the client's timeout, i.e. of use to it.
    pub goodput_per_s: f64,
    pub goodput_vs_capacity: f64,
    /// The settled window's answered p99 over the unloaded p99 (NaN, written
    /// `null`, when nothing was answered in time).
    pub p99_vs_unloaded: f64,
    /// The most connections that waited in the backend's queue at once.
    pub queued_max: u64,
    /// The learnt limit as `enforcer status` showed it in the settled window.
    pub settled_limit: Option<Spread>,
    /// Every limit read: (ms since the overload began, limit).
    pub limits: Vec<(u64, u64)>,
    pub warm_up: Report,
    /// The overload; its `settled` window holds the figures of the table.
    pub overload: Report,
    pub check: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub workers: usize,
    pub work_ms: u64,
    pub capacity_per_s: f64,
    pub offered_per_s: f64,
    /// A tenth of the capacity on a backend of its own, no policy.
    pub unloaded: Report,
    pub variants: Vec<VariantResult>,
    pub unloaded_check: Check,
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The daemon's policy for `v` on the backend at `addr` (none without a cap).
/// Failures never trip it: what is measured is the cap alone.
fn policy(v: &Variant, addr: SocketAddr) -> String {
    let head = format!(
        "[[policy]]\nname = \"{}\"\nmatch = [\"{addr}\"]\n\
         failure_threshold = 1000000\nmin_attempts = 1000000\n",
        v.policy
    );
    match v.cap {
        Cap::None => String::new(),
        Cap::Static(n) => format!("{head}max_connections = {n}\n"),
        Cap::Auto(algorithm) => format!(
            "{head}max_connections = \"auto\"\n[policy.adaptive]\nalgorithm = \"{algorithm}\"\n\
             signal = \"response\"\nmin = 1\ninterval = \"500ms\"\n"
        ),
    }
}

/// The load at `rate` for `duration` from a child in the protected cgroup.
fn load(
    place: &Place,
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    opts: LoadOptions,
) -> Report {
    let line =
        place.run(move || enforcer_tests::capacity::offered(addr, rate, duration, &opts).to_line());
    Report::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

pub fn run(size: Size) -> Results {
    let (cgroup, pin_dir) = (ScratchCgroup::new(), PinDir::new());
    let mut backends: Vec<Option<Backend>> = VARIANTS
        .iter()
        .map(|_| Some(Backend::start(WORKERS, ms(WORK_MS))))
        .collect();
    let config: String = VARIANTS
        .iter()
        .zip(&backends)
        .map(|(v, b)| policy(v, b.as_ref().expect("started").addr()))
        .collect();
    let daemon = Daemon::start(&cgroup, &pin_dir, &config);
    let maps = Maps::open(&pins::PinDir::new(&daemon.pin_dir)).expect("opening the daemon's pins");
    let place = Place::cgroup(&cgroup);
    let light = LIGHT * capacity_per_s();
    let opts = LoadOptions {
        timeout: ms(size.timeout_ms),
        ..LoadOptions::default()
    };

    eprintln!("bench: adaptive limits: unloaded");
    let unloaded = {
        let backend = Backend::start(WORKERS, ms(WORK_MS));
        load(&place, backend.addr(), light, ms(size.unloaded_ms), opts)
    };
    let unloaded_check = Check::expect(
        unloaded.sent > 0 && unloaded.ok == unloaded.sent,
        format!(
            "unloaded: {} of {} requests answered",
            unloaded.ok, unloaded.sent
        ),
    );
    let measure = Measure {
        place: &place,
        daemon: &daemon,
        maps: &maps,
        size,
        opts,
        unloaded_p99_ns: unloaded.ok_p99_ns,
    };
    let variants = VARIANTS
        .iter()
        .zip(&mut backends)
        .map(|(v, slot)| {
            // Dropped once measured: its queue goes with it.
            let backend = slot.take().expect("each backend once");
            measure.variant(v, &backend)
        })
        .collect();
    Results {
        size,
        workers: WORKERS,
        work_ms: WORK_MS,
        capacity_per_s: capacity_per_s(),
        offered_per_s: OVERLOAD * capacity_per_s(),
        unloaded,
        variants,
        unloaded_check,
    }
}

/// What every variant is measured with.
struct Measure<'a> {
    place: &'a Place<'a>,
    daemon: &'a Daemon,
    maps: &'a Maps,
    size: Size,
    opts: LoadOptions,
    unloaded_p99_ns: u64,
}

impl Measure<'_> {
    fn variant(&self, v: &Variant, backend: &Backend) -> VariantResult {
        let (size, addr) = (self.size, backend.addr());
        eprintln!("bench: adaptive limits: {}", v.name);
        let warm_up = load(
            self.place,
            addr,
            LIGHT * capacity_per_s(),
            ms(size.warm_up_ms),
            self.opts,
        );
        let settled_opts = LoadOptions {
            settled_from: ms(size.settle_ms),
            ..self.opts
        };
        let start = Instant::now();
        let (overload, limits) = thread::scope(|s| {
            let running = s.spawn(|| {
                load(
                    self.place,
                    addr,
                    OVERLOAD * capacity_per_s(),
                    ms(size.overload_ms),
                    settled_opts,
                )
            });
            thread::sleep(FORK_FIRST);
            let mut limits = Vec::new();
            while !running.is_finished() {
                let at = start.elapsed().as_millis() as u64;
                if let Some(limit) = self.daemon.status_of(addr)["limit"].as_u64() {
                    limits.push((at, limit));
                }
                thread::sleep(POLL);
            }
            (running.join().expect("the load"), limits)
        });
        let in_window: Vec<u64> = limits
            .iter()
            .filter(|(at, _)| (size.settle_ms..size.overload_ms).contains(at))
            .map(|(_, l)| *l)
            .collect();
        let settled = &overload.settled;
        let window_s = (size.overload_ms - size.settle_ms) as f64 / 1e3;
        let goodput_per_s = settled.ok as f64 / window_s;
        let check = self.check(v, addr, &warm_up, &overload, !in_window.is_empty());
        VariantResult {
            name: v.name,
            goodput_per_s,
            goodput_vs_capacity: goodput_per_s / capacity_per_s(),
            p99_vs_unloaded: if settled.ok == 0 {
                f64::NAN
            } else {
                crate::stats::ratio(self.unloaded_p99_ns, settled.ok_p99_ns)
            },
            queued_max: backend.stats().queued_max,
            settled_limit: Spread::of(&in_window),
            limits,
            warm_up,
            overload,
            check,
        }
    }

    /// Each variant did what it claims, read back from the kernel and the
    /// daemon: refusals came from its cap (the kernel counted each one), the
    /// backend answered the warm-up whole, the generator started every
    /// request due, an auto limit was learnt.
    fn check(
        &self,
        v: &Variant,
        addr: SocketAddr,
        warm_up: &Report,
        overload: &Report,
        limit_read: bool,
    ) -> Check {
        let state = self
            .maps
            .dests
            .get(&enforcer_tests::key(addr))
            .expect("reading DESTS");
        let refused = warm_up.refused + overload.refused;
        let common =
            warm_up.sent > 0 && warm_up.ok == warm_up.sent && warm_up.shed + overload.shed == 0;
        let mut what = format!(
            "{}: warm-up {} of {} answered, {} requests not started (in flight at the bound)",
            v.name,
            warm_up.ok,
            warm_up.sent,
            warm_up.shed + overload.shed
        );
        let ok = match (v.cap, state) {
            (Cap::None, None) => {
                what += &format!("; untracked in the kernel, {refused} refusals");
                common && refused == 0
            }
            (_, None) => {
                what += "; **not tracked in the kernel**";
                false
            }
            (cap, Some(s)) => {
                let policy = self.daemon.status_of(addr)["policy"].clone();
                what += &format!(
                    "; the kernel counted {} bulkhead and {} circuit rejections, the client saw \
                     {refused} refusals; policy {policy}",
                    s.counters.rejected_bulkhead, s.counters.rejected_circuit
                );
                let auto_ok = match cap {
                    Cap::Auto(_) => {
                        what += if limit_read {
                            ", a learnt limit read in the settled window"
                        } else {
                            ", **no learnt limit read in the settled window**"
                        };
                        limit_read
                    }
                    _ => true,
                };
                common
                    && auto_ok
                    && !matches!(cap, Cap::None)
                    && policy == v.policy
                    && s.counters.rejected_bulkhead == refused
                    && s.counters.rejected_circuit == 0
            }
        };
        Check::expect(ok, what)
    }
}

impl Results {
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        std::iter::once(&self.unloaded_check).chain(self.variants.iter().map(|v| &v.check))
    }
}

//! The Prometheus exporter: `/metrics`, `/healthz` (the process answers) and
//! `/readyz` (programs attached, maps readable). Kernel counters are read when
//! scraped, never polled; per-destination series are bounded by
//! `daemon.max_series`, the rest fold into one `dest="other"` series. A
//! destination's series name its network namespace (`netns`: the inode, or
//! `unknown`): one label value per destination, so it adds no series.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use enforcer_common::{counters::GlobalCounter, dest::DestState, workload::policy_scope};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, text},
    registry::Registry,
};

use super::{
    Daemon, Shared, classes::ClassNames, learn::SharedLearning, lock, series::Top,
    view::PolicyNames,
};
use crate::{
    adaptive::Change,
    api::{BaselineView, WorkloadMatch},
};
use crate::{bpf::ProgramStats, http::stream, netns, workload::Owner};

mod destinations;
mod totals;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics listener's routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(|State(s): State<Shared>| scrape(s)))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<Shared>| async move { ready(&lock(&s)) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics, /healthz or /readyz\n") })
        .with_state(shared)
}

/// Ready when the policies are written and the maps answer.
fn ready(d: &Daemon) -> Response {
    match (d.ready, d.enforcer.maps().config.get()) {
        (true, Ok(_)) => "ready\n".into_response(),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
        (_, Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("maps unreadable: {e}\n"),
        )
            .into_response(),
    }
}

/// A scrape: read on a blocking thread ([`Raw::read`]), the series built and
/// encoded as the client reads them.
pub async fn scrape(shared: Shared) -> Response {
    let raw = match tokio::task::spawn_blocking(move || Raw::read(&shared)).await {
        Ok(raw) => raw,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the maps: {e}\n"),
            )
                .into_response();
        }
    };
    let mut response = stream::streamed(CONTENT_TYPE, move |w| {
        encode(Snapshot::from(raw), w).map_err(std::io::Error::other)
    });
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// One destination's series, or the sum of those past the series limit.
#[derive(Debug, Clone)]
struct Series {
    dest: String,
    netns: String,
    policy: String,
    /// `None` for the folded series.
    state: Option<u32>,
    cap: Option<u32>,
    /// The cap learnt under an adaptive policy.
    limit: Option<u32>,
    /// Its last move's figures.
    learnt: Option<Change>,
    /// The learned normal, under a policy that learns one.
    baseline: Option<BaselineView>,
    s: DestState,
}

/// The daemon-wide figures of a scrape, read under the daemon's lock and
/// shown as read.
#[derive(Debug)]
struct Totals {
    globals: Vec<(GlobalCounter, u64)>,
    policies: Vec<PolicyFigures>,
    programs: Vec<ProgramStats>,
    /// Kernel events read, by kind.
    events: Vec<(String, u64)>,
    paused: bool,
    healers: usize,
    healing_probes: [(&'static str, u64); 2],
    healing_skipped: Vec<(&'static str, u64)>,
    /// Outliers ejected, by policy and reason: every reason of every policy
    /// that detects outliers (0 until one is), and any other counted.
    ejections: Vec<(String, &'static str, u64)>,
    /// Chaos experiments running, connects affected and aborts.
    chaos: super::chaos::Figures,
    /// Each policy's workload patterns and their matches now, by policy.
    policy_workloads: Vec<(String, WorkloadMatch)>,
    /// Each class's, by class.
    class_workloads: Vec<(String, WorkloadMatch)>,
    /// How many entries each kernel table that fills with traffic holds at
    /// most, by table; one that cannot be read is left out.
    capacities: Vec<(&'static str, u32)>,
    /// Flows in the packet plane's table at its last sweep.
    flows: u64,
}

/// Each of `owner`'s workload patterns with its matches now (`counts`).
fn workload_figures(
    owner: &str,
    patterns: &[crate::workload::Pattern],
    counts: Option<&[usize]>,
) -> impl Iterator<Item = (String, WorkloadMatch)> {
    WorkloadMatch::list(patterns, counts)
        .into_iter()
        .map(move |w| (owner.to_owned(), w))
}

/// A running policy's counts in the kernel.
#[derive(Debug)]
struct PolicyFigures {
    name: String,
    tracked: u64,
    open: u64,
    guard_refusals: u64,
}

impl Totals {
    fn read(d: &Daemon) -> Self {
        let mut events: Vec<(String, u64)> = d
            .event_counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        events.sort();
        Self {
            globals: GlobalCounter::ALL
                .iter()
                .map(|&c| (c, d.enforcer.maps().counters.get(c).unwrap_or(0)))
                .collect(),
            policies: d
                .policies
                .iter()
                .map(|p| {
                    let st = d.enforcer.maps().policy_stats.get(p.id).unwrap_or_default();
                    PolicyFigures {
                        name: p.spec.name.clone(),
                        tracked: st.tracked,
                        open: st.open,
                        guard_refusals: st.guard_refusals,
                    }
                })
                .collect(),
            // Without the statistics on (`daemon.bpf_run_stats`) every run
            // count would read 0: no series rather than false ones.
            programs: if d.run_stats.is_some() {
                d.enforcer.program_stats(Some(&d.pins))
            } else {
                Vec::new()
            },
            events,
            paused: d.enforcer.maps().config.get().is_ok_and(|c| c.paused != 0),
            healers: d.healing.running(),
            healing_probes: d.healing.probes_total(),
            healing_skipped: d
                .healing
                .skipped_total()
                .map(|(why, n)| (why.name(), n))
                .collect(),
            ejections: {
                let mut all = d.ejections.clone();
                for p in d.policies.iter().filter(|p| p.spec.outlier.is_some()) {
                    for reason in crate::outlier::REASONS {
                        all.entry((p.spec.name.clone(), reason)).or_default();
                    }
                }
                let mut all: Vec<_> = all.into_iter().map(|((p, r), n)| (p, r, n)).collect();
                all.sort();
                all
            },
            chaos: d.chaos.figures(),
            policy_workloads: d
                .policies
                .iter()
                .flat_map(|p| {
                    let owner = Owner::Scope(policy_scope(p.id));
                    workload_figures(&p.spec.name, &p.spec.workloads, d.workloads.counts(owner))
                })
                .collect(),
            class_workloads: d
                .classes
                .iter()
                .flat_map(|c| {
                    let owner = Owner::Class(c.spec.priority);
                    workload_figures(&c.spec.name, &c.spec.workloads, d.workloads.counts(owner))
                })
                .collect(),
            capacities: {
                let maps = d.enforcer.maps();
                [
                    ("dests", maps.dests.capacity()),
                    ("conns", maps.conns.capacity()),
                    ("flows", maps.flows.capacity()),
                ]
                .into_iter()
                .filter_map(|(table, n)| Some((table, n.ok()?)))
                .collect()
            },
            flows: d.flows_tracked,
        }
    }
}

/// What a scrape reads: the destinations that get series of their own (the
/// rest summed as read), without the daemon's lock (a scrape of a large map
/// must not stall the controller, healing or the API), then copies of the
/// daemon's small tables, under it.
struct Raw {
    top: Top,
    names: PolicyNames,
    namespaces: Arc<netns::Registry>,
    learning: SharedLearning,
    /// The running classes' names, by priority.
    classes: ClassNames,
    totals: Totals,
}

impl Raw {
    fn read(shared: &Shared) -> Self {
        let (dests, limit) = {
            let d = lock(shared);
            (
                d.enforcer.maps().dests.clone(),
                d.config.daemon.max_series as usize,
            )
        };
        let mut top = Top::new(limit);
        if let Err(e) = dests.sample(|k, s| top.offer(k, s)) {
            tracing::warn!("scrape: reading the destinations: {e}");
        }
        let d = lock(shared);
        Self {
            top,
            names: PolicyNames::of(&d),
            namespaces: d.namespaces.clone(),
            learning: d.learning.clone(),
            classes: ClassNames::of(&d.classes),
            totals: Totals::read(&d),
        }
    }
}

/// Everything a scrape shows.
#[derive(Debug)]
struct Snapshot {
    series: Vec<Series>,
    tracked: u64,
    /// Admitted connects not ended yet, over every destination (the folded
    /// ones too): the records the connection table holds.
    connections: u64,
    /// Destinations the scans forgot, by reason.
    evicted: Vec<(&'static str, u64)>,
    /// Count corrections by policy: every running one, and any other corrected.
    corrections: Vec<(String, u64)>,
    classes: ClassNames,
    totals: Totals,
}

impl From<Raw> for Snapshot {
    fn from(raw: Raw) -> Self {
        let tracked = raw.top.tracked();
        let (own, other) = raw.top.finish();
        let learning = raw.learning.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<Series> = own
            .iter()
            .map(|(k, s)| Series {
                dest: k.socket_addr().to_string(),
                netns: raw.namespaces.label(k.netns).metric(),
                policy: raw.names.name(s.policy_id).to_owned(),
                state: Some(s.breaker.state),
                cap: raw.names.cap(s.policy_id, s.breaker.limit),
                limit: raw.names.limit(s.policy_id, s.breaker.limit),
                learnt: learning.last_of(k).copied(),
                baseline: raw.names.baseline(s.policy_id, &s.baseline),
                s: *s,
            })
            .collect();
        drop(learning);
        if let Some(other) = other {
            series.push(Series {
                dest: "other".into(),
                netns: "other".into(),
                policy: "other".into(),
                state: None,
                cap: None,
                limit: None,
                learnt: None,
                baseline: None,
                s: other,
            });
        }
        let connections = series.iter().map(|s| u64::from(s.s.breaker.active)).sum();
        let scans = super::scan::totals();
        let evicted = super::scan::Reason::ALL
            .iter()
            .map(|r| (r.label(), scans.evicted.get(r).copied().unwrap_or(0)))
            .collect();
        let mut corrections = scans.corrections;
        for policy in &raw.totals.policies {
            corrections.entry(policy.name.clone()).or_default();
        }
        Self {
            series,
            tracked,
            connections,
            evicted,
            corrections: corrections.into_iter().collect(),
            classes: raw.classes,
            totals: raw.totals,
        }
    }
}

/// Writes `snapshot` as text. The latency histograms are half of a large
/// scrape's text: they are encoded on a second thread while this one
/// encodes the rest, and written after it.
fn encode(snapshot: Snapshot, w: &mut impl std::fmt::Write) -> std::fmt::Result {
    let snapshot = Arc::new(snapshot);
    let registry = |part| {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Part {
            snapshot: snapshot.clone(),
            part,
        }));
        registry
    };
    let (latency, rest) = (registry(Families::Latency), registry(Families::Rest));
    std::thread::scope(|scope| {
        let latency = scope.spawn(move || {
            let mut text = String::new();
            text::encode_registry(&mut text, &latency).map(|()| text)
        });
        text::encode_registry(w, &rest)?;
        w.write_str(&latency.join().map_err(|_| std::fmt::Error)??)?;
        text::encode_eof(w)
    })
}

/// Which of a snapshot's families a [`Part`] encodes.
#[derive(Debug, Clone, Copy)]
enum Families {
    /// The per-destination latency histograms.
    Latency,
    /// Everything else.
    Rest,
}

#[derive(Debug)]
struct Part {
    snapshot: Arc<Snapshot>,
    part: Families,
}

impl Collector for Part {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snapshot;
        match self.part {
            Families::Latency => destinations::encode_latency(&s.series, &mut enc),
            Families::Rest => {
                destinations::encode(&s.series, &s.classes, &mut enc)?;
                totals::encode(s, &mut enc)
            }
        }
    }
}

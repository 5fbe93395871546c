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
use enforcer_common::{
    counters::GlobalCounter,
    dest::{DestState, LATENCY_BUCKETS, Latency},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use super::{Daemon, Shared, lock, series::Top, view::PolicyNames};
use crate::{bpf::ProgramStats, http::stream, netns};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics listener's routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Shared>| async move { scrape(&s) }),
        )
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

/// A scrape: the maps are read under the daemon's lock, the series built
/// and encoded after it is released, as the client reads them.
pub fn scrape(shared: &Shared) -> Response {
    let raw = Raw::read(&lock(shared));
    let mut response = stream::streamed(CONTENT_TYPE, move |w| {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot::from(raw)));
        prometheus_client::encoding::text::encode(w, &registry).map_err(std::io::Error::other)
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
    s: DestState,
}

/// The daemon-wide figures of a scrape, read under the daemon's lock and
/// shown as read.
#[derive(Debug)]
struct Totals {
    globals: Vec<(GlobalCounter, u64)>,
    /// Per running policy: name, tracked, open, guard refusals.
    policies: Vec<(String, u64, u64, u64)>,
    programs: Vec<ProgramStats>,
    /// Kernel events read, by kind.
    events: Vec<(String, u64)>,
    paused: bool,
    healers: usize,
    healing_probes: [(&'static str, u64); 2],
    healing_skipped: Vec<(&'static str, u64)>,
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
                    (p.spec.name.clone(), st.tracked, st.open, st.guard_refusals)
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
        }
    }
}

/// What a scrape reads under the daemon's lock: the destinations that get
/// series of their own (the rest summed as read), and copies of the
/// daemon's small tables.
struct Raw {
    top: Top,
    names: PolicyNames,
    namespaces: Arc<netns::Registry>,
    totals: Totals,
}

impl Raw {
    fn read(d: &Daemon) -> Self {
        let mut top = Top::new(d.config.daemon.max_series as usize);
        if let Err(e) = d.enforcer.maps().dests.each(|k, s| top.offer(k, s)) {
            tracing::warn!("scrape: reading the destinations: {e}");
        }
        Self {
            top,
            names: PolicyNames::of(d),
            namespaces: d.namespaces.clone(),
            totals: Totals::read(d),
        }
    }
}

/// Everything a scrape shows.
#[derive(Debug)]
struct Snapshot {
    series: Vec<Series>,
    tracked: u64,
    /// Destinations the scans forgot, by reason.
    evicted: Vec<(&'static str, u64)>,
    /// Count corrections by policy: every running one, and any other corrected.
    corrections: Vec<(String, u64)>,
    totals: Totals,
}

impl From<Raw> for Snapshot {
    fn from(raw: Raw) -> Self {
        let tracked = raw.top.tracked();
        let (own, other) = raw.top.finish();
        let mut series: Vec<Series> = own
            .iter()
            .map(|(k, s)| Series {
                dest: k.socket_addr().to_string(),
                netns: raw.namespaces.label(k.netns).metric(),
                policy: raw.names.name(s.policy_id).to_owned(),
                state: Some(s.breaker.state),
                cap: raw.names.cap(s.policy_id),
                s: *s,
            })
            .collect();
        if let Some(other) = other {
            series.push(Series {
                dest: "other".into(),
                netns: "other".into(),
                policy: "other".into(),
                state: None,
                cap: None,
                s: other,
            });
        }
        let scans = super::scan::totals();
        let evicted = super::scan::Reason::ALL
            .iter()
            .map(|r| (r.label(), scans.evicted.get(r).copied().unwrap_or(0)))
            .collect();
        let mut corrections = scans.corrections;
        for (name, ..) in &raw.totals.policies {
            corrections.entry(name.clone()).or_default();
        }
        Self {
            series,
            tracked,
            evicted,
            corrections: corrections.into_iter().collect(),
            totals: raw.totals,
        }
    }
}

/// A histogram already bucketed by the kernel.
#[derive(Debug)]
struct Buckets<'a>(&'a Latency);

impl EncodeMetric for Buckets<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let le = if i + 1 == LATENCY_BUCKETS {
                    f64::INFINITY
                } else {
                    Latency::upper_us(i) as f64 / 1e6
                };
                (le, *n)
            })
            .collect();
        let count = self.0.buckets.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_ns as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Reads one counter of a destination.
type Get = fn(&DestState) -> u64;

fn labels(s: &Series) -> Labels<'_> {
    vec![
        ("dest", s.dest.as_str()),
        ("netns", s.netns.as_str()),
        ("policy", s.policy.as_str()),
    ]
}

fn with<'a>(s: &'a Series, key: &'static str, value: &'a str) -> Labels<'a> {
    let mut l = labels(s);
    l.push((key, value));
    l
}

/// One counter per label value, under one descriptor.
fn counter_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        m.encode_family(&vec![(label, value)])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Counters per destination.
        let counters: [(&str, &str, Get); 8] = [
            ("connect_attempts", "connect() calls admitted", |s| {
                s.counters.attempts
            }),
            ("connect_successes", "handshakes completed", |s| {
                s.counters.successes
            }),
            ("connect_slow", "handshakes slower than slow_connect", |s| {
                s.counters.slow
            }),
            (
                "connect_abandoned",
                "connects closed by the application mid-handshake",
                |s| s.counters.abandoned,
            ),
            (
                "connect_local_errors",
                "connects that failed on this host before the destination had a say",
                |s| s.counters.local_errors,
            ),
            ("probes", "half-open probes admitted", |s| s.counters.probes),
            (
                "probes_reclaimed",
                "half-open probes that outlived their bound (the destination reopened)",
                |s| s.counters.probes_reclaimed,
            ),
            ("trips", "transitions to OPEN", |s| s.counters.trips),
        ];
        for (name, help, get) in counters {
            let name = format!("enforcer_{name}");
            let mut m = enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for s in &self.series {
                m.encode_family(&labels(s))?
                    .encode_counter::<NoLabelSet, _, u64>(&get(&s.s), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "enforcer_connect_failures",
            "failed connects by reason",
            None,
            MetricType::Counter,
        )?;
        for s in &self.series {
            let c = &s.s.counters;
            for (reason, v) in [
                ("refused", c.failures_refused),
                ("timeout", c.failures_timeout),
                ("unreachable", c.failures_unreachable),
            ] {
                m.encode_family(&with(s, "reason", reason))?
                    .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
            }
        }
        for (name, help, circuit, bulkhead) in [
            (
                "rejections",
                "connects rejected, by cause",
                (|c: &DestState| c.counters.rejected_circuit) as Get,
                (|c: &DestState| c.counters.rejected_bulkhead) as Get,
            ),
            (
                "would_reject",
                "observe mode: connects that would have been rejected",
                |c| c.counters.would_reject_circuit,
                |c| c.counters.would_reject_bulkhead,
            ),
        ] {
            let name = format!("enforcer_{name}");
            let mut m = enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for s in &self.series {
                m.encode_family(&with(s, "cause", "circuit"))?
                    .encode_counter::<NoLabelSet, _, u64>(&circuit(&s.s), None)?;
                m.encode_family(&with(s, "cause", "bulkhead"))?
                    .encode_counter::<NoLabelSet, _, u64>(&bulkhead(&s.s), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "enforcer_destination_state",
            "0 closed, 1 open, 2 half-open",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.series {
            if let Some(state) = s.state {
                m.encode_family(&labels(s))?.encode_gauge(&(state as i64))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "enforcer_active_connections",
            "connections holding a slot",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.series {
            m.encode_family(&labels(s))?
                .encode_gauge(&(s.s.breaker.active as i64))?;
        }
        let mut m = enc.encode_descriptor(
            "enforcer_remaining_connections",
            "slots left under max_connections",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.series {
            if let Some(cap) = s.cap {
                m.encode_family(&labels(s))?
                    .encode_gauge(&(cap as i64 - s.s.breaker.active as i64).max(0))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "enforcer_connect_latency_seconds",
            "admission to handshake",
            None,
            MetricType::Histogram,
        )?;
        for s in &self.series {
            Buckets(&s.s.latency).encode(m.encode_family(&labels(s))?)?;
        }
        // Totals.
        enc.encode_descriptor(
            "enforcer_tracked_destinations",
            "destinations in the map",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.tracked)?;
        enc.encode_descriptor(
            "enforcer_paused",
            "1 while the global switch passes everything",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&i64::from(self.totals.paused))?;
        for (counter, v) in &self.totals.globals {
            let name = format!("enforcer_kernel_{}", counter.name());
            enc.encode_descriptor(&name, "kernel hot-path counter", None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(v, None)?;
        }
        counter_family(
            &mut enc,
            "enforcer_events",
            "kernel transition events read",
            "kind",
            self.totals
                .events
                .iter()
                .map(|(kind, n)| (kind.as_str(), *n)),
        )?;
        let mut tracked = enc.encode_descriptor(
            "enforcer_policy_tracked_destinations",
            "destinations per policy",
            None,
            MetricType::Gauge,
        )?;
        for (name, t, _, _) in &self.totals.policies {
            tracked
                .encode_family(&vec![("policy", name.as_str())])?
                .encode_gauge(t)?;
        }
        let mut open = enc.encode_descriptor(
            "enforcer_policy_open_destinations",
            "destinations not CLOSED per policy",
            None,
            MetricType::Gauge,
        )?;
        for (name, _, o, _) in &self.totals.policies {
            open.encode_family(&vec![("policy", name.as_str())])?
                .encode_gauge(o)?;
        }
        counter_family(
            &mut enc,
            "enforcer_policy_guard_refusals",
            "trips refused by max_open_percent",
            "policy",
            self.totals
                .policies
                .iter()
                .map(|(name, _, _, r)| (name.as_str(), *r)),
        )?;
        counter_family(
            &mut enc,
            "enforcer_dests_evicted",
            "destinations forgotten by the daemon's scans, by reason",
            "reason",
            self.evicted.iter().copied(),
        )?;
        counter_family(
            &mut enc,
            "enforcer_policy_count_corrections",
            "policy tracked/open counts corrected to the destination map",
            "policy",
            self.corrections.iter().map(|(name, n)| (name.as_str(), *n)),
        )?;
        enc.encode_descriptor(
            "enforcer_healers",
            "destinations being probed by healing",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(self.totals.healers as i64))?;
        counter_family(
            &mut enc,
            "enforcer_healing_probes",
            "healing probes made, by result",
            "result",
            self.totals.healing_probes,
        )?;
        counter_family(
            &mut enc,
            "enforcer_healing_skipped",
            "open destinations of healing policies passed over, by reason (counted when a destination's reason changes, not every tick)",
            "reason",
            self.totals.healing_skipped.iter().copied(),
        )?;
        if self.totals.programs.is_empty() {
            return Ok(());
        }
        counter_family(
            &mut enc,
            "enforcer_bpf_program_runs",
            "program runs (BPF_ENABLE_STATS, daemon.bpf_run_stats)",
            "program",
            self.totals.programs.iter().map(|p| (p.name, p.run_count)),
        )?;
        let mut time = enc.encode_descriptor(
            "enforcer_bpf_program_run_seconds",
            "time spent in the program",
            None,
            MetricType::Counter,
        )?;
        for p in &self.totals.programs {
            time.encode_family(&vec![("program", p.name)])?
                .encode_counter::<NoLabelSet, _, f64>(&p.run_time.as_secs_f64(), None)?;
        }
        Ok(())
    }
}

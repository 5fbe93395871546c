//! The per-destination families: one series per destination of the scrape
//! (at most `daemon.max_series`, plus `dest="other"`), each family a row of a
//! table.

use enforcer_common::dest::{DestState, LATENCY_BUCKETS, Latency};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::Series;

/// Reads one counter of a destination.
type Get = fn(&DestState) -> u64;

/// Counters with the destination's labels only.
const COUNTERS: [(&str, &str, Get); 8] = [
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

/// A counter split by one more label.
struct Split {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    parts: &'static [(&'static str, Get)],
}

const SPLIT_COUNTERS: [Split; 3] = [
    Split {
        name: "connect_failures",
        help: "failed connects by reason",
        label: "reason",
        parts: &[
            ("refused", |s| s.counters.failures_refused),
            ("timeout", |s| s.counters.failures_timeout),
            ("unreachable", |s| s.counters.failures_unreachable),
        ],
    },
    Split {
        name: "rejections",
        help: "connects rejected, by cause",
        label: "cause",
        parts: &[
            ("circuit", |s| s.counters.rejected_circuit),
            ("bulkhead", |s| s.counters.rejected_bulkhead),
        ],
    },
    Split {
        name: "would_reject",
        help: "observe mode: connects that would have been rejected",
        label: "cause",
        parts: &[
            ("circuit", |s| s.counters.would_reject_circuit),
            ("bulkhead", |s| s.counters.would_reject_bulkhead),
        ],
    },
];

/// Reads one gauge of a series; `None` leaves the series out (the folded
/// series has no state, a destination without a cap no remaining slots).
type Gauge = fn(&Series) -> Option<i64>;

const GAUGES: [(&str, &str, Gauge); 4] = [
    ("destination_state", "0 closed, 1 open, 2 half-open", |s| {
        s.state.map(i64::from)
    }),
    ("active_connections", "connections holding a slot", |s| {
        Some(i64::from(s.s.breaker.active))
    }),
    (
        "remaining_connections",
        "slots left under the cap (max_connections, or the learnt limit)",
        |s| {
            s.cap
                .or(s.limit)
                .map(|cap| (i64::from(cap) - i64::from(s.s.breaker.active)).max(0))
        },
    ),
    (
        "adaptive_limit",
        "the cap learnt for the destination (max_connections = \"auto\")",
        |s| s.limit.map(i64::from),
    ),
];

/// Reads one gauge of seconds; `None` leaves the series out.
type Seconds = fn(&Series) -> Option<std::time::Duration>;

/// What an adaptive limit's last move was made from.
const SIGNAL_GAUGES: [(&str, &str, Seconds); 2] = [
    (
        "adaptive_latency_seconds",
        "the policy's signal (handshake, response or lifetime), mean of the last interval",
        |s| s.learnt.and_then(|c| c.sample),
    ),
    (
        "adaptive_baseline_seconds",
        "the signal's unloaded latency (lowest interval mean of the baseline window)",
        |s| s.learnt.and_then(|c| c.baseline),
    ),
];

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn labels(s: &Series) -> Labels<'_> {
    vec![
        ("dest", s.dest.as_str()),
        ("netns", s.netns.as_str()),
        ("policy", s.policy.as_str()),
    ]
}

/// Every per-destination family of `series`.
pub fn encode(series: &[Series], enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    for (name, help, get) in COUNTERS {
        let name = format!("enforcer_{name}");
        let mut m = enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
        for s in series {
            m.encode_family(&labels(s))?
                .encode_counter::<NoLabelSet, _, u64>(&get(&s.s), None)?;
        }
    }
    for split in &SPLIT_COUNTERS {
        let name = format!("enforcer_{}", split.name);
        let mut m = enc.encode_descriptor(&name, split.help, None, MetricType::Counter)?;
        for s in series {
            for (value, get) in split.parts {
                let mut l = labels(s);
                l.push((split.label, value));
                m.encode_family(&l)?
                    .encode_counter::<NoLabelSet, _, u64>(&get(&s.s), None)?;
            }
        }
    }
    for (name, help, get) in GAUGES {
        let name = format!("enforcer_{name}");
        let mut m = enc.encode_descriptor(&name, help, None, MetricType::Gauge)?;
        for s in series {
            if let Some(v) = get(s) {
                m.encode_family(&labels(s))?.encode_gauge(&v)?;
            }
        }
    }
    for (name, help, get) in SIGNAL_GAUGES {
        let name = format!("enforcer_{name}");
        let mut m = enc.encode_descriptor(&name, help, None, MetricType::Gauge)?;
        for s in series {
            if let Some(v) = get(s) {
                m.encode_family(&labels(s))?
                    .encode_gauge(&v.as_secs_f64())?;
            }
        }
    }
    let mut m = enc.encode_descriptor(
        "enforcer_connect_latency_seconds",
        "admission to handshake",
        None,
        MetricType::Histogram,
    )?;
    for s in series {
        Buckets(&s.s.latency).encode(m.encode_family(&labels(s))?)?;
    }
    Ok(())
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

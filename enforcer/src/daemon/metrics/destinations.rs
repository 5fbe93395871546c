//! The per-destination families: one series per destination of the scrape
//! (at most `daemon.max_series`, plus `dest="other"`), each family a row of a
//! table; with priority classes on, the class families add one series per
//! running class (at most four) to each.

use enforcer_common::{
    class::ClassCounts,
    dest::{DestState, LATENCY_BUCKETS, Latency},
};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::Series;
use crate::daemon::classes::ClassNames;

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

/// Reads one gauge of a learned figure (seconds or a share); `None` leaves
/// the series out.
type Learned = fn(&Series) -> Option<f64>;

/// What an adaptive limit's last move was made from, and what a learned
/// threshold is made of.
const LEARNED_GAUGES: [(&str, &str, Learned); 6] = [
    (
        "adaptive_latency_seconds",
        "the policy's signal (handshake, response or lifetime), mean of the last interval",
        |s| seconds(s.learnt.and_then(|c| c.sample)),
    ),
    (
        "adaptive_baseline_seconds",
        "the signal's unloaded latency (lowest interval mean of the baseline window)",
        |s| seconds(s.learnt.and_then(|c| c.baseline)),
    ),
    (
        "baseline_failure_share",
        "the destination's learned normal failure share per window (failure_rate or slow_connect = \"auto\")",
        |s| s.baseline.map(|b| b.failure_share),
    ),
    (
        "baseline_connect_p99_seconds",
        "the destination's learned normal 99th percentile handshake",
        |s| seconds(s.baseline.and_then(|b| b.connect_p99)),
    ),
    (
        "trip_failure_rate",
        "the failure share that trips the destination now (learned, or failure_rate_max while its baseline is young)",
        |s| s.baseline.map(|b| b.trip_rate),
    ),
    (
        "slow_connect_threshold_seconds",
        "a handshake slower than this counts as a failure now (learned)",
        |s| seconds(s.baseline.and_then(|b| b.slow_connect)),
    ),
];

fn seconds(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// Reads one count of a class at a destination.
type ClassGet = fn(&ClassCounts) -> u64;

/// Per class (label `class`): only while classes are on.
const CLASS_FAMILIES: [(&str, &str, MetricType, ClassGet); 3] = [
    (
        "class_active_connections",
        "connections of the priority class holding a slot",
        MetricType::Gauge,
        |c| u64::from(c.active),
    ),
    (
        "class_admitted",
        "connects of the priority class admitted",
        MetricType::Counter,
        |c| c.admitted,
    ),
    (
        "class_shed",
        "connects of the priority class refused by the class rules (its share used and nothing left to borrow, or shed while the destination degrades)",
        MetricType::Counter,
        |c| c.shed,
    ),
];

/// A series' labels, with `N` more of a family's own. An array, not a
/// `Vec`: a large scrape writes tens of thousands of lines.
type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

fn labels(s: &Series) -> Labels<'_, 3> {
    [
        ("dest", s.dest.as_str()),
        ("netns", s.netns.as_str()),
        ("policy", s.policy.as_str()),
    ]
}

/// `s`'s labels and one more.
fn labels_and<'a>(s: &'a Series, label: &'static str, value: &'a str) -> Labels<'a, 4> {
    let [dest, netns, policy] = labels(s);
    [dest, netns, policy, (label, value)]
}

/// Every per-destination family of `series` but the latency histogram; the
/// class families for the running `classes` (none while classes are off).
pub fn encode(
    series: &[Series],
    classes: &ClassNames,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
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
                m.encode_family(&labels_and(s, split.label, value))?
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
    for (name, help, get) in LEARNED_GAUGES {
        let name = format!("enforcer_{name}");
        let mut m = enc.encode_descriptor(&name, help, None, MetricType::Gauge)?;
        for s in series {
            if let Some(v) = get(s) {
                m.encode_family(&labels(s))?.encode_gauge(&v)?;
            }
        }
    }
    if classes.enabled() {
        for (name, help, kind, get) in CLASS_FAMILIES {
            let name = format!("enforcer_{name}");
            let mut m = enc.encode_descriptor(&name, help, None, kind)?;
            for s in series {
                for (priority, class) in classes.iter() {
                    let v = get(&s.s.classes[priority as usize]);
                    let l = labels_and(s, "class", class);
                    let mut family = m.encode_family(&l)?;
                    if kind == MetricType::Gauge {
                        family.encode_gauge(&(v as i64))?;
                    } else {
                        family.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The latency histogram of each of `series`: about half of a large scrape's
/// text, so a family of its own ([`super::encode`] writes it on a second
/// thread).
pub fn encode_latency(
    series: &[Series],
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
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

#[cfg(test)]
mod tests {
    use enforcer_common::class::Priority;
    use prometheus_client::{collector::Collector, registry::Registry};

    use super::*;

    #[derive(Debug)]
    struct Families(Vec<Series>, ClassNames);

    impl Collector for Families {
        fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode(&self.0, &self.1, &mut enc)
        }
    }

    fn scrape(classes: ClassNames) -> String {
        let mut s = DestState::default();
        s.breaker.active = 3;
        s.classes[Priority::Critical as usize].active = 2;
        s.classes[Priority::Critical as usize].admitted = 7;
        s.classes[Priority::Sheddable as usize].active = 1;
        s.classes[Priority::Sheddable as usize].admitted = 4;
        s.classes[Priority::Sheddable as usize].shed = 5;
        let series = Series {
            dest: "10.0.0.5:5432".into(),
            netns: "4026531840".into(),
            policy: "db".into(),
            state: Some(0),
            cap: Some(4),
            limit: None,
            learnt: None,
            baseline: Some(crate::api::BaselineView {
                windows: 9,
                warm: true,
                failure_share: 0.03,
                spread: 0.01,
                connect_p99: Some(std::time::Duration::from_micros(400)),
                trip_rate: 0.06,
                slow_connect: Some(std::time::Duration::from_millis(1)),
            }),
            s,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(vec![series], classes)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_learned_normal_and_its_thresholds_are_gauges() {
        let text = scrape(ClassNames::default());
        let labels = "{dest=\"10.0.0.5:5432\",netns=\"4026531840\",policy=\"db\"}";
        for line in [
            format!("enforcer_baseline_failure_share{labels} 0.03"),
            format!("enforcer_baseline_connect_p99_seconds{labels} 0.0004"),
            format!("enforcer_trip_failure_rate{labels} 0.06"),
            format!("enforcer_slow_connect_threshold_seconds{labels} 0.001"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn each_running_class_has_its_series_and_none_without_classes() {
        let names = ClassNames([
            Some("checkout".into()),
            None,
            Some("rest".into()),
            Some("batch".into()),
        ]);
        let text = scrape(names);
        let labels = |class: &str| {
            format!(
                "{{dest=\"10.0.0.5:5432\",netns=\"4026531840\",policy=\"db\",class=\"{class}\"}}"
            )
        };
        for line in [
            "# TYPE enforcer_class_active_connections gauge".to_owned(),
            "# TYPE enforcer_class_admitted counter".to_owned(),
            "# TYPE enforcer_class_shed counter".to_owned(),
            format!("enforcer_class_active_connections{} 2", labels("checkout")),
            format!("enforcer_class_active_connections{} 0", labels("rest")),
            format!("enforcer_class_active_connections{} 1", labels("batch")),
            format!("enforcer_class_admitted_total{} 7", labels("checkout")),
            format!("enforcer_class_admitted_total{} 4", labels("batch")),
            format!("enforcer_class_shed_total{} 5", labels("batch")),
            format!("enforcer_class_shed_total{} 0", labels("checkout")),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // Three classes: three series per family.
        let shed = text
            .lines()
            .filter(|l| l.starts_with("enforcer_class_shed_total{"))
            .count();
        assert_eq!(shed, 3);
        // No priority without a class gets a series.
        assert!(!text.contains("class=\"high\""), "{text}");

        let off = scrape(ClassNames::default());
        assert!(!off.contains("enforcer_class_"), "{off}");
        assert!(off.contains("enforcer_active_connections{"), "{off}");
    }
}

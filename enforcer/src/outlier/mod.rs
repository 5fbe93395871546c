//! Outlier detection across a policy's destinations (its "peers": one
//! service's backends matched by one rule set), as pure code: once per
//! interval, from what each destination's connects did in the interval,
//! which destinations to eject and why.
//!
//! The detectors are Envoy's outlier detection, with its defaults:
//!
//! - **success rate**: with at least `success_rate_min_hosts` destinations of
//!   at least `success_rate_min_requests` completed connects each, a
//!   destination whose success rate is below `mean − success_rate_stdev · σ`
//!   of those destinations is an outlier;
//! - **failure percentage** (off unless set): with at least
//!   `failure_percentage_min_hosts` destinations of at least
//!   `failure_percentage_min_requests` each, a destination failing at least
//!   `failure_percentage` % is an outlier;
//! - **latency** (off unless set; what Envoy's users asked for in 2016 and
//!   never got): with at least `success_rate_min_hosts` destinations of at
//!   least `latency_min_requests` each, a destination whose p90 exceeds
//!   `latency_factor` × the median of their p90s is an outlier.
//!
//! Ejections are capped by the policy's `max_open_percent` of its tracked
//! destinations, counting those already open, at least one always allowed;
//! the worst outliers go first. An ejected destination is forced open for
//! `base_ejection × k` (k its ejections, decaying by one per healthy
//! interval), at most `max_ejection`, and comes back through the breaker's
//! half-open probes.

mod interval;
#[cfg(test)]
mod tests;
mod tracker;

use std::time::Duration;

pub use interval::Interval;
pub use tracker::{Eject, Peers, Tracker};

/// A policy's outlier settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub interval: Duration,
    pub success_rate_stdev: f64,
    pub success_rate_min_hosts: u32,
    pub success_rate_min_requests: u64,
    /// Percent; `None`: off.
    pub failure_percentage: Option<u32>,
    pub failure_percentage_min_hosts: u32,
    pub failure_percentage_min_requests: u64,
    /// `None`: off.
    pub latency_factor: Option<f64>,
    pub latency_min_requests: u64,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Settings {
    /// Envoy's outlier detection defaults (interval 10 s, stdev factor 1.9,
    /// 5 hosts of 100 requests; failure percentage off, 5 hosts of 50
    /// requests when on; ejection 30 s up to 300 s); latency off, 20
    /// handshakes per destination when on.
    pub const DEFAULT: Self = Self {
        interval: Duration::from_secs(10),
        success_rate_stdev: 1.9,
        success_rate_min_hosts: 5,
        success_rate_min_requests: 100,
        failure_percentage: None,
        failure_percentage_min_hosts: 5,
        failure_percentage_min_requests: 50,
        latency_factor: None,
        latency_min_requests: 20,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(300),
    };
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The names of [`Reason`]s, as metrics label them.
pub const REASONS: [&str; 3] = ["success_rate", "failure_percentage", "latency"];

/// Why a destination is an outlier, with the figures it was judged by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// Its success rate against the threshold `mean − stdev_factor · σ`.
    SuccessRate {
        rate: f64,
        mean: f64,
        stdev: f64,
        threshold: f64,
    },
    /// Its failure share (percent) against the configured percentage.
    FailurePercentage { percent: f64, threshold: u32 },
    /// Its p90 against `factor ×` the peers' median p90.
    Latency {
        p90: Duration,
        median: Duration,
        factor: f64,
    },
}

impl Reason {
    pub fn name(&self) -> &'static str {
        match self {
            Self::SuccessRate { .. } => "success_rate",
            Self::FailurePercentage { .. } => "failure_percentage",
            Self::Latency { .. } => "latency",
        }
    }

    /// How far past its threshold, as a share of it: the worst go first.
    fn severity(&self) -> f64 {
        match *self {
            Self::SuccessRate {
                rate, threshold, ..
            } => (threshold - rate) / threshold.max(f64::EPSILON),
            Self::FailurePercentage { percent, threshold } => {
                (percent - f64::from(threshold)) / f64::from(threshold.max(1))
            }
            Self::Latency {
                p90,
                median,
                factor,
                ..
            } => {
                let limit = median.as_secs_f64() * factor;
                (p90.as_secs_f64() - limit) / limit.max(f64::EPSILON)
            }
        }
    }
}

/// One destination to eject.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ejection<K> {
    pub key: K,
    pub reason: Reason,
}

/// The outliers among `dests` (one policy's destinations and what each did
/// in the interval), at most as many as the cap leaves: `open` of the
/// policy's `tracked` destinations are not CLOSED already. A destination
/// that is not CLOSED is never ejected again, and its interval does not
/// count among the peers (it is refused or probing: not a peer's figures).
pub fn detect<K: Copy + PartialEq>(
    s: &Settings,
    dests: &[(K, Interval)],
    open: u64,
    tracked: u64,
    max_open_percent: u32,
) -> Vec<Ejection<K>> {
    let closed: Vec<&(K, Interval)> = dests.iter().filter(|(_, i)| !i.open).collect();
    let mut found: Vec<Ejection<K>> = Vec::new();
    let mut add = |key: K, reason: Reason| {
        if !found.iter().any(|e| e.key == key) {
            found.push(Ejection { key, reason });
        }
    };
    for (key, reason) in success_rate(s, &closed) {
        add(key, reason);
    }
    for (key, reason) in failure_percentage(s, &closed) {
        add(key, reason);
    }
    for (key, reason) in latency(s, &closed) {
        add(key, reason);
    }
    found.sort_by(|a, b| b.reason.severity().total_cmp(&a.reason.severity()));
    let cap = (tracked * u64::from(max_open_percent) / 100).max(1);
    let room = cap.saturating_sub(open) as usize;
    found.truncate(room);
    found
}

fn success_rate<K: Copy>(s: &Settings, dests: &[&(K, Interval)]) -> Vec<(K, Reason)> {
    let judged: Vec<&&(K, Interval)> = dests
        .iter()
        .filter(|(_, i)| i.completed() >= s.success_rate_min_requests)
        .collect();
    if judged.len() < s.success_rate_min_hosts as usize || judged.is_empty() {
        return Vec::new();
    }
    let rates: Vec<f64> = judged.iter().map(|(_, i)| i.success_rate()).collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
    let stdev = variance.sqrt();
    let threshold = mean - s.success_rate_stdev * stdev;
    judged
        .iter()
        .zip(rates)
        .filter(|(_, rate)| *rate < threshold)
        .map(|((key, _), rate)| {
            let reason = Reason::SuccessRate {
                rate,
                mean,
                stdev,
                threshold,
            };
            (*key, reason)
        })
        .collect()
}

fn failure_percentage<K: Copy>(s: &Settings, dests: &[&(K, Interval)]) -> Vec<(K, Reason)> {
    let Some(threshold) = s.failure_percentage else {
        return Vec::new();
    };
    let judged: Vec<&&(K, Interval)> = dests
        .iter()
        .filter(|(_, i)| i.completed() >= s.failure_percentage_min_requests)
        .collect();
    if judged.len() < s.failure_percentage_min_hosts as usize {
        return Vec::new();
    }
    judged
        .iter()
        .filter_map(|(key, i)| {
            let percent = (1.0 - i.success_rate()) * 100.0;
            (percent >= f64::from(threshold))
                .then_some((*key, Reason::FailurePercentage { percent, threshold }))
        })
        .collect()
}

fn latency<K: Copy>(s: &Settings, dests: &[&(K, Interval)]) -> Vec<(K, Reason)> {
    let Some(factor) = s.latency_factor else {
        return Vec::new();
    };
    let judged: Vec<(K, Duration)> = dests
        .iter()
        .filter(|(_, i)| i.measured() >= s.latency_min_requests)
        .filter_map(|(key, i)| i.p90().map(|p| (*key, p)))
        .collect();
    if judged.len() < s.success_rate_min_hosts as usize || judged.is_empty() {
        return Vec::new();
    }
    let mut p90s: Vec<Duration> = judged.iter().map(|(_, p)| *p).collect();
    p90s.sort();
    let median = p90s[p90s.len() / 2];
    judged
        .into_iter()
        .filter(|(_, p90)| p90.as_secs_f64() > median.as_secs_f64() * factor)
        .map(|(key, p90)| {
            let reason = Reason::Latency {
                p90,
                median,
                factor,
            };
            (key, reason)
        })
        .collect()
}

/// How long the `k`-th ejection lasts (k ≥ 1): `base × k`, at most `max`.
pub fn ejection_time(s: &Settings, k: u32) -> Duration {
    s.base_ejection.saturating_mul(k.max(1)).min(s.max_ejection)
}

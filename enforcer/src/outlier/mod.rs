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
//!   of those destinations is an outlier — when its failures are also more
//!   than chance: a destination failing at its peers' pooled rate would
//!   fail as often in fewer than a [`CHANCE`] of its intervals
//!   ([`beyond_chance`]). Envoy's detector has no such guard: among healthy
//!   backends failing a little at random, σ is that randomness, and
//!   `mean − 1.9 σ` ejects one of them in some interval every few minutes
//!   (`cargo xtask bench --only 11`);
//! - **failure percentage** (off unless set): with at least
//!   `failure_percentage_min_hosts` destinations of at least
//!   `failure_percentage_min_requests` each, a destination failing at least
//!   `failure_percentage` % is an outlier;
//! - **latency** (off unless set; what Envoy's users asked for in 2016 and
//!   never got): with at least `success_rate_min_hosts` destinations of at
//!   least `latency_min_requests` each, a destination whose latency exceeds
//!   `latency_factor` × the median of theirs is an outlier: the p90 of its
//!   handshakes, or, where the policy measures the response latency, its
//!   mean ([`Measure`]).
//!
//! Ejections are capped by the policy's `max_open_percent` of its tracked
//! destinations, counting those already open, at least one always allowed;
//! the worst outliers go first. An ejected destination is forced open for
//! `base_ejection × k` (k its ejections, decaying by one per healthy
//! interval), at most `max_ejection`, and comes back through the breaker's
//! half-open probes.

#[cfg(test)]
mod tests;
mod tracker;

use std::time::Duration;

pub use crate::interval::Interval;
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
    /// Its latency (as `measure` says) against `factor ×` the peers'
    /// median.
    Latency {
        measure: Measure,
        latency: Duration,
        median: Duration,
        factor: f64,
    },
}

/// Which latency the latency detector compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The p90 of the handshakes (every policy).
    HandshakeP90,
    /// The mean response latency (policies that measure it: the kernel
    /// sums it, there is no histogram to take a percentile of).
    ResponseMean,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Self::HandshakeP90 => "handshake_p90",
            Self::ResponseMean => "response_mean",
        }
    }

    /// A destination's figure in `i` and the connections behind it.
    fn of(self, i: &Interval) -> Option<(Duration, u64)> {
        match self {
            Self::HandshakeP90 => Some((i.p90()?, i.measured())),
            Self::ResponseMean => Some((i.signal_mean()?, i.signal_count)),
        }
    }
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
                latency,
                median,
                factor,
                ..
            } => {
                let limit = median.as_secs_f64() * factor;
                (latency.as_secs_f64() - limit) / limit.max(f64::EPSILON)
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
    measure: Measure,
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
    for (key, reason) in latency(s, measure, &closed) {
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
    let (all_failed, all_completed) = judged
        .iter()
        .fold((0, 0), |(f, n), (_, i)| (f + i.failures, n + i.completed()));
    judged
        .iter()
        .zip(rates)
        .filter(|(_, rate)| *rate < threshold)
        .filter(|((_, i), _)| {
            // The peers' pooled rate, this destination left out.
            let (f, n) = (all_failed - i.failures, all_completed - i.completed());
            let peers_rate = if n == 0 { 0.0 } else { f as f64 / n as f64 };
            beyond_chance(i.failures, i.completed(), peers_rate)
        })
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

/// How unlikely a destination's failures must be, for one failing at its
/// peers' rate, to count as more than chance: ten healthy backends judged
/// every 10 s are 130 000 judgements a day.
pub const CHANCE: f64 = 1e-5;

/// Whether `failed` of `n` connects is more than chance for a destination
/// that fails each connect with probability `p`: the binomial tail
/// `P(X ≥ failed)` is below [`CHANCE`].
pub fn beyond_chance(failed: u64, n: u64, p: f64) -> bool {
    if failed == 0 {
        return false;
    }
    if p <= 0.0 {
        return true;
    }
    if p >= 1.0 || failed > n {
        return false;
    }
    let mean = n as f64 * p;
    // Far beyond the mean (more than 40 σ): no need to sum.
    if failed as f64 > mean + 40.0 * (mean * (1.0 - p)).sqrt() + 40.0 {
        return true;
    }
    // P(X < failed), term by term: pmf(k+1) = pmf(k) · (n−k)/(k+1) · p/(1−p),
    // in logarithms (pmf(0) = (1−p)^n underflows for large n).
    let (log_odds, mut log_pmf) = ((p / (1.0 - p)).ln(), n as f64 * (1.0 - p).ln());
    let mut below = 0.0;
    for k in 0..failed {
        below += log_pmf.exp();
        log_pmf += ((n - k) as f64 / (k + 1) as f64).ln() + log_odds;
    }
    1.0 - below < CHANCE
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

fn latency<K: Copy>(s: &Settings, measure: Measure, dests: &[&(K, Interval)]) -> Vec<(K, Reason)> {
    let Some(factor) = s.latency_factor else {
        return Vec::new();
    };
    let judged: Vec<(K, Duration)> = dests
        .iter()
        .filter_map(|(key, i)| measure.of(i).map(|(d, n)| (*key, d, n)))
        .filter(|(_, _, n)| *n >= s.latency_min_requests)
        .map(|(key, d, _)| (key, d))
        .collect();
    if judged.len() < s.success_rate_min_hosts as usize || judged.is_empty() {
        return Vec::new();
    }
    let mut figures: Vec<Duration> = judged.iter().map(|(_, d)| *d).collect();
    figures.sort();
    let median = figures[figures.len() / 2];
    judged
        .into_iter()
        .filter(|(_, d)| d.as_secs_f64() > median.as_secs_f64() * factor)
        .map(|(key, latency)| {
            let reason = Reason::Latency {
                measure,
                latency,
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

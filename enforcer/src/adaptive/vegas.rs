//! Vegas (TCP Vegas, as in Netflix concurrency-limits): the queue the latency
//! implies, `limit · (1 − baseline / sample)`, kept between α = 3·log10(limit)
//! and β = 6·log10(limit).

use super::{Reason, Sample, Settings, limited};

/// The next limit from `limit`, the interval's latency and the baseline
/// (seconds).
pub fn next(limit: f64, rtt: f64, baseline: f64, sample: &Sample, s: &Settings) -> (f64, Reason) {
    let log = limit.max(1.0).log10().max(1.0);
    // Failures back off at once: smoothing them would let an overloaded
    // destination keep failing for intervals.
    if sample.failed {
        return (limit - log, Reason::Shrank);
    }
    if !limited(sample, limit) {
        return (limit, Reason::AppLimited);
    }
    let queue = (limit * (1.0 - baseline / rtt)).ceil();
    let (alpha, beta) = (3.0 * log, 6.0 * log);
    let target = if queue <= log {
        limit + beta
    } else if queue < alpha {
        limit + log
    } else if queue > beta {
        limit - log
    } else {
        limit
    };
    (smooth(limit, target, s), Reason::Steady)
}

fn smooth(limit: f64, target: f64, s: &Settings) -> f64 {
    limit * (1.0 - s.smoothing) + target * s.smoothing
}

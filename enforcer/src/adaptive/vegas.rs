//! Vegas (TCP Vegas, as in Netflix concurrency-limits): the queue the latency
//! implies, `limit · (1 − baseline / sample)`, kept between α = 3·log10(limit)
//! and β = 6·log10(limit).

use super::{Sample, Settings, limited};

/// The next limit from `limit`, the interval's latency and the baseline
/// (seconds); `None` when the callers were not held back by it.
pub fn next(limit: f64, rtt: f64, baseline: f64, sample: &Sample, s: &Settings) -> Option<f64> {
    let log = limit.max(1.0).log10().max(1.0);
    // Failures back off at once: smoothing them would let an overloaded
    // destination keep failing for intervals.
    if sample.failed {
        return Some(limit - log);
    }
    if !limited(sample, limit) {
        return None;
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
    Some(limit * (1.0 - s.smoothing) + target * s.smoothing)
}

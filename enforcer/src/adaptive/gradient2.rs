//! Gradient2 (Netflix concurrency-limits): the limit follows the ratio of a
//! slow average of the latency to the latest sample.

use super::{Sample, Settings, limited};

/// Samples the long average spans: Netflix's 600 (per request there, per
/// interval here: ten minutes at one second).
const LONG_WINDOW: f64 = 600.0;

/// The long average after `sample` (seconds). Once the sample is less than
/// half of it (the destination recovered from a slow period), the average
/// decays faster, so the limit is not held down by a past it no longer has.
pub fn long_average(long: Option<f64>, sample: f64) -> f64 {
    let Some(long) = long else {
        return sample;
    };
    let long = if long / sample > 2.0 {
        long * 0.95
    } else {
        long
    };
    long + (sample - long) / LONG_WINDOW
}

/// The next limit from `limit` and the latencies (seconds); `None` when the
/// callers were not held back by it.
pub fn next(limit: f64, rtt: f64, long: f64, sample: &Sample, s: &Settings) -> Option<f64> {
    if !limited(sample, limit) {
        return None;
    }
    let gradient = (s.tolerance * long / rtt).clamp(0.5, 1.0);
    // Room for a queue the size of √limit: without it a limit whose latency
    // is exactly its average would never grow.
    let queue = limit.sqrt();
    let target = limit * gradient + queue;
    Some(limit * (1.0 - s.smoothing) + target * s.smoothing)
}

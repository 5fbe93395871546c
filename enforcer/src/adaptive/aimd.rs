//! AIMD: one more while the limit is used and the latency stays under
//! `tolerance · baseline`; ×0.9 on a failure or a latency above it (Netflix's
//! AIMD backs off on drops and on a latency past its timeout; here the
//! timeout is relative to the destination's own baseline).

use super::{Sample, Settings, limited};

/// The factor a limit is multiplied by when it backs off.
const BACKOFF: f64 = 0.9;

/// The next limit from `limit`, the interval's latency and the baseline
/// (seconds); `None` when the callers were not held back by it.
pub fn next(limit: f64, rtt: f64, baseline: f64, sample: &Sample, s: &Settings) -> Option<f64> {
    if sample.failed || rtt > s.tolerance * baseline {
        return Some(limit * BACKOFF);
    }
    limited(sample, limit).then_some(limit + 1.0)
}

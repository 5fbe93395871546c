//! AIMD: one more while the limit is used and the latency stays under
//! `tolerance · baseline`; ×0.9 on a failure or a latency above it (Netflix's
//! AIMD backs off on drops and on a latency past its timeout; here the
//! timeout is relative to the destination's own baseline).

use super::{Reason, Sample, Settings, limited};

/// The factor a limit is multiplied by when it backs off.
const BACKOFF: f64 = 0.9;

/// The next limit from `limit`, the interval's latency and the baseline
/// (seconds).
pub fn next(limit: f64, rtt: f64, baseline: f64, sample: &Sample, s: &Settings) -> (f64, Reason) {
    if sample.failed || rtt > s.tolerance * baseline {
        return (limit * BACKOFF, Reason::Shrank);
    }
    if !limited(sample, limit) {
        return (limit, Reason::AppLimited);
    }
    (limit + 1.0, Reason::Steady)
}

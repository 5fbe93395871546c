//! Each destination's own normal (`failure_rate = "auto"`, `slow_connect =
//! "auto"`), learned by the daemon one breaker window at a time and written
//! into the kernel, which trips on it ([`enforcer_common::baseline`]).
//!
//! Per window of at least `min_attempts` completed connects, with the
//! destination CLOSED throughout: its failure share (failures and slow
//! handshakes, as the breaker's window counts them) moves an exponentially
//! weighted mean and variance, its 99th percentile handshake a mean of its
//! own. The weight of a window is `window / baseline_window` (the first
//! windows average plainly, so a young baseline is not the first window's
//! accident). A window at or above the destination's trip rate, or with a
//! p99 beyond its slow bound, is an incident, not the normal: it teaches
//! nothing. The spread written is never below a window's sampling noise
//! (`√(p(1−p)/n)`), so a destination that happened to be steady does not
//! trip on the next unlucky draw.

mod learner;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use learner::{Learned, Learner, Learning};

use enforcer_common::{
    baseline::{Baseline, learn},
    policy::Policy,
};

use crate::interval::Interval;

/// How a policy learns its destinations' normal (what it learns, the rate
/// or the slow bound or both, is in its kernel policy's
/// [`enforcer_common::baseline::learn`] bits).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// How far back the baseline remembers (`baseline_window`).
    pub window: Duration,
    /// Spreads above the baseline share that trip (`sensitivity`).
    pub sensitivity: f64,
    /// The learned trip rate's bounds (`failure_rate_min`,
    /// `failure_rate_max`; the highest is also the rate while cold).
    pub rate_min: f64,
    pub rate_max: f64,
    /// The slow bound over the baseline p99 (`slow_connect_factor`).
    pub slow_factor: f64,
}

/// A destination's baseline as the daemon keeps it between windows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    pub share: f64,
    pub variance: f64,
    /// µs; 0 until a window measured handshakes.
    pub p99_us: f64,
    pub windows: u32,
}

impl Estimate {
    /// Goes on from what the kernel holds (an earlier daemon's).
    pub fn resume(b: &Baseline) -> Self {
        let spread = f64::from(b.spread_ppm) / 1e6;
        Self {
            share: f64::from(b.share_ppm) / 1e6,
            variance: spread * spread,
            p99_us: f64::from(b.p99_us),
            windows: b.windows,
        }
    }

    /// What the kernel is to hold after a window of `completed` connects.
    pub fn baseline(&self, completed: u64) -> Baseline {
        let noise = if completed == 0 {
            0.0
        } else {
            (self.share * (1.0 - self.share) / completed as f64).sqrt()
        };
        let ppm = |v: f64| (v * 1e6).round().clamp(0.0, 1e6) as u32;
        Baseline {
            share_ppm: ppm(self.share),
            spread_ppm: ppm(self.variance.sqrt().max(noise)),
            p99_us: self.p99_us.round().clamp(0.0, f64::from(u32::MAX)) as u32,
            windows: self.windows,
        }
    }

    /// Learns from one window (`step`: its length), judged against the
    /// thresholds `policy` derives from `now` (the baseline the kernel
    /// holds). Returns whether the window taught anything.
    pub fn learn(
        &mut self,
        w: &Interval,
        step: Duration,
        s: &Settings,
        policy: &Policy,
        now: &Baseline,
    ) -> bool {
        let Some(share) = w.failure_share() else {
            return false;
        };
        if w.open || w.completed() < u64::from(policy.min_attempts) {
            return false;
        }
        if now.warm() && share * 1000.0 >= f64::from(policy.trip_permille(now)) {
            return false;
        }
        let p99 = w.quantile(99).map(|d| d.as_secs_f64() * 1e6);
        let slow_ns = policy.slow_ns(now);
        let learns_slow = policy.learn & learn::SLOW != 0;
        if learns_slow && slow_ns != 0 && p99.is_some_and(|us| us * 1000.0 > slow_ns as f64) {
            return false;
        }
        let weight = (step.as_secs_f64() / s.window.as_secs_f64().max(1e-9))
            .max(1.0 / f64::from(self.windows.saturating_add(1)))
            .clamp(0.0, 1.0);
        let diff = share - self.share;
        let increment = weight * diff;
        self.share += increment;
        self.variance = (1.0 - weight) * (self.variance + diff * increment);
        if let Some(us) = p99 {
            self.p99_us = if self.p99_us == 0.0 {
                us
            } else {
                self.p99_us + weight * (us - self.p99_us)
            };
        }
        self.windows = self.windows.saturating_add(1);
        true
    }
}

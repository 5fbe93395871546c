//! Concurrency limits learned from latency: each destination's limit, moved
//! once per interval from what its connections measured in that interval.
//!
//! The algorithms are those of Netflix's concurrency-limits, adapted to one
//! sample per interval (the interval's mean latency, from the kernel's
//! histogram deltas) instead of one per request:
//!
//! - [`Algorithm::Gradient2`]: `limit · clamp(tolerance · long / short, 0.5, 1)
//!   + √limit`, smoothed; `long` is a slow average of the samples, so a
//!   latency that has grown by more than `tolerance` over it shrinks the limit.
//! - [`Algorithm::Vegas`]: the queue the latency implies, `limit · (1 −
//!   baseline / sample)`, kept between `3·log10(limit)` and `6·log10(limit)`.
//! - [`Algorithm::Aimd`]: `+1` while the limit is used and the latency stays
//!   under `tolerance · baseline`, `×0.9` on a failure or a latency above it.
//!
//! The baseline (the latency without load) is tracked passively from all the
//! traffic ([`baseline::Baseline`]): there is no probe window in which callers
//! are refused to re-measure it, the flaw Envoy's adaptive filter has. An
//! interval without a sample holds the limit (never a collapse to the minimum
//! when traffic pauses), and one where the callers did not use half the limit
//! does not grow it (they are not what the limit holds back).

mod aimd;
mod baseline;
mod gradient2;
mod learning;
mod sample;
#[cfg(test)]
mod tests;
mod vegas;

use std::time::Duration;

pub use baseline::Baseline;
pub use learning::{Learner, Learning, Step};
pub use sample::{Reading, Sample};

/// How a limit moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    Gradient2,
    Vegas,
    Aimd,
}

impl Algorithm {
    /// The weight of a new limit when a policy sets none: Netflix's
    /// builders' (gradient2 0.2; vegas 1, its own steps being gentle
    /// already); aimd does not smooth.
    pub const fn default_smoothing(self) -> f64 {
        match self {
            Self::Gradient2 => 0.2,
            Self::Vegas | Self::Aimd => 1.0,
        }
    }
}

/// A policy's adaptive settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub algorithm: Algorithm,
    pub min: u32,
    pub max: u32,
    pub initial: u32,
    /// Weight of a new limit against the previous one (gradient2, vegas).
    pub smoothing: f64,
    /// How much latency above its reference is tolerated before the limit
    /// shrinks (gradient2: over the long average; aimd: over the baseline).
    pub tolerance: f64,
    /// How many intervals the baseline (the unloaded latency) remembers.
    pub baseline_window: usize,
}

impl Default for Settings {
    /// Netflix's defaults (initial 20, min 20, max 200, smoothing 0.2), but a
    /// tolerance of 1.25, Envoy's 25 % buffer over its minimum: with latency
    /// growing linearly with the queue, Netflix's 1.5 settles gradient2 at
    /// twice the backend's capacity, 1.25 at about 1.7 times. A baseline of
    /// the last 600 intervals (10 minutes at one second).
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Gradient2,
            min: 20,
            max: 200,
            initial: 20,
            smoothing: 0.2,
            tolerance: 1.25,
            baseline_window: 600,
        }
    }
}

/// Why a limit is what it is after an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No connection completed in the interval: nothing to learn from.
    NoSample,
    /// The callers used less than half the limit: not grown.
    AppLimited,
    /// The latency allows more.
    Grew,
    /// The latency (or failures) ask for less.
    Shrank,
    /// Within the band the algorithm keeps.
    Steady,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Self::NoSample => "no_sample",
            Self::AppLimited => "app_limited",
            Self::Grew => "grew",
            Self::Shrank => "shrank",
            Self::Steady => "steady",
        }
    }
}

/// One interval's decision, with the figures it was made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub previous: u32,
    pub limit: u32,
    pub reason: Reason,
    /// The interval's mean latency, if any connection completed.
    pub sample: Option<Duration>,
    /// The unloaded latency the algorithm compared it with.
    pub baseline: Option<Duration>,
    /// Gradient2's long average.
    pub long: Option<Duration>,
}

/// One destination's limit and what it remembers.
#[derive(Clone, Debug)]
pub struct Limiter {
    settings: Settings,
    limit: f64,
    baseline: Baseline,
    /// Gradient2's long average of the samples, in seconds.
    long: Option<f64>,
}

impl Limiter {
    pub fn new(settings: Settings) -> Self {
        Self::resume(settings, settings.initial)
    }

    /// A limiter that goes on from `limit` (what the kernel holds from an
    /// earlier daemon), within the settings' bounds; what it remembered of
    /// the latency is learnt again.
    pub fn resume(settings: Settings, limit: u32) -> Self {
        Self {
            limit: f64::from(limit.clamp(settings.min, settings.max)),
            baseline: Baseline::new(settings.baseline_window),
            long: None,
            settings,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit.round() as u32
    }

    /// Moves the limit after one interval; `None` when nothing completed.
    pub fn update(&mut self, sample: Option<Sample>) -> Change {
        let previous = self.limit();
        let Some(sample) = sample else {
            return self.change(previous, Reason::NoSample, None);
        };
        let rtt = sample.latency.as_secs_f64();
        self.baseline.observe(rtt);
        let baseline = self.baseline.get().unwrap_or(rtt);
        let s = &self.settings;
        let next = match s.algorithm {
            Algorithm::Gradient2 => {
                let long = gradient2::long_average(self.long, rtt);
                self.long = Some(long);
                gradient2::next(self.limit, rtt, long, &sample, s)
            }
            Algorithm::Vegas => vegas::next(self.limit, rtt, baseline, &sample, s),
            Algorithm::Aimd => aimd::next(self.limit, rtt, baseline, &sample, s),
        };
        let Some(next) = next else {
            return self.change(previous, Reason::AppLimited, Some(sample.latency));
        };
        self.limit = next.clamp(f64::from(s.min), f64::from(s.max));
        // What the limit did, after the bounds: a limit held at `max` did
        // not grow, whatever the latency allowed.
        let reason = match self.limit().cmp(&previous) {
            std::cmp::Ordering::Greater => Reason::Grew,
            std::cmp::Ordering::Less => Reason::Shrank,
            std::cmp::Ordering::Equal => Reason::Steady,
        };
        self.change(previous, reason, Some(sample.latency))
    }

    fn change(&self, previous: u32, reason: Reason, sample: Option<Duration>) -> Change {
        Change {
            previous,
            limit: self.limit(),
            reason,
            sample,
            baseline: self.baseline.get().map(Duration::from_secs_f64),
            long: self.long.map(Duration::from_secs_f64),
        }
    }
}

/// Whether the limit held the callers back: the cap refused some, or they
/// used at least half of it. Below that, latency says nothing about more.
fn limited(sample: &Sample, limit: f64) -> bool {
    sample.refused_at_cap || f64::from(sample.inflight) * 2.0 >= limit
}

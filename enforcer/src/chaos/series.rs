//! The measures of an experiment as the daemon samples them every
//! [`super::VALVE_PERIOD`]: cumulative counters become a windowed value, and
//! each phase keeps what its values were.

use std::{collections::VecDeque, time::Duration};

/// What one sample of a measure holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    /// Cumulative counts: successes and every connect (a ratio), or one
    /// count (a rate: `good` unused).
    Counts { good: u64, total: u64 },
    /// Whether the check answered (an HTTP check).
    Answered(bool),
}

/// How a series turns its samples into a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Δgood / Δtotal over the window.
    Ratio,
    /// Δtotal per second over the window.
    Rate,
    /// 1 while the last answer is younger than the window, else 0.
    Up,
}

/// A measure's recent samples, at times since the experiment started.
#[derive(Clone, Debug)]
pub struct Series {
    shape: Shape,
    window: Duration,
    points: VecDeque<(Duration, Sample)>,
    /// When the check last answered (`Up`).
    last_up: Option<Duration>,
    /// When the first sample was taken (`Up`: no value before a whole
    /// window has passed without an answer).
    first: Option<Duration>,
}

impl Series {
    pub fn new(shape: Shape, window: Duration) -> Self {
        Self {
            shape,
            window,
            points: VecDeque::new(),
            last_up: None,
            first: None,
        }
    }

    /// Adds the sample taken at `at` (times never go back).
    pub fn push(&mut self, at: Duration, sample: Sample) {
        self.first.get_or_insert(at);
        if let Sample::Answered(true) = sample {
            self.last_up = Some(at);
        }
        self.points.push_back((at, sample));
        // Keep one point at or before the window's start, to difference with.
        while self.points.len() > 2 && self.points[1].0 + self.window <= at {
            self.points.pop_front();
        }
    }

    /// The value over the window ending at the last sample; `None` while it
    /// cannot be told (no connects in the window, too few samples).
    pub fn value(&self) -> Option<f64> {
        let &(now, last) = self.points.back()?;
        match self.shape {
            Shape::Up => {
                let up = self.last_up.is_some_and(|t| t + self.window >= now);
                let known = up || self.first.is_some_and(|f| f + self.window <= now);
                known.then_some(if up { 1.0 } else { 0.0 })
            }
            Shape::Ratio | Shape::Rate => {
                let &(then, first) = self.points.front()?;
                let (
                    Sample::Counts {
                        good: g1,
                        total: t1,
                    },
                    Sample::Counts {
                        good: g0,
                        total: t0,
                    },
                ) = (last, first)
                else {
                    return None;
                };
                let total = t1.saturating_sub(t0);
                let span = now.saturating_sub(then);
                match self.shape {
                    Shape::Ratio if total > 0 => Some(g1.saturating_sub(g0) as f64 / total as f64),
                    Shape::Rate if !span.is_zero() => Some(total as f64 / span.as_secs_f64()),
                    _ => None,
                }
            }
        }
    }
}

/// What a steady-state check's values were in one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phase {
    sum: f64,
    n: u64,
    /// The value furthest from the baseline (during and after).
    worst: Option<f64>,
}

impl Phase {
    /// Adds a value; `baseline` (when known) decides which is the worst.
    pub fn add(&mut self, value: f64, baseline: Option<f64>) {
        self.sum += value;
        self.n += 1;
        if let Some(b) = baseline {
            let further = self.worst.is_none_or(|w| (value - b).abs() > (w - b).abs());
            if further {
                self.worst = Some(value);
            }
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    pub fn worst(&self) -> Option<f64> {
        self.worst
    }
}

/// Whether `value` is within `tolerance` of `baseline`.
pub fn within(value: f64, baseline: f64, tolerance: f64) -> bool {
    // A hair of slack: means of binary fractions are not exact.
    (value - baseline).abs() <= tolerance + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn counts(good: u64, total: u64) -> Sample {
        Sample::Counts { good, total }
    }

    #[test]
    fn a_ratio_over_its_window_only() {
        let mut s = Series::new(Shape::Ratio, ms(1000));
        assert_eq!(s.value(), None);
        s.push(ms(0), counts(0, 0));
        assert_eq!(s.value(), None, "no connects yet");
        s.push(ms(500), counts(10, 10));
        assert_eq!(s.value(), Some(1.0));
        // A second of failures: the window sees them only.
        for (i, t) in (600..=2500).step_by(100).enumerate() {
            s.push(ms(t), counts(10, 11 + i as u64));
        }
        assert_eq!(s.value(), Some(0.0));
    }

    #[test]
    fn a_rate_per_second() {
        let mut s = Series::new(Shape::Rate, ms(1000));
        s.push(ms(0), counts(0, 100));
        assert_eq!(s.value(), None);
        s.push(ms(500), counts(0, 150));
        assert_eq!(s.value(), Some(100.0));
        s.push(ms(1000), counts(0, 200));
        s.push(ms(2000), counts(0, 200));
        assert_eq!(s.value(), Some(0.0));
    }

    #[test]
    fn up_until_no_answer_for_a_window() {
        let mut s = Series::new(Shape::Up, ms(1000));
        s.push(ms(0), Sample::Answered(false));
        assert_eq!(s.value(), None, "not a whole window yet");
        s.push(ms(100), Sample::Answered(true));
        assert_eq!(s.value(), Some(1.0));
        s.push(ms(1100), Sample::Answered(false));
        assert_eq!(s.value(), Some(1.0), "answered a window ago");
        s.push(ms(1200), Sample::Answered(false));
        assert_eq!(s.value(), Some(0.0));
        let mut never = Series::new(Shape::Up, ms(1000));
        never.push(ms(0), Sample::Answered(false));
        never.push(ms(1000), Sample::Answered(false));
        assert_eq!(never.value(), Some(0.0));
    }

    #[test]
    fn a_phase_keeps_its_mean_and_the_value_furthest_from_the_baseline() {
        let mut p = Phase::default();
        assert_eq!(p.mean(), None);
        for v in [1.0, 0.5, 0.9] {
            p.add(v, Some(1.0));
        }
        assert!((p.mean().unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(p.worst(), Some(0.5));
        assert!(within(0.96, 1.0, 0.05));
        assert!(!within(0.94, 1.0, 0.05));
        assert!(within(0.95, 1.0, 0.05));
    }
}

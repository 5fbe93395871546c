//! What one destination's connects did between two reads of its kernel
//! state (an outlier interval, a baseline window).

use std::time::Duration;

use enforcer_common::{
    breaker::State,
    dest::{DestState, LATENCY_BUCKETS, Latency},
};

/// One destination's interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interval {
    pub successes: u64,
    /// Refused, timed out or unreachable (the failures that trip).
    pub failures: u64,
    /// Of the successes, those slower than the policy's slow bound (failures
    /// to the breaker's window).
    pub slow: u64,
    /// The handshakes' latency histogram of the interval.
    pub latency: [u64; LATENCY_BUCKETS],
    /// Not CLOSED at the end of the interval.
    pub open: bool,
    /// The policy's signal ([`enforcer_common::policy::Signal`]) over the
    /// interval: connections measured and their total, ns.
    pub signal_count: u64,
    pub signal_ns: u64,
}

impl Interval {
    /// The interval between two reads of one destination; `None` when the
    /// counters went backwards (forgotten and tracked anew in between).
    pub fn between(before: &DestState, after: &DestState) -> Option<Self> {
        let delta = |a: u64, b: u64| b.checked_sub(a);
        let (c0, c1) = (&before.counters, &after.counters);
        let mut latency = [0u64; LATENCY_BUCKETS];
        for (i, slot) in latency.iter_mut().enumerate() {
            *slot = delta(before.latency.buckets[i], after.latency.buckets[i])?;
        }
        Some(Self {
            successes: delta(c0.successes, c1.successes)?,
            failures: delta(c0.failures(), c1.failures())?,
            slow: delta(c0.slow, c1.slow)?,
            latency,
            open: after.breaker.state != State::Closed as u32,
            signal_count: delta(before.signal.count, after.signal.count)?,
            signal_ns: delta(before.signal.sum_ns, after.signal.sum_ns)?,
        })
    }

    /// Connects that completed either way.
    pub fn completed(&self) -> u64 {
        self.successes + self.failures
    }

    pub fn success_rate(&self) -> f64 {
        match self.completed() {
            0 => 1.0,
            n => self.successes as f64 / n as f64,
        }
    }

    /// Handshakes measured.
    pub fn measured(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// The share of the completed connects that count as failures in the
    /// breaker's window (failures and slow successes); `None` without any.
    pub fn failure_share(&self) -> Option<f64> {
        let n = self.completed();
        (n != 0).then(|| (self.failures + self.slow) as f64 / n as f64)
    }

    /// The mean of the policy's signal; `None` without any.
    pub fn signal_mean(&self) -> Option<Duration> {
        (self.signal_count != 0).then(|| Duration::from_nanos(self.signal_ns / self.signal_count))
    }

    /// The 90th percentile of the handshakes (see [`Self::quantile`]).
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(90)
    }

    /// The `percent`-th percentile of the handshakes, interpolated within its
    /// log2 bucket; `None` without any.
    pub fn quantile(&self, percent: u64) -> Option<Duration> {
        let n = self.measured();
        if n == 0 {
            return None;
        }
        let rank = (n * percent.min(100)).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, count) in self.latency.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            if seen + count >= rank {
                let (low, high) = (
                    if i == 0 { 0 } else { Latency::upper_us(i - 1) },
                    Latency::upper_us(i),
                );
                let within = (rank - seen) as f64 / *count as f64;
                let us = low as f64 + (high - low) as f64 * within;
                return Some(Duration::from_secs_f64(us / 1e6));
            }
            seen += count;
        }
        None
    }
}

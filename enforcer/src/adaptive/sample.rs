//! One interval of a destination, from two reads of its kernel state: the
//! connections that measured the policy's signal in between and how long it
//! was on average (`DestState::signal`), how many
//! connections were open, whether the cap refused anyone, whether any connect
//! failed the way an overloaded destination fails.

use std::time::Duration;

use enforcer_common::dest::{DestState, SignalSum};

/// What a sample needs of one read of a destination's kernel state: the
/// little a learner keeps between two reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub signal: SignalSum,
    pub failures: u64,
    pub rejected_at_cap: u64,
    pub active: u32,
}

impl Reading {
    pub fn of(state: &DestState) -> Self {
        let c = &state.counters;
        Self {
            signal: state.signal,
            // How an overloaded destination fails a connect: silence or a
            // full accept queue answered with RST.
            failures: c.failures_timeout + c.failures_refused,
            rejected_at_cap: c.rejected_bulkhead,
            active: state.breaker.active,
        }
    }
}

/// What the limit learns from one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Mean latency of what completed in the interval.
    pub latency: Duration,
    /// How many completed.
    pub completed: u64,
    /// Connections open at the end of the interval.
    pub inflight: u32,
    /// The cap refused connects in the interval: the callers wanted more.
    pub refused_at_cap: bool,
    /// Connects timed out or were refused by the destination.
    pub failed: bool,
}

impl Sample {
    /// The interval between two reads of one destination; `None` when nothing
    /// completed, or when the counters went backwards (the destination was
    /// forgotten and tracked anew in between: the reads are not one series).
    pub fn between(before: &Reading, after: &Reading) -> Option<Self> {
        let delta = |a: u64, b: u64| b.checked_sub(a);
        let completed = delta(before.signal.count, after.signal.count)?;
        let sum_ns = delta(before.signal.sum_ns, after.signal.sum_ns)?;
        if completed == 0 {
            return None;
        }
        let failures = delta(before.failures, after.failures)?;
        Some(Self {
            latency: Duration::from_nanos(sum_ns / completed),
            completed,
            inflight: after.active,
            refused_at_cap: delta(before.rejected_at_cap, after.rejected_at_cap)? > 0,
            failed: failures > 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(latencies_us: &[u64], active: u32, rejected: u64, timeouts: u64) -> Reading {
        let mut s = DestState::default();
        for &us in latencies_us {
            s.signal.record(us * 1000);
        }
        s.breaker.active = active;
        s.counters.rejected_bulkhead = rejected;
        s.counters.failures_timeout = timeouts;
        Reading::of(&s)
    }

    #[test]
    fn the_interval_is_the_difference_of_two_reads() {
        let before = state(&[100, 100], 1, 3, 0);
        let after = state(&[100, 100, 200, 400], 5, 3, 0);
        let s = Sample::between(&before, &after).expect("a sample");
        assert_eq!(s.completed, 2);
        assert_eq!(s.latency, Duration::from_micros(300));
        assert_eq!(s.inflight, 5);
        assert!(!s.refused_at_cap && !s.failed);
        let refused = state(&[100, 100, 200], 5, 4, 1);
        let s = Sample::between(&before, &refused).expect("a sample");
        assert!(s.refused_at_cap && s.failed);
    }

    #[test]
    fn nothing_completed_or_a_reset_is_no_sample() {
        let before = state(&[100, 100], 1, 0, 0);
        assert_eq!(Sample::between(&before, &before), None);
        assert_eq!(Sample::between(&before, &state(&[100], 1, 0, 0)), None);
    }
}

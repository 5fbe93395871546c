//! A destination's own normal (`failure_rate = "auto"`, `slow_connect =
//! "auto"`): the daemon learns it from the destination's windows and writes it
//! into the destination's state ([`Baseline`]); the kernel turns it into the
//! trip rate and the slow-connect bound at the moment it needs them, with the
//! policy's settings of the day ([`Policy::trip_permille`],
//! [`Policy::slow_ns`]). So the trip itself stays in the kernel, and a changed
//! sensitivity applies at once, without waiting for the daemon.

use crate::{impl_pod, policy::Policy};

/// Windows a destination must have been learned from before its baseline
/// counts: until then it trips at the policy's highest rate and has no slow
/// bound.
pub const WARMUP_WINDOWS: u32 = 5;

/// A handshake is never slow below this, whatever its baseline: under a
/// millisecond the scheduler's noise is as large as the handshake.
pub const SLOW_FLOOR_NS: u64 = 1_000_000;

/// Bits of [`Policy::learn`].
pub mod learn {
    /// `failure_rate = "auto"`.
    pub const RATE: u32 = 1;
    /// `slow_connect = "auto"`.
    pub const SLOW: u32 = 2;
}

/// What the daemon learned of one destination, in
/// [`crate::dest::DestState::baseline`]. Written whole by the daemon's
/// `SET_BASELINE` command under the destination's lock; read back by the
/// daemon after a restart to go on from there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// The moving average of its failure share per window, in parts per
    /// million of the window's completed connects.
    pub share_ppm: u32,
    /// How much that share varies from window to window (a standard
    /// deviation, never below the sampling noise of a window's size), ppm.
    pub spread_ppm: u32,
    /// The moving average of its windows' 99th percentile handshake, µs.
    pub p99_us: u32,
    /// Windows learned from so far (saturating); 0: nothing learned.
    pub windows: u32,
}
const _: () = assert!(size_of::<Baseline>() == 16);
impl_pod!(Baseline);

impl Baseline {
    /// Whether enough windows have been learned for the baseline to count.
    #[inline(always)]
    pub const fn warm(&self) -> bool {
        self.windows >= WARMUP_WINDOWS
    }
}

impl Policy {
    /// The failure share (‰) that trips a destination of this baseline: its
    /// own share plus `sensitivity` spreads, within
    /// `[rate_min_permille, failure_rate_permille]`, when the policy learns
    /// it and the baseline is warm; else the policy's fixed rate.
    #[inline(always)]
    pub const fn trip_permille(&self, b: &Baseline) -> u32 {
        if self.learn & learn::RATE == 0 || !b.warm() {
            return self.failure_rate_permille;
        }
        let ppm = b.share_ppm as u64 + b.spread_ppm as u64 * self.sensitivity_milli as u64 / 1000;
        // Up to the next ‰: a learned rate never rounds down onto the
        // baseline itself.
        let permille = ppm.div_ceil(1000);
        let (low, high) = (
            self.rate_min_permille as u64,
            self.failure_rate_permille as u64,
        );
        let clamped = if permille < low {
            low
        } else if permille > high {
            high
        } else {
            permille
        };
        clamped as u32
    }

    /// A handshake slower than this counts as a failure (ns; 0 = never): the
    /// baseline's 99th percentile times `slow_factor`, at least
    /// [`SLOW_FLOOR_NS`], when the policy learns it (none while the baseline
    /// is cold); else the policy's fixed `slow_connect`.
    #[inline(always)]
    pub const fn slow_ns(&self, b: &Baseline) -> u64 {
        if self.learn & learn::SLOW == 0 {
            return self.slow_connect_ns;
        }
        if !b.warm() || b.p99_us == 0 {
            return 0;
        }
        // µs × thousandths = ns.
        let ns = b.p99_us as u64 * self.slow_factor_milli as u64;
        if ns < SLOW_FLOOR_NS {
            SLOW_FLOOR_NS
        } else {
            ns
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> Policy {
        Policy {
            learn: learn::RATE | learn::SLOW,
            failure_rate_permille: 500,
            rate_min_permille: 50,
            sensitivity_milli: 3000,
            slow_factor_milli: 3000,
            slow_connect_ns: 7,
            ..Policy::default()
        }
    }

    fn warm(share_ppm: u32, spread_ppm: u32, p99_us: u32) -> Baseline {
        Baseline {
            share_ppm,
            spread_ppm,
            p99_us,
            windows: WARMUP_WINDOWS,
        }
    }

    #[test]
    fn a_cold_baseline_trips_at_the_highest_rate_and_is_never_slow() {
        let b = Baseline {
            windows: WARMUP_WINDOWS - 1,
            ..warm(30_000, 10_000, 200)
        };
        assert_eq!(auto().trip_permille(&b), 500);
        assert_eq!(auto().slow_ns(&b), 0);
    }

    #[test]
    fn the_trip_rate_is_the_share_plus_sensitivity_spreads_within_bounds() {
        let p = auto();
        // 3 % ± 1.7 %: 3 + 3 × 1.7 = 8.1 %; a hair above, the next ‰.
        assert_eq!(p.trip_permille(&warm(30_000, 17_000, 0)), 81);
        assert_eq!(p.trip_permille(&warm(30_001, 17_000, 0)), 82);
        // A clean destination trips at the floor.
        assert_eq!(p.trip_permille(&warm(0, 0, 0)), 50);
        // A bad normal is still capped.
        assert_eq!(p.trip_permille(&warm(400_000, 100_000, 0)), 500);
        // Not learned: the fixed rate, whatever the baseline says.
        let fixed = Policy { learn: 0, ..p };
        assert_eq!(fixed.trip_permille(&warm(0, 0, 0)), 500);
    }

    #[test]
    fn the_slow_bound_is_the_p99_times_the_factor_above_a_floor() {
        let p = auto();
        assert_eq!(p.slow_ns(&warm(0, 0, 2_000)), 6_000_000);
        assert_eq!(p.slow_ns(&warm(0, 0, 100)), SLOW_FLOOR_NS);
        assert_eq!(p.slow_ns(&warm(0, 0, 0)), 0);
        let fixed = Policy { learn: 0, ..p };
        assert_eq!(fixed.slow_ns(&warm(0, 0, 2_000)), 7);
    }
}

//! The kernel programs' clock (`bpf_ktime_get_ns` is `CLOCK_MONOTONIC`), and a
//! small generator for jitter (no cryptography needed).

use rustix::time::{ClockId, clock_gettime};

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Uniform enough to spread open periods apart (`fastrand`'s wyrand).
pub struct Jitter(fastrand::Rng);

impl Jitter {
    /// A generator seeded differently in every process and every call.
    pub fn seeded() -> Self {
        Self(fastrand::Rng::new())
    }

    /// The same draws for the same seed, for tests.
    #[cfg(test)]
    pub fn with_seed(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.f64()
    }
}

/// Wall-clock time in ms since the Unix epoch (0 before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_stays_in_range_and_spreads() {
        let mut j = Jitter::seeded();
        let draws: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let low = draws.iter().filter(|u| **u < 0.5).count();
        assert!((4_000..6_000).contains(&low), "{low}");
    }

    #[test]
    fn a_seed_gives_the_same_draws() {
        let draws = |seed| {
            let mut j = Jitter::with_seed(seed);
            (0..8).map(|_| j.unit()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }
}

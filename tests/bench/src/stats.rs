//! Order statistics of latency samples. Medians and tails, never a mean alone: one
//! preempted connect moves a mean by microseconds and a median not at all.

use serde::Serialize;

/// A set of latency samples, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    pub fn of(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self {
            n: sorted.len(),
            p50_ns: quantile(&sorted, 0.50),
            p99_ns: quantile(&sorted, 0.99),
            min_ns: sorted.first().copied().unwrap_or(0),
            max_ns: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// The `q`-quantile of sorted samples by nearest rank (an observed value, never
/// an interpolation between two); 0 for no samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `b - a` in nanoseconds, signed: an overhead can come out negative in noise,
/// and hiding that would overstate it.
pub fn delta(a: u64, b: u64) -> i64 {
    b as i64 - a as i64
}

/// `b / a`, for ratios against a baseline.
pub fn ratio(a: u64, b: u64) -> f64 {
    if a == 0 {
        f64::NAN
    } else {
        b as f64 / a as f64
    }
}

/// The median of a few values (per-block figures); 0 for none.
pub fn median_i64(values: &[i64]) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        n => sorted[(n - 1) / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.5), 50);
        assert_eq!(quantile(&samples, 0.99), 99);
        assert_eq!(quantile(&samples, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn summary_sorts_its_input() {
        let s = Summary::of(&[5, 1, 3]);
        assert_eq!((s.n, s.p50_ns, s.min_ns, s.max_ns), (3, 3, 1, 5));
    }

    #[test]
    fn lower_median_of_an_even_count() {
        assert_eq!(median_i64(&[4, -2, 9, 1]), 1);
        assert_eq!(median_i64(&[]), 0);
    }
}

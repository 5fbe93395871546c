//! A variant's samples set against a baseline measured in the same rounds.

use serde::Serialize;

use crate::stats::{self, Summary};

/// One variant's figures: over all its samples, per block, and against the
/// baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub all: Summary,
    pub block_p50_ns: Vec<u64>,
    pub vs_baseline: Versus,
}

/// The difference to the baseline. Per-block deltas pair each block with the
/// baseline's block of the same round, so their spread shows how much of the
/// overall delta is noise.
#[derive(Clone, Debug, Serialize)]
pub struct Versus {
    pub delta_p50_ns: i64,
    pub delta_p99_ns: i64,
    pub ratio_p50: f64,
    pub ratio_p99: f64,
    pub block_delta_p50_ns: Vec<i64>,
}

impl Versus {
    /// "median [min, max]" of the per-block p50 deltas.
    pub fn block_spread(&self) -> String {
        let d = &self.block_delta_p50_ns;
        let (min, max) = (
            d.iter().copied().min().unwrap_or(0),
            d.iter().copied().max().unwrap_or(0),
        );
        format!(
            "{} [{}, {}]",
            crate::report::signed(stats::median_i64(d)),
            crate::report::signed(min),
            crate::report::signed(max)
        )
    }
}

/// `blocks` (one sample set per round) against `baseline` (the same rounds).
pub fn measured(blocks: &[Vec<u64>], baseline: &[Vec<u64>]) -> Measured {
    assert_eq!(blocks.len(), baseline.len(), "the same rounds");
    let all = Summary::of(&blocks.concat());
    let base = Summary::of(&baseline.concat());
    let p50s = |bs: &[Vec<u64>]| -> Vec<u64> { bs.iter().map(|b| Summary::of(b).p50_ns).collect() };
    let block_p50_ns = p50s(blocks);
    let block_delta_p50_ns = block_p50_ns
        .iter()
        .zip(p50s(baseline))
        .map(|(&v, b)| stats::delta(b, v))
        .collect();
    Measured {
        all,
        block_p50_ns,
        vs_baseline: Versus {
            delta_p50_ns: stats::delta(base.p50_ns, all.p50_ns),
            delta_p99_ns: stats::delta(base.p99_ns, all.p99_ns),
            ratio_p50: stats::ratio(base.p50_ns, all.p50_ns),
            ratio_p99: stats::ratio(base.p99_ns, all.p99_ns),
            block_delta_p50_ns,
        },
    }
}

/// A correctness check of a scenario's setup, read back from the kernel's maps:
/// figures from a variant that did not exercise what it claims are worthless,
/// so a failed check fails the run (after the figures are written).
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub ok: bool,
    pub what: String,
}

impl Check {
    pub fn expect(ok: bool, what: String) -> Self {
        Self { ok, what }
    }

    pub fn note(&self) -> String {
        if self.ok {
            format!("check ok: {}", self.what)
        } else {
            format!("**CHECK FAILED**: {}", self.what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_pair_blocks_of_the_same_round() {
        let base = [vec![10, 10, 10], vec![20, 20, 20]];
        let variant = [vec![11, 11, 11], vec![25, 25, 25]];
        let m = measured(&variant, &base);
        assert_eq!(m.vs_baseline.block_delta_p50_ns, [1, 5]);
        assert_eq!(m.block_p50_ns, [11, 25]);
        assert_eq!(m.vs_baseline.delta_p50_ns, 1);
    }
}

//! Interleaving variants finely, inside one process.
//!
//! On a small VM the speed of a process jumps by tens of percent from one process
//! to the next and drifts within seconds, so blocks of whole seconds in separate
//! processes pair badly (an A/A comparison of two identical variants showed
//! ±10 µs between blocks of a 25 µs connect). So one round is one client process
//! that moves itself from variant to variant, a slice of attempts at a time, in
//! rotated order: a process may move itself to another cgroup, and a socket
//! belongs to the cgroup of the process that creates it, so the programs that
//! run for each attempt are those of the variant's cgroup. Each variant is then
//! paired with the baseline at a scale of milliseconds, in the same process.

use std::ffi::CString;

use enforcer_tests::{cgroup::ScratchCgroup, exec::Place};

use crate::client::{self, wire};

/// The variants' order in slice `slice`: a rotation (A B C D, B C D A, …), so
/// that each variant takes each position equally often.
pub fn order(slice: usize, variants: usize) -> impl Iterator<Item = usize> {
    (0..variants).map(move |k| (slice + k) % variants)
}

/// One variant's samples in one round: per attempt, the `connect()` time and
/// the whole-cycle time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub connect: Vec<u64>,
    pub cycle: Vec<u64>,
}

/// One variant's samples over the rounds, round by round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByRound {
    pub connect: Vec<Vec<u64>>,
    pub cycle: Vec<Vec<u64>>,
}

/// How a round is cut.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Round {
    /// Attempts per variant in the round.
    pub per_variant: usize,
    /// Attempts in one variant before the client moves to the next.
    pub slice: usize,
}

/// One round in a child pinned to `cpu`: `attempt(v)` is one timed attempt of
/// variant `v`, run from `cgroups[v]`, returning its `connect()` time and its
/// whole-cycle time (it panics on an outcome the variant does not expect). The
/// samples of each variant.
pub fn round(
    cgroups: &[&ScratchCgroup],
    round: Round,
    cpu: usize,
    attempt: impl Fn(usize) -> (u64, u64),
) -> Vec<Timings> {
    let procs: Vec<CString> = cgroups.iter().map(|c| c.procs_path()).collect();
    let n = round.per_variant;
    let out = Place::cgroup(cgroups[0]).run(|| {
        client::pin_to_cpu(cpu);
        let mut series = vec![
            Timings {
                connect: Vec::with_capacity(n),
                cycle: Vec::with_capacity(n),
            };
            cgroups.len()
        ];
        for slice in 0..n.div_ceil(round.slice) {
            for v in order(slice, cgroups.len()) {
                ScratchCgroup::join_raw(&procs[v])
                    .unwrap_or_else(|e| panic!("moving to {:?}: {e}", procs[v]));
                let t = &mut series[v];
                for _ in 0..round.slice.min(n - t.connect.len()) {
                    let (connect, cycle) = attempt(v);
                    t.connect.push(connect);
                    t.cycle.push(cycle);
                }
            }
        }
        let flat: Vec<&[u64]> = series
            .iter()
            .flat_map(|t| [t.connect.as_slice(), t.cycle.as_slice()])
            .collect();
        wire::encode(&flat)
    });
    let mut series = wire::decode(&out, 2 * cgroups.len()).into_iter();
    (0..cgroups.len())
        .map(|_| Timings {
            connect: series.next().unwrap(),
            cycle: series.next().unwrap(),
        })
        .collect()
}

/// Per variant, its samples of each round (`rounds[r][v]` → `[v]` by round).
pub fn by_variant(rounds: &[Vec<Timings>]) -> Vec<ByRound> {
    let variants = rounds.first().map_or(0, Vec::len);
    (0..variants)
        .map(|v| ByRound {
            connect: rounds.iter().map(|r| r[v].connect.clone()).collect(),
            cycle: rounds.iter().map(|r| r[v].cycle.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_rotate() {
        let seen: Vec<usize> = (0..3).flat_map(|s| order(s, 3)).collect();
        assert_eq!(seen, [0, 1, 2, 1, 2, 0, 2, 0, 1]);
    }

    #[test]
    fn rounds_regroup_by_variant() {
        let t = |c, y| Timings {
            connect: vec![c],
            cycle: vec![y],
        };
        let rounds = vec![vec![t(1, 2), t(3, 4)], vec![t(5, 6), t(7, 8)]];
        let v = by_variant(&rounds);
        assert_eq!(v[1].connect, [vec![3], vec![7]]);
        assert_eq!(v[1].cycle, [vec![4], vec![8]]);
    }
}

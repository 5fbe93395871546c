//! Keeping the per-policy counts (`POLICY_STATS`: tracked and open
//! destinations, which the group guard decides on) equal to what the
//! destination map holds.
//!
//! The hooks keep them exact with atomics, except in narrow races (a connect
//! between a forget's decision and its removal) and for what an older daemon
//! or a crash in between left behind. Every scan counts each policy's
//! destinations in the map and compares. A walk is not atomic, so a
//! difference is acted on only when it is stable: the counts did not move
//! while the map was walked, and the same difference was found by the
//! previous scan too. The correction is a signed delta the kernel adds
//! atomically, so changes made since the walk are kept.

use std::collections::BTreeMap;

use enforcer_common::{
    breaker::State,
    dest::{DestKey, DestState},
    policy::PolicyStats,
};

/// One policy's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub tracked: u64,
    pub open: u64,
}

impl From<&PolicyStats> for Counts {
    fn from(s: &PolicyStats) -> Self {
        Self {
            tracked: s.tracked,
            open: s.open,
        }
    }
}

/// Counts from the map: per policy id, its destinations and those not CLOSED.
/// Entries of id 0 (being created) count for no policy.
pub fn count(entries: &[(DestKey, DestState)]) -> BTreeMap<u32, Counts> {
    let mut out: BTreeMap<u32, Counts> = BTreeMap::new();
    for (_, s) in entries.iter().filter(|(_, s)| s.policy_id != 0) {
        let c = out.entry(s.policy_id).or_default();
        c.tracked += 1;
        c.open += u64::from(s.breaker.state != State::Closed as u32);
    }
    out
}

/// A correction to make: add `tracked` and `open` to policy `policy_id`'s
/// counts, which were `was` while the map held `counted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Correction {
    pub policy_id: u32,
    pub tracked: i64,
    pub open: i64,
    pub was: Counts,
    pub counted: Counts,
}

/// Differences found by the previous scan, waiting for a second sighting.
#[derive(Debug, Default)]
pub struct Reconciler {
    seen: BTreeMap<u32, (i64, i64)>,
}

impl Reconciler {
    /// The corrections to make now, from the policy counts read before and
    /// after the walk (indexed by id) and the walk's own `counted`.
    pub fn corrections(
        &mut self,
        before: &[PolicyStats],
        after: &[PolicyStats],
        counted: &BTreeMap<u32, Counts>,
    ) -> Vec<Correction> {
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        // Id 0 is no policy's: the gate never counts there.
        for (id, (b, a)) in before.iter().zip(after).enumerate().skip(1) {
            let (was, moved) = (Counts::from(a), Counts::from(b) != Counts::from(a));
            let counted = counted.get(&(id as u32)).copied().unwrap_or_default();
            let delta = (
                diff(counted.tracked, was.tracked),
                diff(counted.open, was.open),
            );
            if moved || delta == (0, 0) {
                continue;
            }
            let policy_id = id as u32;
            if self.seen.get(&policy_id) == Some(&delta) {
                out.push(Correction {
                    policy_id,
                    tracked: delta.0,
                    open: delta.1,
                    was,
                    counted,
                });
            } else {
                seen.insert(policy_id, delta);
            }
        }
        self.seen = seen;
        out
    }
}

fn diff(want: u64, have: u64) -> i64 {
    (i128::from(want) - i128::from(have)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(counts: &[(u64, u64)]) -> Vec<PolicyStats> {
        counts
            .iter()
            .map(|&(tracked, open)| PolicyStats {
                tracked,
                open,
                guard_refusals: 0,
            })
            .collect()
    }

    fn counted(entries: &[(u32, u64, u64)]) -> BTreeMap<u32, Counts> {
        entries
            .iter()
            .map(|&(id, tracked, open)| (id, Counts { tracked, open }))
            .collect()
    }

    #[test]
    fn the_map_is_counted_per_policy_and_state() {
        let dest = |policy_id, st| {
            let mut s = DestState::new(policy_id, 0);
            s.breaker.state = st;
            (DestKey::default(), s)
        };
        let entries = [
            dest(1, State::Closed as u32),
            dest(1, State::Open as u32),
            dest(1, State::HalfOpen as u32),
            dest(2, State::Closed as u32),
            dest(0, State::Closed as u32),
        ];
        assert_eq!(count(&entries), counted(&[(1, 3, 2), (2, 1, 0)]));
    }

    #[test]
    fn a_stable_difference_is_corrected_on_its_second_sighting() {
        let mut r = Reconciler::default();
        // Policy 1 claims 5 tracked, 2 open; the map holds 1 and 0.
        let s = stats(&[(0, 0), (5, 2), (3, 0)]);
        let map = counted(&[(1, 1, 0), (2, 3, 0)]);
        assert_eq!(r.corrections(&s, &s, &map), [], "first sighting: wait");
        let fixes = r.corrections(&s, &s, &map);
        assert_eq!(
            fixes,
            [Correction {
                policy_id: 1,
                tracked: -4,
                open: -2,
                was: Counts {
                    tracked: 5,
                    open: 2
                },
                counted: Counts {
                    tracked: 1,
                    open: 0
                },
            }]
        );
        assert_eq!(
            r.corrections(&s, &s, &map),
            [],
            "corrected once, then new sightings"
        );
    }

    #[test]
    fn counts_that_moved_during_the_walk_or_a_changing_difference_wait() {
        let mut r = Reconciler::default();
        let map = counted(&[(1, 2, 0)]);
        let before = stats(&[(0, 0), (1, 0)]);
        let after = stats(&[(0, 0), (0, 0)]);
        assert_eq!(r.corrections(&before, &after, &map), []);
        assert_eq!(r.corrections(&before, &after, &map), [], "moved each time");
        let s = stats(&[(0, 0), (0, 0)]);
        assert_eq!(r.corrections(&s, &s, &map), []);
        let other = counted(&[(1, 3, 0)]);
        assert_eq!(r.corrections(&s, &s, &other), [], "another difference");
        let fixes = r.corrections(&s, &s, &other);
        assert_eq!(
            (fixes[0].tracked, fixes[0].open),
            (3, 0),
            "under-counts are raised"
        );
    }

    #[test]
    fn a_difference_that_resolves_itself_is_forgotten() {
        let mut r = Reconciler::default();
        let s = stats(&[(0, 0), (2, 0)]);
        assert_eq!(r.corrections(&s, &s, &counted(&[(1, 1, 0)])), []);
        assert_eq!(r.corrections(&s, &s, &counted(&[(1, 2, 0)])), []);
        assert_eq!(
            r.corrections(&s, &s, &counted(&[(1, 1, 0)])),
            [],
            "a first sighting again"
        );
    }

    #[test]
    fn policies_without_destinations_are_brought_to_zero() {
        let mut r = Reconciler::default();
        let s = stats(&[(0, 0), (0, 0), (7, 7)]);
        r.corrections(&s, &s, &BTreeMap::new());
        let fixes = r.corrections(&s, &s, &BTreeMap::new());
        assert_eq!(
            (fixes[0].policy_id, fixes[0].tracked, fixes[0].open),
            (2, -7, -7)
        );
        assert_eq!(
            diff(0, u64::MAX),
            i64::MIN,
            "clamped: a wrapped count comes down over two corrections"
        );
    }
}

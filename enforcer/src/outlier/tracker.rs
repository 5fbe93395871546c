//! What the daemon remembers of each destination between outlier intervals
//! (its last read, its ejection count) and what one interval decides.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use enforcer_common::{
    breaker::State,
    dest::{DestKey, DestState},
};

use super::{Ejection, Interval, Measure, Reason, Settings, detect, ejection_time};

/// One policy with outlier detection, as a pass needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peers {
    pub policy_id: u32,
    pub epoch: u32,
    pub settings: Settings,
    pub max_open_percent: u32,
    /// The latency the latency detector compares.
    pub measure: Measure,
}

/// One ejection decided: whom, for how long (before jitter), why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eject {
    pub key: DestKey,
    pub policy_id: u32,
    /// Its ejections, this one included (decaying while healthy).
    pub count: u32,
    pub duration: Duration,
    pub reason: Reason,
}

/// What is kept of one destination's last read.
#[derive(Clone, Copy, Debug)]
struct Kept {
    policy_id: u32,
    generation: u64,
    read: DestState,
    ejections: u32,
}

/// Every outlier-detected destination's memory.
#[derive(Debug, Default)]
pub struct Tracker {
    dests: HashMap<DestKey, Kept>,
    /// The last ejection of each destination, for `status`.
    last: HashMap<DestKey, Eject>,
}

impl Tracker {
    /// One interval of `peers`, from `reads` (destinations of other
    /// policies are skipped).
    pub fn pass<'a>(
        &mut self,
        peers: &Peers,
        reads: impl IntoIterator<Item = (&'a DestKey, &'a DestState)>,
    ) -> Vec<Eject> {
        let mut intervals: Vec<(DestKey, Interval)> = Vec::new();
        let (mut tracked, mut open) = (0u64, 0u64);
        let mut seen = HashSet::new();
        for (key, state) in reads {
            if state.policy_id != peers.policy_id || state.policy_epoch != peers.epoch {
                continue;
            }
            tracked += 1;
            open += u64::from(state.breaker.state != State::Closed as u32);
            seen.insert(*key);
            let kept = self.dests.entry(*key).or_insert(Kept {
                policy_id: peers.policy_id,
                generation: state.generation,
                read: *state,
                ejections: 0,
            });
            let comparable =
                kept.policy_id == peers.policy_id && kept.generation == state.generation;
            if comparable && let Some(interval) = Interval::between(&kept.read, state) {
                intervals.push((*key, interval));
            } else {
                kept.ejections = 0;
            }
            kept.policy_id = peers.policy_id;
            kept.generation = state.generation;
            kept.read = *state;
        }
        self.dests
            .retain(|key, k| k.policy_id != peers.policy_id || seen.contains(key));
        self.last.retain(|key, _| self.dests.contains_key(key));
        let found: Vec<Ejection<DestKey>> = detect(
            &peers.settings,
            peers.measure,
            &intervals,
            open,
            tracked,
            peers.max_open_percent,
        );
        // A healthy interval (CLOSED, judged, not an outlier) takes one off
        // the count, so a destination ejected long ago starts short again.
        for (key, interval) in &intervals {
            if !interval.open
                && !found.iter().any(|e| e.key == *key)
                && let Some(kept) = self.dests.get_mut(key)
            {
                kept.ejections = kept.ejections.saturating_sub(1);
            }
        }
        let mut ejects = Vec::with_capacity(found.len());
        for e in found {
            let Some(kept) = self.dests.get_mut(&e.key) else {
                continue;
            };
            kept.ejections += 1;
            let eject = Eject {
                key: e.key,
                policy_id: peers.policy_id,
                count: kept.ejections,
                duration: ejection_time(&peers.settings, kept.ejections),
                reason: e.reason,
            };
            self.last.insert(e.key, eject);
            ejects.push(eject);
        }
        ejects
    }

    /// Forgets the destinations of policies that no longer detect outliers.
    pub fn keep_policies(&mut self, ids: &[u32]) {
        self.dests.retain(|_, k| ids.contains(&k.policy_id));
        self.last.retain(|key, _| self.dests.contains_key(key));
    }

    /// The last ejection of `key`, if it is remembered.
    pub fn last_of(&self, key: &DestKey) -> Option<&Eject> {
        self.last.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEERS: Peers = Peers {
        policy_id: 2,
        epoch: 9,
        settings: Settings::DEFAULT,
        max_open_percent: 100,
        measure: Measure::HandshakeP90,
    };

    fn key(i: u8) -> DestKey {
        DestKey::from_ipv4_raw(u32::from_ne_bytes([127, 0, 1, i]), 80)
    }

    fn fresh() -> Vec<(DestKey, DestState)> {
        (0..10)
            .map(|i| {
                let mut s = DestState::new(PEERS.policy_id, 0);
                s.policy_epoch = PEERS.epoch;
                s.generation = 1;
                (key(i), s)
            })
            .collect()
    }

    /// One interval: every destination 200 successes, `bad` half failures.
    fn traffic(reads: &mut [(DestKey, DestState)], bad: Option<usize>) {
        for (i, (_, s)) in reads.iter_mut().enumerate() {
            if Some(i) == bad {
                s.counters.successes += 100;
                s.counters.failures_refused += 100;
            } else {
                s.counters.successes += 200;
            }
        }
    }

    fn pass(t: &mut Tracker, reads: &[(DestKey, DestState)]) -> Vec<Eject> {
        t.pass(&PEERS, reads.iter().map(|(k, s)| (k, s)))
    }

    #[test]
    fn a_bad_destination_is_ejected_longer_each_time_and_shorter_after_health() {
        let mut t = Tracker::default();
        let mut reads = fresh();
        assert!(
            pass(&mut t, &reads).is_empty(),
            "a first read: nothing to compare"
        );
        traffic(&mut reads, Some(3));
        let e = pass(&mut t, &reads);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].key, e[0].count, e[0].duration.as_secs()),
            (key(3), 1, 30)
        );
        assert!(t.last_of(&key(3)).is_some());
        // Back, and bad again at once: the second ejection is twice as long.
        traffic(&mut reads, Some(3));
        let e = pass(&mut t, &reads);
        assert_eq!((e[0].count, e[0].duration.as_secs()), (2, 60));
        // Two healthy intervals take it back to none.
        traffic(&mut reads, None);
        pass(&mut t, &reads);
        traffic(&mut reads, None);
        pass(&mut t, &reads);
        traffic(&mut reads, Some(3));
        assert_eq!(pass(&mut t, &reads)[0].count, 1);
    }

    #[test]
    fn healthy_peers_are_never_ejected_and_open_ones_count_against_the_cap() {
        let mut t = Tracker::default();
        let mut reads = fresh();
        pass(&mut t, &reads);
        for _ in 0..50 {
            traffic(&mut reads, None);
            assert!(pass(&mut t, &reads).is_empty());
        }
        // Capped at 10 %: one open already leaves no room.
        let capped = Peers {
            max_open_percent: 10,
            ..PEERS
        };
        reads[0].1.breaker.state = State::Open as u32;
        traffic(&mut reads, Some(5));
        assert!(
            t.pass(&capped, reads.iter().map(|(k, s)| (k, s)))
                .is_empty()
        );
    }

    #[test]
    fn a_destination_tracked_anew_or_of_another_policy_starts_over() {
        let mut t = Tracker::default();
        let mut reads = fresh();
        pass(&mut t, &reads);
        traffic(&mut reads, Some(3));
        pass(&mut t, &reads);
        // Forgotten and tracked again: its counters restart.
        reads[3].1 = {
            let mut s = DestState::new(PEERS.policy_id, 5);
            s.policy_epoch = PEERS.epoch;
            s.generation = 2;
            s
        };
        traffic(&mut reads, Some(3));
        assert!(
            pass(&mut t, &reads).is_empty(),
            "no interval for a new entry"
        );
        reads[7].1.policy_id = 3;
        pass(&mut t, &reads);
        t.keep_policies(&[]);
        assert!(t.last_of(&key(3)).is_none());
    }
}

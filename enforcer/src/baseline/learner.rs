//! What the daemon keeps of each destination between windows, and one pass
//! over a policy's destinations: which baselines to write into the kernel.
//!
//! A destination starts over when its entry in the kernel is a new one
//! (forgotten and tracked again) or when it joined another policy; it goes on
//! from the baseline the kernel holds, so a restarted daemon does not forget
//! every destination's normal.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use enforcer_common::{
    baseline::Baseline,
    breaker::State,
    dest::{DestKey, DestState},
    policy::Policy,
};

use super::{Estimate, Settings};
use crate::interval::Interval;

/// A policy that learns baselines, as one pass needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learner {
    pub policy_id: u32,
    pub epoch: u32,
    pub settings: Settings,
    /// What the kernel reads of the policy: its thresholds from a baseline.
    pub policy: Policy,
    /// The breaker's window: one learning step.
    pub step: Duration,
}

/// A destination's baseline after a window it learned from: the kernel is
/// to hold it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learned {
    pub key: DestKey,
    pub policy_id: u32,
    pub baseline: Baseline,
}

#[derive(Clone, Debug)]
struct Dest {
    policy_id: u32,
    epoch: u32,
    generation: u64,
    read: DestState,
    estimate: Estimate,
}

/// Every learning destination's memory.
#[derive(Debug, Default)]
pub struct Learning {
    dests: HashMap<DestKey, Dest>,
}

impl Learning {
    /// One window of the destinations of the `due` policies, read from the
    /// kernel in `reads` (destinations of other policies are skipped). Those
    /// of a due policy that were not read are forgotten.
    pub fn pass<'a>(
        &mut self,
        due: &[Learner],
        reads: impl IntoIterator<Item = (&'a DestKey, &'a DestState)>,
    ) -> Vec<Learned> {
        let mut learned = Vec::new();
        let mut seen = HashSet::new();
        for (key, state) in reads {
            let Some(learner) = due
                .iter()
                .find(|l| l.policy_id == state.policy_id && l.epoch == state.policy_epoch)
            else {
                continue;
            };
            seen.insert(*key);
            learned.extend(self.window(key, state, learner));
        }
        self.dests
            .retain(|key, d| seen.contains(key) || !due.iter().any(|l| l.policy_id == d.policy_id));
        learned
    }

    /// Forgets the destinations of policies that no longer learn baselines
    /// (`learning` holds the ids of those that do).
    pub fn keep_policies(&mut self, learning: &[u32]) {
        self.dests.retain(|_, d| learning.contains(&d.policy_id));
    }

    fn window(&mut self, key: &DestKey, state: &DestState, l: &Learner) -> Option<Learned> {
        let same = |d: &Dest| {
            d.policy_id == l.policy_id && d.epoch == l.epoch && d.generation == state.generation
        };
        let dest = match self.dests.get_mut(key) {
            Some(d) if same(d) => d,
            _ => {
                // A first read: nothing to compare with yet; go on from
                // what the kernel holds.
                self.dests.insert(
                    *key,
                    Dest {
                        policy_id: l.policy_id,
                        epoch: l.epoch,
                        generation: state.generation,
                        read: *state,
                        estimate: Estimate::resume(&state.baseline),
                    },
                );
                return None;
            }
        };
        let interval = Interval::between(&dest.read, state);
        // Not CLOSED at the start either: the window straddles an open
        // period, whatever its end says.
        let closed_before = dest.read.breaker.state == State::Closed as u32;
        let tripped = state.counters.trips != dest.read.counters.trips;
        dest.read = *state;
        let w = interval.filter(|_| closed_before && !tripped)?;
        if !dest
            .estimate
            .learn(&w, l.step, &l.settings, &l.policy, &state.baseline)
        {
            return None;
        }
        Some(Learned {
            key: *key,
            policy_id: l.policy_id,
            baseline: dest.estimate.baseline(w.completed()),
        })
    }
}

//! What the daemon remembers between intervals for each destination of an
//! adaptive policy, and what one pass over the destinations decides: which
//! limits to write into the kernel and which changes to announce.
//!
//! A destination's learner starts over when its entry in the kernel is a new
//! one (forgotten and tracked again), when it joined another policy, or when
//! its policy's settings changed; it goes on from the limit the kernel holds,
//! so a restarted daemon does not drop every learned cap back to `initial`.

use std::collections::HashMap;

use enforcer_common::dest::{DestKey, DestState};

use super::{Change, Limiter, Reading, Reason, Sample, Settings};

/// An adaptive policy, as one pass needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learner {
    /// The policy's kernel id and epoch.
    pub policy_id: u32,
    pub epoch: u32,
    pub settings: Settings,
}

/// One destination's decision in a pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub key: DestKey,
    pub policy_id: u32,
    pub change: Change,
    /// The kernel holds another limit: write `change.limit`.
    pub write: bool,
    /// The limit moved far enough from the last one announced to be an
    /// event (a limit probing around its value every interval is not news).
    pub announce: bool,
}

/// What is kept of one destination.
#[derive(Clone, Debug)]
struct Dest {
    policy_id: u32,
    epoch: u32,
    generation: u64,
    settings: Settings,
    limiter: Limiter,
    before: Reading,
    announced: u32,
    last: Option<Change>,
}

/// Every adaptive destination's learner.
#[derive(Debug, Default)]
pub struct Learning {
    dests: HashMap<DestKey, Dest>,
}

/// A change worth an event: the first limit learnt, or a move of at least a
/// tenth (at least one) from the last one announced.
fn worth_announcing(announced: u32, limit: u32) -> bool {
    limit.abs_diff(announced) >= (announced / 10).max(1)
}

impl Learning {
    /// One interval of the destinations of `due` policies, read from the
    /// kernel in `reads` (destinations of other policies are skipped). Those
    /// of a due policy that were not read are forgotten.
    pub fn pass<'a>(
        &mut self,
        due: &[Learner],
        reads: impl IntoIterator<Item = (&'a DestKey, &'a DestState)>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (key, state) in reads {
            let Some(policy) = due
                .iter()
                .find(|p| p.policy_id == state.policy_id && p.epoch == state.policy_epoch)
            else {
                continue;
            };
            seen.insert(*key);
            steps.push(self.step(key, state, policy));
        }
        self.dests
            .retain(|key, d| seen.contains(key) || !due.iter().any(|p| p.policy_id == d.policy_id));
        steps
    }

    /// Forgets the destinations of policies that are no longer adaptive
    /// (`adaptive` holds the ids of those that are).
    pub fn keep_policies(&mut self, adaptive: &[u32]) {
        self.dests.retain(|_, d| adaptive.contains(&d.policy_id));
    }

    fn step(&mut self, key: &DestKey, state: &DestState, policy: &Learner) -> Step {
        let reading = Reading::of(state);
        let kernel = state.breaker.limit;
        let same = |d: &Dest| {
            d.policy_id == policy.policy_id
                && d.epoch == policy.epoch
                && d.generation == state.generation
                && d.settings == policy.settings
        };
        let dest = match self.dests.get_mut(key) {
            Some(d) if same(d) => d,
            _ => {
                // A first read: nothing to compare with yet. The kernel's
                // limit (an earlier daemon's) is where the limiter goes on.
                let resumed = if kernel == 0 {
                    policy.settings.initial
                } else {
                    kernel
                };
                let limiter = Limiter::resume(policy.settings, resumed);
                let change = Change {
                    previous: kernel,
                    limit: limiter.limit(),
                    reason: Reason::NoSample,
                    sample: None,
                    baseline: None,
                    long: None,
                };
                self.dests.insert(
                    *key,
                    Dest {
                        policy_id: policy.policy_id,
                        epoch: policy.epoch,
                        generation: state.generation,
                        settings: policy.settings,
                        before: reading,
                        announced: limiter.limit(),
                        last: Some(change),
                        limiter,
                    },
                );
                return Step {
                    key: *key,
                    policy_id: policy.policy_id,
                    change,
                    write: kernel != change.limit,
                    announce: false,
                };
            }
        };
        let change = dest.limiter.update(Sample::between(&dest.before, &reading));
        dest.before = reading;
        dest.last = Some(change);
        let announce = worth_announcing(dest.announced, change.limit);
        if announce {
            dest.announced = change.limit;
        }
        Step {
            key: *key,
            policy_id: policy.policy_id,
            change,
            write: kernel != change.limit,
            announce,
        }
    }

    /// The last decision for each destination (status, metrics).
    pub fn last(&self) -> impl Iterator<Item = (&DestKey, &Change)> {
        self.dests
            .iter()
            .filter_map(|(key, d)| d.last.as_ref().map(|c| (key, c)))
    }

    /// The last decision for `key`.
    pub fn last_of(&self, key: &DestKey) -> Option<&Change> {
        self.dests.get(key).and_then(|d| d.last.as_ref())
    }

    pub fn len(&self) -> usize {
        self.dests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const POLICY: Learner = Learner {
        policy_id: 3,
        epoch: 77,
        settings: Settings {
            algorithm: super::super::Algorithm::Aimd,
            min: 2,
            max: 50,
            initial: 10,
            smoothing: 0.2,
            tolerance: 1.25,
            baseline_window: 600,
        },
    };

    fn dest(port: u16) -> DestKey {
        DestKey::from_ipv4_raw(u32::from_ne_bytes([10, 0, 0, 1]), port)
    }

    fn state(policy: &Learner, generation: u64) -> DestState {
        let mut s = DestState::new(policy.policy_id, 0);
        s.policy_epoch = policy.epoch;
        s.generation = generation;
        s
    }

    /// `n` connections of `latency` complete, `active` open at the end.
    fn traffic(s: &mut DestState, n: u64, latency: Duration, active: u32) {
        for _ in 0..n {
            s.signal.record(latency.as_nanos() as u64);
        }
        s.breaker.active = active;
    }

    #[test]
    fn a_first_read_writes_the_initial_limit_then_samples_move_it() {
        let mut learning = Learning::default();
        let mut s = state(&POLICY, 1);
        let key = dest(80);
        let [first] = learning.pass(&[POLICY], [(&key, &s)])[..] else {
            panic!("one step")
        };
        assert_eq!((first.change.limit, first.write), (10, true));
        s.breaker.limit = 10;
        // Busy and fast: AIMD adds one per interval.
        let mut limits = Vec::new();
        for _ in 0..3 {
            traffic(&mut s, 20, Duration::from_millis(1), 9);
            let [step] = learning.pass(&[POLICY], [(&key, &s)])[..] else {
                panic!("one step")
            };
            assert!(step.write, "{step:?}");
            s.breaker.limit = step.change.limit;
            limits.push((step.change.limit, step.announce));
        }
        assert_eq!(limits, [(11, true), (12, true), (13, true)]);
        // Latency far above the baseline: shrinks by a tenth.
        traffic(&mut s, 20, Duration::from_millis(5), 13);
        let [step] = learning.pass(&[POLICY], [(&key, &s)])[..] else {
            panic!("one step")
        };
        assert_eq!(step.change.reason, Reason::Shrank);
        assert!(step.change.limit < 13 && step.write);
        // Nothing completed: the limit holds, nothing to write.
        s.breaker.limit = step.change.limit;
        let [idle] = learning.pass(&[POLICY], [(&key, &s)])[..] else {
            panic!("one step")
        };
        assert_eq!(idle.change.reason, Reason::NoSample);
        assert!(!idle.write && !idle.announce);
    }

    #[test]
    fn a_restarted_daemon_goes_on_from_the_kernels_limit() {
        let mut learning = Learning::default();
        let mut s = state(&POLICY, 1);
        s.breaker.limit = 37;
        let key = dest(80);
        let [step] = learning.pass(&[POLICY], [(&key, &s)])[..] else {
            panic!("one step")
        };
        assert_eq!((step.change.limit, step.write), (37, false));
    }

    #[test]
    fn a_new_entry_another_policy_or_new_settings_start_over() {
        let mut learning = Learning::default();
        let key = dest(80);
        let mut s = state(&POLICY, 1);
        learning.pass(&[POLICY], [(&key, &s)]);
        s.breaker.limit = 10;
        for _ in 0..5 {
            traffic(&mut s, 20, Duration::from_millis(1), 9);
            let steps = learning.pass(&[POLICY], [(&key, &s)]);
            s.breaker.limit = steps[0].change.limit;
        }
        assert_eq!(s.breaker.limit, 15);
        // Forgotten and tracked again: a fresh entry starts at initial.
        let fresh = state(&POLICY, 2);
        let steps = learning.pass(&[POLICY], [(&key, &fresh)]);
        assert_eq!(
            (steps[0].change.limit, steps[0].change.reason),
            (10, Reason::NoSample)
        );
        // New settings: the learner starts over from the kernel's limit,
        // within the new bounds.
        let mut narrower = POLICY;
        narrower.settings.max = 8;
        let mut s = state(&POLICY, 2);
        s.breaker.limit = 15;
        let steps = learning.pass(&[narrower], [(&key, &s)]);
        assert_eq!((steps[0].change.limit, steps[0].write), (8, true));
        // Another policy's destination is not this pass's business.
        let mut other = state(&POLICY, 2);
        other.policy_id = 4;
        assert!(learning.pass(&[narrower], [(&key, &other)]).is_empty());
        assert!(learning.is_empty(), "not read again: forgotten");
    }

    #[test]
    fn only_moves_of_a_tenth_are_announced() {
        assert!(worth_announcing(10, 11));
        assert!(!worth_announcing(100, 109));
        assert!(worth_announcing(100, 90));
        assert!(!worth_announcing(100, 100));
    }

    #[test]
    fn destinations_of_policies_no_longer_adaptive_are_forgotten() {
        let mut learning = Learning::default();
        let (a, b) = (dest(80), dest(81));
        let other = Learner {
            policy_id: 4,
            ..POLICY
        };
        let mut sb = state(&other, 1);
        sb.policy_id = 4;
        learning.pass(&[POLICY, other], [(&a, &state(&POLICY, 1)), (&b, &sb)]);
        assert_eq!(learning.len(), 2);
        learning.keep_policies(&[4]);
        assert_eq!(learning.len(), 1);
        assert!(learning.last_of(&b).is_some());
    }
}

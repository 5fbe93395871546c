//! The daemon's periodic passes over some policies' destinations (adaptive
//! limits, outlier detection): whose turn has come, and the loop that takes
//! each pass's work under the daemon's lock, runs it on a blocking thread
//! without the lock (a pass over many destinations takes tens of
//! milliseconds, which must not stall the API or the controller), and hands
//! what it did back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use enforcer_common::dest::{DestKey, DestState};

use super::{Daemon, RunningPolicy, Shared, lock};
use crate::bpf::{BpfError, Control, Dests};

/// How often the loops look whose turn it is.
const TICK: Duration = Duration::from_millis(100);

/// Every [`TICK`]: `take` the due work (under the daemon's lock, through
/// `schedule`), `run` it off the lock, and `done` with what it did; errors
/// are logged as `what`'s.
pub async fn run_turns<P, T>(
    shared: Shared,
    what: &'static str,
    take: impl Fn(&Shared, &mut Schedule) -> Option<P>,
    run: fn(P) -> Result<T, BpfError>,
    done: impl Fn(&Shared, T),
) where
    P: Send + 'static,
    T: Send + 'static,
{
    let mut tick = tokio::time::interval(TICK);
    let mut schedule = Schedule::default();
    loop {
        tick.tick().await;
        let Some(pass) = take(&shared, &mut schedule) else {
            continue;
        };
        match tokio::task::spawn_blocking(move || run(pass)).await {
            Ok(Ok(out)) => done(&shared, out),
            Ok(Err(e)) => tracing::error!("{what}: {e}"),
            Err(e) => tracing::error!("{what}: the pass failed: {e}"),
        }
    }
}

/// What a pass keeps between turns, policy by policy.
pub trait Memory: Send + 'static {
    /// Forgets what is kept for policies other than `ids`.
    fn keep_policies(&mut self, ids: &[u32]);
}

impl Memory for crate::adaptive::Learning {
    fn keep_policies(&mut self, ids: &[u32]) {
        Self::keep_policies(self, ids);
    }
}

impl Memory for crate::baseline::Learning {
    fn keep_policies(&mut self, ids: &[u32]) {
        Self::keep_policies(self, ids);
    }
}

impl Memory for crate::outlier::Tracker {
    fn keep_policies(&mut self, ids: &[u32]) {
        Self::keep_policies(self, ids);
    }
}

/// One pass's work, taken from the daemon under its lock: what it needs of
/// each due policy, the destinations to read, the control program to write
/// with, and its memory (shared with the status and the metrics).
pub struct Pass<T, M> {
    pub due: Vec<T>,
    pub dests: Arc<Dests>,
    pub control: Arc<Control>,
    pub memory: Arc<Mutex<M>>,
}

impl<T, M> Pass<T, M> {
    pub fn memory(&self) -> MutexGuard<'_, M> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pass of the policies whose turn has come, if any. `serves` says
/// whether the pass serves a policy: at which interval, and what it needs of
/// it; `memory` finds the pass's memory in the daemon, where what it keeps
/// for policies it no longer serves is forgotten.
pub fn take<T, M: Memory>(
    shared: &Shared,
    schedule: &mut Schedule,
    memory: impl Fn(&Daemon) -> &Arc<Mutex<M>>,
    serves: impl Fn(&RunningPolicy) -> Option<(Duration, T)>,
) -> Option<Pass<T, M>> {
    let d = lock(shared);
    let memory = memory(&d).clone();
    let served = d
        .policies
        .iter()
        .filter_map(|p| serves(p).map(|(interval, t)| (p.id, interval, t)));
    let due = schedule.due(served, Instant::now(), |ids| {
        memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keep_policies(ids);
    });
    if due.is_empty() {
        return None;
    }
    Some(Pass {
        due,
        dests: d.enforcer.maps().dests.clone(),
        control: d.enforcer.control().clone(),
        memory,
    })
}

/// The destinations of the policies `ids`, each read under its lock.
pub fn read_policies(dests: &Dests, ids: &[u32]) -> Result<Vec<(DestKey, DestState)>, BpfError> {
    let mut reads = Vec::new();
    dests.each(|key, state| {
        if ids.contains(&state.policy_id) {
            reads.push((*key, *state));
        }
    })?;
    Ok(reads)
}

/// When each policy last had its turn.
#[derive(Debug, Default)]
pub struct Schedule(HashMap<u32, Instant>);

/// One tick's turns.
pub struct Turns {
    /// The policies whose interval has passed (or that never had a turn),
    /// marked as served now.
    pub due: Vec<u32>,
    /// Some policy that had turns is no longer in the list: what a pass keeps
    /// for it may go.
    pub dropped: bool,
}

impl Schedule {
    /// Of `policies` (id, interval, what a pass needs of it), those whose
    /// turn has come at `now`; `forget` is handed the ids still scheduled
    /// when a policy dropped out, so the pass's memory of it can go.
    pub fn due<T>(
        &mut self,
        policies: impl IntoIterator<Item = (u32, Duration, T)>,
        now: Instant,
        forget: impl FnOnce(&[u32]),
    ) -> Vec<T> {
        let policies: Vec<(u32, Duration, T)> = policies.into_iter().collect();
        let intervals: Vec<(u32, Duration)> = policies
            .iter()
            .map(|(id, interval, _)| (*id, *interval))
            .collect();
        let turns = self.turns(&intervals, now);
        if turns.dropped {
            let ids: Vec<u32> = intervals.iter().map(|(id, _)| *id).collect();
            forget(&ids);
        }
        policies
            .into_iter()
            .filter(|(id, _, _)| turns.due.contains(id))
            .map(|(_, _, t)| t)
            .collect()
    }

    /// The turns of `policies` (id, interval) at `now`.
    pub fn turns(&mut self, policies: &[(u32, Duration)], now: Instant) -> Turns {
        let before = self.0.len();
        self.0.retain(|id, _| policies.iter().any(|(p, _)| p == id));
        let dropped = self.0.len() != before;
        let due: Vec<u32> = policies
            .iter()
            .filter(|(id, interval)| {
                self.0
                    .get(id)
                    .is_none_or(|at| now.duration_since(*at) >= *interval)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.0.insert(*id, now);
        }
        Turns { due, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_has_its_turn_once_per_interval() {
        let mut s = Schedule::default();
        let t0 = Instant::now();
        let (fast, slow) = ((1, Duration::from_secs(1)), (2, Duration::from_secs(10)));
        assert_eq!(s.turns(&[fast, slow], t0).due, [1, 2]);
        assert!(
            s.turns(&[fast, slow], t0 + Duration::from_millis(500))
                .due
                .is_empty()
        );
        assert_eq!(s.turns(&[fast, slow], t0 + Duration::from_secs(1)).due, [1]);
        let later = s.turns(&[fast], t0 + Duration::from_secs(10));
        assert_eq!((later.due, later.dropped), (vec![1], true));
        assert!(!s.turns(&[fast], t0 + Duration::from_secs(11)).dropped);
    }
}

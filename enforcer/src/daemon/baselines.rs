//! The baseline loop (`failure_rate = "auto"`, `slow_connect = "auto"`):
//! every policy's breaker window, read its destinations, learn each one's
//! normal from the window ([`crate::baseline::Learning`]) and write it into
//! the kernel through the control program (`SET_BASELINE`, under the
//! destination's lock, only for the policy and epoch it was learned under),
//! where the breaker trips on it.
//!
//! Read and written on a blocking thread without the daemon's lock, as the
//! learning loop does ([`super::learn`]).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use enforcer_common::control::Command;

use super::{
    Shared, lock,
    schedule::{self, Schedule},
};
use crate::{
    baseline::{Learner, Learning},
    bpf::{BpfError, Control, Dests},
};

/// The destinations' baselines as the daemon keeps them.
pub type SharedBaselines = Arc<Mutex<Learning>>;

pub async fn run(shared: Shared) {
    schedule::run_turns(shared, "baselines", due, Pass::run, |_, ()| {}).await;
}

/// One pass's work, taken from the daemon under its lock.
struct Pass {
    due: Vec<Learner>,
    dests: Arc<Dests>,
    control: Arc<Control>,
    learning: SharedBaselines,
}

/// The pass of the learning policies whose window has come, if any;
/// forgets what is kept for policies that no longer learn.
fn due(shared: &Shared, schedule: &mut Schedule) -> Option<Pass> {
    let d = lock(shared);
    let learning = d.baselines.clone();
    let learners = d.policies.iter().filter_map(|p| {
        let learner = Learner {
            policy_id: p.id,
            epoch: p.spec.epoch(),
            settings: p.spec.baseline?,
            policy: p.spec.kernel(None),
            step: p.spec.window,
        };
        Some((p.id, p.spec.window, learner))
    });
    let due = schedule.due(learners, Instant::now(), |ids| {
        learning
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
        learning,
    })
}

impl Pass {
    /// Reads the due policies' destinations, learns, writes the baselines
    /// that changed.
    fn run(self) -> Result<(), BpfError> {
        let ids: Vec<u32> = self.due.iter().map(|l| l.policy_id).collect();
        let reads = schedule::read_policies(&self.dests, &ids)?;
        let learned = self
            .learning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pass(&self.due, reads.iter().map(|(k, s)| (k, s)));
        for l in learned.iter().filter(|l| l.write) {
            // Not applied: the destination left the policy or was forgotten
            // since the read; the next pass sees it as it is.
            self.control
                .run(&Command::set_baseline(l.key, l.policy_id, &l.baseline))?;
        }
        Ok(())
    }
}

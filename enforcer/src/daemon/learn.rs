//! The learning loop of adaptive policies (`max_connections = "auto"`): every
//! policy's interval, read its destinations, move each one's limit
//! ([`crate::adaptive::Learning`]) and write the limits that changed into the
//! kernel through the control program (`SET_LIMIT`, under the destination's
//! lock, only for the policy and epoch it was learnt under).
//!
//! The map is read and the limits written on a blocking thread without the
//! daemon's lock: with many destinations a pass takes tens of milliseconds,
//! which must not stall the API or the controller.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use enforcer_common::control::Command;

use super::{
    Shared, lock,
    notices::dest_event,
    schedule::{self, Schedule},
};
use crate::{
    adaptive::{Learner, Learning, Step},
    api::LimitChange,
    bpf::{BpfError, Control, Dests},
};

/// The learners, shared with the status and the metrics.
pub type SharedLearning = Arc<Mutex<Learning>>;

pub async fn run(shared: Shared) {
    schedule::run_turns(shared, "adaptive limits", due, Pass::run, announce).await;
}

/// One pass's work, taken from the daemon under its lock.
struct Pass {
    due: Vec<Learner>,
    dests: Arc<Dests>,
    control: Arc<Control>,
    learning: SharedLearning,
}

/// The pass of the adaptive policies whose interval has come, if any; forgets
/// the learners of policies that are no longer adaptive.
fn due(shared: &Shared, schedule: &mut Schedule) -> Option<Pass> {
    let d = lock(shared);
    let learning = d.learning.clone();
    let adaptive = d.policies.iter().filter_map(|p| {
        let a = p.spec.adaptive?;
        let learner = Learner {
            policy_id: p.id,
            epoch: p.spec.epoch(),
            settings: a.settings,
        };
        Some((p.id, a.interval, learner))
    });
    let due = schedule.due(adaptive, Instant::now(), |ids| {
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
    /// Reads the due policies' destinations, decides, writes the limits that
    /// changed.
    fn run(self) -> Result<(Vec<Learner>, Vec<Step>), BpfError> {
        let ids: Vec<u32> = self.due.iter().map(|l| l.policy_id).collect();
        let reads = schedule::read_policies(&self.dests, &ids)?;
        let steps = self
            .learning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pass(&self.due, reads.iter().map(|(k, s)| (k, s)));
        for step in steps.iter().filter(|s| s.write) {
            let command = Command::set_limit(step.key, step.policy_id, step.change.limit);
            // Not applied: the destination left the policy or was forgotten
            // since the read; the next pass sees it as it is.
            self.control.run(&command)?;
        }
        Ok((self.due, steps))
    }
}

/// Publishes the changes worth an event.
fn announce(shared: &Shared, (due, steps): (Vec<Learner>, Vec<Step>)) {
    let d = lock(shared);
    for step in steps.iter().filter(|s| s.announce) {
        let Some(learner) = due.iter().find(|l| l.policy_id == step.policy_id) else {
            continue;
        };
        let change = LimitChange::from(&step.change);
        let detail = format!("{} → {} ({})", change.previous, change.limit, change.reason);
        let mut event = dest_event(
            "limit_changed",
            &step.key,
            d.namespaces.label(step.key.netns),
            &detail,
        );
        event.policy = Some(d.policy_name(learner.policy_id).to_owned());
        event.limit = Some(change);
        d.publish(event);
    }
}

//! The learning loop of adaptive policies (`max_connections = "auto"`): every
//! policy's interval, read its destinations, move each one's limit
//! ([`crate::adaptive::Learning`]) and write the limits that changed into the
//! kernel through the control program (`SET_LIMIT`, under the destination's
//! lock, only for the policy and epoch it was learnt under).
//!
//! The map is read and the limits written on a blocking thread without the
//! daemon's lock: with many destinations a pass takes tens of milliseconds,
//! which must not stall the API or the controller.

use std::sync::{Arc, Mutex};

use enforcer_common::control::Command;

use super::{
    Shared, lock,
    notices::dest_event,
    schedule::{self, Pass, Schedule},
};
use crate::{
    adaptive::{Learner, Learning, Step},
    api::LimitChange,
    bpf::BpfError,
};

/// The learners, shared with the status and the metrics.
pub type SharedLearning = Arc<Mutex<Learning>>;

pub async fn run(shared: Shared) {
    schedule::run_turns(shared, "adaptive limits", due, run_pass, announce).await;
}

type LearningPass = Pass<Learner, Learning>;

/// The pass of the adaptive policies whose interval has come, if any.
fn due(shared: &Shared, schedule: &mut Schedule) -> Option<LearningPass> {
    schedule::take(
        shared,
        schedule,
        |d| &d.learning,
        |p| {
            let a = p.spec.adaptive?;
            let learner = Learner {
                policy_id: p.id,
                epoch: p.spec.epoch(),
                settings: a.settings,
            };
            Some((a.interval, learner))
        },
    )
}

/// Reads the due policies' destinations, decides, writes the limits that
/// changed.
fn run_pass(pass: LearningPass) -> Result<(Vec<Learner>, Vec<Step>), BpfError> {
    let ids: Vec<u32> = pass.due.iter().map(|l| l.policy_id).collect();
    let reads = schedule::read_policies(&pass.dests, &ids)?;
    let steps = pass
        .memory()
        .pass(&pass.due, reads.iter().map(|(k, s)| (k, s)));
    for step in steps.iter().filter(|s| s.write) {
        let command = Command::set_limit(step.key, step.policy_id, step.change.limit);
        // Not applied: the destination left the policy or was forgotten
        // since the read; the next pass sees it as it is.
        pass.control.run(&command)?;
    }
    Ok((pass.due, steps))
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

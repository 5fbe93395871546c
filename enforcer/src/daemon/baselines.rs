//! The baseline loop (`failure_rate = "auto"`, `slow_connect = "auto"`):
//! every policy's breaker window, read its destinations, learn each one's
//! normal from the window ([`crate::baseline::Learning`]) and write it into
//! the kernel through the control program (`SET_BASELINE`, under the
//! destination's lock, only for the policy and epoch it was learned under),
//! where the breaker trips on it.
//!
//! Read and written on a blocking thread without the daemon's lock, as the
//! learning loop does ([`super::learn`]).

use std::sync::{Arc, Mutex};

use enforcer_common::control::Command;

use super::{
    Shared,
    schedule::{self, Pass, Schedule},
};
use crate::{
    baseline::{Learner, Learning},
    bpf::BpfError,
};

/// The destinations' baselines as the daemon keeps them.
pub type SharedBaselines = Arc<Mutex<Learning>>;

pub async fn run(shared: Shared) {
    schedule::run_turns(shared, "baselines", due, run_pass, |_, ()| {}).await;
}

type BaselinePass = Pass<Learner, Learning>;

/// The pass of the learning policies whose window has come, if any.
fn due(shared: &Shared, schedule: &mut Schedule) -> Option<BaselinePass> {
    schedule::take(
        shared,
        schedule,
        |d| &d.baselines,
        |p| {
            let learner = Learner {
                policy_id: p.id,
                epoch: p.spec.epoch(),
                settings: p.spec.baseline?,
                policy: p.spec.kernel(None),
                step: p.spec.window,
            };
            Some((p.spec.window, learner))
        },
    )
}

/// Reads the due policies' destinations, learns, writes what was learned.
fn run_pass(pass: BaselinePass) -> Result<(), BpfError> {
    let ids: Vec<u32> = pass.due.iter().map(|l| l.policy_id).collect();
    let reads = schedule::read_policies(&pass.dests, &ids)?;
    let learned = pass
        .memory()
        .pass(&pass.due, reads.iter().map(|(k, s)| (k, s)));
    for l in &learned {
        // Not applied: the destination left the policy or was forgotten
        // since the read; the next pass sees it as it is.
        pass.control
            .run(&Command::set_baseline(l.key, l.policy_id, &l.baseline))?;
    }
    Ok(())
}

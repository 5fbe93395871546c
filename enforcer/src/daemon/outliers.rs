//! The outlier detection loop (`[policy.outlier]`): every policy's interval,
//! read its destinations, judge each against its peers
//! ([`crate::outlier::Tracker`]) and eject the outliers through the control
//! program (`EJECT`, under the destination's lock, only for the policy and
//! epoch they were judged under; the group guard still has the last word).
//! An ejected destination comes back through the breaker's half-open probes.
//!
//! Read and written on a blocking thread without the daemon's lock, as the
//! learning loop does ([`super::learn`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use enforcer_common::{control::Command, policy::Signal};

use super::{
    Shared, lock,
    notices::dest_event,
    schedule::{self, Pass, Schedule},
};
use crate::{
    api::EjectionView,
    bpf::{Applied, BpfError},
    clock::Jitter,
    outlier::{Eject, Measure, Peers, Tracker},
};

/// The trackers' memory, shared with the status.
pub type SharedTracker = Arc<Mutex<Tracker>>;

/// Ejections applied, by policy name and reason (metrics).
pub type Ejections = HashMap<(String, &'static str), u64>;

pub async fn run(shared: Shared) {
    schedule::run_turns(shared, "outlier detection", due, run_pass, announce).await;
}

/// Each due policy's peers and jitter.
type DetectionPass = Pass<(Peers, f64), Tracker>;

/// The pass of the policies whose outlier interval has come, if any.
fn due(shared: &Shared, schedule: &mut Schedule) -> Option<DetectionPass> {
    schedule::take(
        shared,
        schedule,
        |d| &d.outliers,
        |p| {
            let settings = p.spec.outlier?;
            let peers = Peers {
                policy_id: p.id,
                epoch: p.spec.epoch(),
                settings,
                max_open_percent: p.spec.max_open_percent,
                // Where the policy measures the response latency, that is the
                // latency its callers wait for.
                measure: match p.spec.adaptive.map(|a| a.signal) {
                    Some(Signal::Response) => Measure::ResponseMean,
                    _ => Measure::HandshakeP90,
                },
            };
            Some((settings.interval, (peers, p.spec.jitter)))
        },
    )
}

/// Reads the due policies' destinations, judges them, ejects the outliers;
/// those the kernel applied.
fn run_pass(pass: DetectionPass) -> Result<Vec<Eject>, BpfError> {
    let ids: Vec<u32> = pass.due.iter().map(|(p, _)| p.policy_id).collect();
    let reads = schedule::read_policies(&pass.dests, &ids)?;
    let mut tracker = pass.memory();
    let mut jitter = Jitter::seeded();
    let mut applied = Vec::new();
    for (peers, spread) in &pass.due {
        let of_policy = reads
            .iter()
            .filter(|(_, s)| s.policy_id == peers.policy_id)
            .map(|(k, s)| (k, s));
        for eject in tracker.pass(peers, of_policy) {
            // The policy's jitter, so that destinations ejected together
            // do not come back together.
            let scale = 1.0 + spread * (2.0 * jitter.unit() - 1.0);
            let ns = (eject.duration.as_secs_f64() * scale * 1e9) as u64;
            let command = Command::eject(eject.key, eject.policy_id, ns);
            if pass.control.run(&command)? == Applied::Applied {
                applied.push(Eject {
                    duration: Duration::from_nanos(ns),
                    ..eject
                });
            }
        }
    }
    Ok(applied)
}

/// Publishes each ejection with its evidence and counts it.
fn announce(shared: &Shared, applied: Vec<Eject>) {
    let mut d = lock(shared);
    for eject in &applied {
        let policy = d.policy_name(eject.policy_id).to_owned();
        let view = EjectionView::from(eject);
        *d.ejections
            .entry((policy.clone(), eject.reason.name()))
            .or_default() += 1;
        let mut event = dest_event(
            "outlier",
            &eject.key,
            d.namespaces.label(eject.key.netns),
            &view.summary(),
        );
        event.policy = Some(policy);
        event.ejection = Some(view);
        d.publish(event);
    }
}

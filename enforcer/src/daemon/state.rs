//! The daemon's state: one [`Daemon`] behind a mutex, and the policy set as
//! it runs. Every operation on it is a handful of map syscalls; one lock keeps
//! the API, the controller and the event reader from interleaving half-done
//! changes.

use std::{
    collections::{HashMap, HashSet},
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use enforcer_common::dest::DestKey;
use tokio::sync::broadcast;

use super::{apply, heal, notices, saved};
use crate::{
    bpf::{Enforcer, pins::PinDir},
    clock::Jitter,
    config::{Config, DaemonOverrides, PolicySpec},
    netns::Registry,
    privilege::Plan,
};

/// The daemon's state.
pub struct Daemon {
    pub enforcer: Enforcer,
    pub config: Config,
    /// Where the configuration came from, for reloads.
    pub config_path: PathBuf,
    /// Fingerprint of that file's text (see [`saved`]).
    pub config_fingerprint: u64,
    pub overrides: DaemonOverrides,
    pub pins: PinDir,
    /// The running policy set, in configuration order.
    pub policies: Vec<RunningPolicy>,
    /// The running priority classes, highest first (none: classes are off).
    pub classes: Vec<super::classes::RunningClass>,
    pub jitter: Jitter,
    /// Destinations not CLOSED: kept current by the event reader, re-learnt by
    /// the controller's periodic scan.
    pub open: HashSet<DestKey>,
    /// What the adaptive policies' destinations learnt ([`super::learn`]).
    pub learning: super::learn::SharedLearning,
    /// What the destinations' baselines are made of ([`super::baselines`]).
    pub baselines: super::baselines::SharedBaselines,
    /// What outlier detection keeps of each destination ([`super::outliers`]).
    pub outliers: super::outliers::SharedTracker,
    /// Ejections applied, by policy and reason.
    pub ejections: super::outliers::Ejections,
    /// Healers and the choice among open destinations ([`heal`]).
    pub healing: heal::Healing,
    /// The host's network namespaces by cookie: how destinations' namespaces
    /// are shown and named, and where healing probes are made from.
    pub namespaces: Arc<Registry>,
    /// Events for `enforcer events` followers.
    pub events: broadcast::Sender<crate::api::Event>,
    /// Kernel events read, by kind name.
    pub event_counts: HashMap<&'static str, u64>,
    /// Flows in the packet plane's table at its last sweep ([`super::flows`]).
    pub flows_tracked: u64,
    /// The capabilities kept after the start, and the optional features
    /// that are on ([`privilege`]).
    pub privilege: Plan,
    /// Open while the kernel's BPF run-time statistics are on for us
    /// (`daemon.bpf_run_stats`).
    pub run_stats: Option<OwnedFd>,
    /// The reader of the programs' kernel logs (`daemon.kernel_log`), until
    /// [`super::serve`] hands it to its task.
    pub kernel_logs: Option<crate::bpf::KernelLogger>,
    /// What the workload selectors match ([`super::workloads`]).
    pub workloads: super::workloads::Workloads,
    /// The chaos experiments, running and past ([`super::chaos`]).
    pub chaos: super::chaos::Experiments,
    /// Set once the programs are attached and the policies written.
    pub ready: bool,
    /// Set by `enforcer uninstall` through the API: detach and exit.
    pub uninstall_requested: bool,
}

/// A policy as it runs.
pub struct RunningPolicy {
    pub spec: PolicySpec,
    /// Its kernel id. Ids stay with their policy's name across changes:
    /// destinations and the group guard's counts refer to them.
    pub id: u32,
    /// When its backoff table was last re-jittered.
    pub jittered_at: Instant,
}

impl RunningPolicy {
    /// A set as written into the kernel under `ids`.
    pub(super) fn set(specs: Vec<PolicySpec>, ids: Vec<u32>) -> Vec<Self> {
        let now = Instant::now();
        specs
            .into_iter()
            .zip(ids)
            .map(|(spec, id)| Self {
                spec,
                id,
                jittered_at: now,
            })
            .collect()
    }
}

pub type Shared = Arc<Mutex<Daemon>>;

/// Locks the daemon; a panic elsewhere must not take the API down with it.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Daemon> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Daemon {
    /// The running policy with kernel id `id`.
    pub fn policy(&self, id: u32) -> Option<&PolicySpec> {
        self.policies.iter().find(|p| p.id == id).map(|p| &p.spec)
    }

    /// The running policy named `name`.
    pub fn policy_by_name(&self, name: &str) -> Option<&RunningPolicy> {
        self.policies.iter().find(|p| p.spec.name == name)
    }

    /// The running set's specifications, to change and apply.
    pub fn specs(&self) -> Vec<PolicySpec> {
        self.policies.iter().map(|p| p.spec.clone()).collect()
    }

    /// The name of policy `id` ("?" for an id no policy has).
    pub fn policy_name(&self, id: u32) -> &str {
        self.policy(id).map_or("?", |p| p.name.as_str())
    }

    /// A runtime change of the policy set (API, CLI): applied, then saved so that
    /// it survives a restart on the same configuration file.
    pub fn change_policies(&mut self, specs: Vec<PolicySpec>) -> Result<(), apply::ApplyError> {
        self.set_policies(specs)?;
        if let Err(e) = saved::save(
            &self.config.daemon.state_dir,
            self.config_fingerprint,
            &self.specs(),
        ) {
            tracing::warn!("saving the runtime policies: {e} (they last until the next start)");
        }
        Ok(())
    }

    /// Replaces the running policy set (validated) in the kernel. Policies keep
    /// their ids by name; new ones take free ids.
    pub fn set_policies(&mut self, specs: Vec<PolicySpec>) -> Result<(), apply::ApplyError> {
        let _span = tracing::info_span!("apply", policies = specs.len()).entered();
        let previous: Vec<(&str, u32)> = self
            .policies
            .iter()
            .map(|p| (p.spec.name.as_str(), p.id))
            .collect();
        let ids = apply::assign_ids(&previous, &specs);
        apply::apply(&mut self.enforcer, &specs, &ids, &mut self.jitter)?;
        self.policies = RunningPolicy::set(specs, ids);
        super::workloads::changed(self)?;
        super::skb_hooks::sync_or_warn(self);
        self.publish(notices::daemon_event(
            "policies_applied",
            None,
            &format!("{} policies", self.policies.len()),
        ));
        Ok(())
    }

    /// Replaces the running classes (resolved) in the kernel.
    pub fn set_classes(
        &mut self,
        classes: Vec<super::classes::RunningClass>,
    ) -> Result<(), crate::bpf::BpfError> {
        if classes != self.classes {
            let names: Vec<&str> = classes.iter().map(|c| c.spec.name.as_str()).collect();
            tracing::info!(
                "classes: {}",
                if names.is_empty() {
                    "off".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        self.classes = classes;
        // Written with the members the selectors find for them.
        super::workloads::changed(self)
    }

    /// The running class named `name`.
    pub fn class_by_name(&self, name: &str) -> Option<&super::classes::RunningClass> {
        self.classes.iter().find(|c| c.spec.name == name)
    }

    /// Logs an event and sends it to `enforcer events` followers (none
    /// listening is fine).
    pub fn publish(&self, event: crate::api::Event) {
        tracing::info!(
            target: "enforcer::events",
            kind = %event.kind,
            dest = ?event.dest,
            netns = ?event.netns.as_ref().and_then(|n| n.netns),
            policy = ?event.policy,
            detail = ?event.detail,
            "event"
        );
        let _ = self.events.send(event);
    }
}

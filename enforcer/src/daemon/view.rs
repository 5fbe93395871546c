//! The daemon's state as the API's typed resources ([`crate::api`]).
//!
//! A status is read in two steps: a [`StatusSnapshot`] of the kernel's maps
//! and the policy names, taken under the daemon's lock (map reads only), and
//! the destinations built and serialised from it after the lock is released,
//! so a status of 100 000 destinations does not stall the controller, the
//! event reader or other requests.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
};

use enforcer_common::{
    baseline::Baseline,
    breaker::State,
    class::{CLASSES, Priority},
    dest::{DestKey, DestState},
    overrides::{self, Override},
    policy::Policy,
    workload::policy_scope,
};
use serde::{Serialize, Serializer};

use super::{
    Daemon,
    classes::{ClassNames, RunningClass},
};
use crate::{
    api::{
        BaselineView, BreakerState, ByCause, ClassCounts, ClassView, Destination, EjectionView,
        Failures, LimitChange, OverrideKind, PolicyView, Status, WorkloadMatch,
    },
    bpf::{BpfError, Dests},
    clock::monotonic_ns,
    config::PolicySpec,
    netns::Registry,
    workload::Owner,
};

pub fn breaker_state(s: u32) -> BreakerState {
    match State::from_raw(s) {
        Some(State::Closed) => BreakerState::Closed,
        Some(State::Open) => BreakerState::Open,
        Some(State::HalfOpen) => BreakerState::HalfOpen,
        None => BreakerState::Unknown,
    }
}

pub fn override_kind(o: &Override) -> OverrideKind {
    match overrides::Kind::from_raw(o.kind) {
        Some(overrides::Kind::ForcedOpen) => OverrideKind::ForcedOpen,
        Some(overrides::Kind::Disabled) => OverrideKind::Disabled,
        None => OverrideKind::Unknown,
    }
}

/// Milliseconds from now until a monotonic instant (None if past or unset).
fn ms_until(at_ns: u64, now: u64) -> Option<u64> {
    (at_ns > now).then(|| (at_ns - now) / 1_000_000)
}

/// A running policy's name and what caps its destinations, by kernel id.
#[derive(Clone, Debug, Default)]
pub struct PolicyNames(HashMap<u32, (String, Policy)>);

impl PolicyNames {
    pub fn of(d: &Daemon) -> Self {
        Self(
            d.policies
                .iter()
                .map(|p| (p.id, (p.spec.name.clone(), p.spec.kernel(None))))
                .collect(),
        )
    }

    /// The name of policy `id` ("?" for an id no policy has).
    pub fn name(&self, id: u32) -> &str {
        self.0.get(&id).map_or("?", |(name, _)| name.as_str())
    }

    /// The cap on a destination of policy `id` as the kernel applies it:
    /// the destination's learned `limit` under an adaptive policy (its
    /// initial limit until one is learned), else the policy's.
    pub fn cap(&self, id: u32, limit: u32) -> Option<u32> {
        self.0
            .get(&id)
            .map(|(_, p)| p.cap(limit))
            .filter(|c| *c != 0)
    }

    /// The baseline of a destination of policy `id`, when the policy
    /// learns one.
    pub fn baseline(&self, id: u32, b: &Baseline) -> Option<BaselineView> {
        let (_, p) = self.0.get(&id)?;
        (p.learn != 0).then(|| BaselineView::of(p, b))
    }

    /// The cap learnt for a destination of policy `id` holding `limit`,
    /// when the policy is adaptive (its initial limit until one is learnt).
    pub fn limit(&self, id: u32, limit: u32) -> Option<u32> {
        let (_, p) = self.0.get(&id)?;
        (p.adaptive != 0).then(|| p.cap(limit))
    }
}

/// Which destinations `status` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// This address and port, in whichever namespace.
    pub dest: Option<SocketAddr>,
    /// In one of these namespaces (cookies).
    pub netns: Option<Vec<u64>>,
    pub policy: Option<String>,
    /// Each destination's counts of this class alone (destinations are not
    /// filtered by it).
    pub class: Option<Priority>,
}

impl Filter {
    fn admits(&self, names: &PolicyNames, key: &DestKey, s: &DestState) -> bool {
        self.dest
            .is_none_or(|a| DestKey::from(a).in_netns(key.netns) == *key)
            && self.netns.as_ref().is_none_or(|n| n.contains(&key.netns))
            && self
                .policy
                .as_deref()
                .is_none_or(|p| p == names.name(s.policy_id))
    }
}

/// What a status shows, read under the lock.
pub struct StatusSnapshot {
    paused: bool,
    generation: u64,
    dests: Vec<(DestKey, DestState)>,
    overrides: HashMap<DestKey, Override>,
    /// The last move of each adaptive destination's limit.
    learnt: HashMap<DestKey, LimitChange>,
    /// The last ejection of each destination not CLOSED, as outlier
    /// detection remembers it.
    ejected: HashMap<DestKey, EjectionView>,
    names: PolicyNames,
    /// The running classes' names, by priority.
    classes: ClassNames,
    /// The class whose counts are shown (`None`: every class's).
    only_class: Option<Priority>,
    namespaces: Arc<Registry>,
    /// The experiments injecting now, with their faults' targets.
    experiments: Vec<(String, Vec<crate::chaos::experiment::Targets>)>,
    now: u64,
}

impl StatusSnapshot {
    pub fn take(d: &Daemon) -> Result<Self, BpfError> {
        let maps = d.enforcer.maps();
        let config = maps.config.get()?;
        Ok(Self {
            paused: config.paused != 0,
            generation: config.generation,
            dests: maps.dests.all()?,
            overrides: maps.overrides.all()?.into_iter().collect(),
            learnt: d
                .learning
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last()
                .map(|(k, c)| (*k, LimitChange::from(c)))
                .collect(),
            ejected: {
                let tracker = d.outliers.lock().unwrap_or_else(|p| p.into_inner());
                d.open
                    .iter()
                    .filter_map(|k| tracker.last_of(k).map(|e| (*k, EjectionView::from(e))))
                    .collect()
            },
            names: PolicyNames::of(d),
            classes: ClassNames::of(&d.classes),
            only_class: None,
            namespaces: d.namespaces.clone(),
            experiments: d.chaos.injecting(),
            now: monotonic_ns(),
        })
    }

    /// The status `filter` selects, destinations most interesting first:
    /// open, then by failures, then by address and namespace.
    pub fn into_status(mut self, filter: &Filter) -> Status<Destinations> {
        self.dests.retain(|(k, s)| filter.admits(&self.names, k, s));
        self.only_class = filter.class;
        self.dests.sort_by_key(|(k, s)| {
            (
                s.breaker.state == State::Closed as u32,
                u64::MAX - s.counters.failures(),
                k.socket_addr(),
                k.netns,
            )
        });
        Status {
            paused: self.paused,
            generation: self.generation,
            destinations: Destinations(self),
        }
    }

    fn destination(&self, key: &DestKey, s: &DestState) -> Destination {
        let (b, c, now) = (&s.breaker, &s.counters, self.now);
        // Overrides are keyed by address alone: they apply in every namespace.
        let o = self
            .overrides
            .get(&key.in_netns(0))
            .filter(|o| o.active(now));
        let netns = self.namespaces.label(key.netns);
        Destination {
            dest: key.socket_addr(),
            netns: netns.inode,
            netns_name: netns.name,
            netns_status: netns.status.to_owned(),
            policy: self.names.name(s.policy_id).to_owned(),
            state: breaker_state(b.state),
            active: b.active,
            pending: b.pending,
            max_connections: self.names.cap(s.policy_id, b.limit),
            limit: self.names.limit(s.policy_id, b.limit),
            limit_change: self.learnt.get(key).cloned(),
            ejection: (b.state != State::Closed as u32)
                .then(|| self.ejected.get(key).cloned())
                .flatten(),
            baseline: self.names.baseline(s.policy_id, &s.baseline),
            attempts: c.attempts,
            successes: c.successes,
            slow: c.slow,
            abandoned: c.abandoned,
            local_errors: c.local_errors,
            failures: Failures {
                refused: c.failures_refused,
                timeout: c.failures_timeout,
                unreachable: c.failures_unreachable,
            },
            rejections: ByCause {
                circuit: c.rejected_circuit,
                bulkhead: c.rejected_bulkhead,
            },
            would_reject: ByCause {
                circuit: c.would_reject_circuit,
                bulkhead: c.would_reject_bulkhead,
            },
            probes: c.probes,
            probes_reclaimed: c.probes_reclaimed,
            trips: c.trips,
            trip_level: b.trips,
            guard_refusals: c.guard_refusals,
            open_for_ms: (b.state == State::Open as u32)
                .then(|| ms_until(b.open_until_ns, now))
                .flatten(),
            override_kind: o.map(override_kind),
            override_for_ms: o.and_then(|o| ms_until(o.until_ns, now)),
            chaos: self
                .experiments
                .iter()
                .filter(|(_, faults)| faults.iter().any(|t| t.covers(key.socket_addr())))
                .map(|(name, _)| name.clone())
                .collect(),
            classes: self.class_counts(s),
        }
    }

    /// The destination's counts of each running class (of the one asked
    /// for), by name; `None` while classes are off.
    fn class_counts(&self, s: &DestState) -> Option<BTreeMap<String, ClassCounts>> {
        if !self.classes.enabled() {
            return None;
        }
        Some(
            self.classes
                .iter()
                .filter(|(p, _)| self.only_class.is_none_or(|only| only == *p))
                .map(|(p, name)| (name.to_owned(), (&s.classes[p as usize]).into()))
                .collect(),
        )
    }
}

/// A snapshot's destinations, built one at a time as they are serialised.
pub struct Destinations(StatusSnapshot);

impl Serialize for Destinations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let snapshot = &self.0;
        s.collect_seq(
            snapshot
                .dests
                .iter()
                .map(|(k, st)| snapshot.destination(k, st)),
        )
    }
}

/// One policy, with its settings and shared counts.
pub fn policy(d: &Daemon, id: u32, p: &PolicySpec) -> Result<PolicyView, BpfError> {
    let stats = d.enforcer.maps().policy_stats.get(id)?;
    Ok(PolicyView {
        settings: p.into(),
        id,
        tracked: stats.tracked,
        open_destinations: stats.open,
        guard_refusals: stats.guard_refusals,
        selected: WorkloadMatch::list(
            &p.workloads,
            d.workloads.counts(Owner::Scope(policy_scope(id))),
        ),
    })
}

pub fn policies(d: &Daemon) -> Result<Vec<PolicyView>, BpfError> {
    d.policies
        .iter()
        .map(|p| policy(d, p.id, &p.spec))
        .collect()
}

/// Each priority's counts summed over the destinations of `dests`.
pub fn class_sums(dests: &Dests) -> Result<[ClassCounts; CLASSES], BpfError> {
    let mut sums = [ClassCounts::default(); CLASSES];
    dests.each(|_, s| {
        for (sum, c) in sums.iter_mut().zip(&s.classes) {
            sum.add(c);
        }
    })?;
    Ok(sums)
}

/// A running class with its counts from `sums` ([`class_sums`]) and its
/// selectors' matches (`selected`, per pattern).
pub fn class(
    c: &RunningClass,
    sums: &[ClassCounts; CLASSES],
    selected: Option<&[usize]>,
) -> ClassView {
    ClassView {
        settings: (&c.spec).into(),
        declared: c.declared,
        selected: WorkloadMatch::list(&c.spec.workloads, selected),
        counts: sums[c.spec.priority as usize],
    }
}

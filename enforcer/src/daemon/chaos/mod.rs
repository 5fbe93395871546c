//! Chaos experiments as the daemon runs them: one task each ([`run`]), the
//! register of running and past experiments (kept in the state directory, so
//! a restarted daemon reports an experiment it lost as interrupted), and the
//! kill switch.
//!
//! The kernel enforces what matters without the daemon: each fault's expiry
//! and its blast radius. The daemon arms and disarms, watches the safety
//! valve every [`crate::chaos::VALVE_PERIOD`], and measures.

mod run;

pub use run::Slots;

use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
};

use enforcer_common::chaos as kernel;
use tokio::sync::Notify;

use super::{Daemon, Shared, classes::RunningClass, lock, private_dir};
use crate::{
    api::{ExperimentView, Stage},
    bpf::BpfError,
    chaos::{
        experiment::{Experiment, RatioOf},
        plan::{self, Callers},
    },
    config::Invalid,
    workload::Pattern,
};

/// Past experiments kept for `enforcer chaos list`.
const HISTORY: usize = 32;
/// The register's file in the state directory.
const FILE: &str = "chaos.json";

/// The daemon's experiments.
#[derive(Default)]
pub struct Experiments {
    running: BTreeMap<String, Running>,
    past: VecDeque<ExperimentView>,
    /// Where the register is kept (none: not kept, in tests).
    file: Option<PathBuf>,
    /// Connects (packets, for a guest fault) affected by the faults of
    /// experiments that ended (since the daemon started), by fault kind.
    affected: BTreeMap<&'static str, u64>,
    /// Experiments aborted (since the daemon started), by reason.
    aborts: BTreeMap<String, u64>,
    /// Whether this kernel can reset connections (found at the start).
    resets: ResetSupport,
}

/// What the `reset` fault needs of the kernel, or why it cannot be had.
#[derive(Clone, Debug)]
pub enum ResetSupport {
    Available(crate::bpf::reset::Resetter),
    Unavailable(String),
}

impl Default for ResetSupport {
    fn default() -> Self {
        Self::Unavailable("not looked for".to_owned())
    }
}

/// The fault kinds and abort reasons the metrics always show: those the
/// kernel counts connects of, those it counts guests' packets of.
pub const KINDS: [&str; 3] = ["refuse", "blackhole", "delay"];
pub const GUEST_KINDS: [&str; 3] = ["guest_refuse", "guest_blackhole", "guest_loss"];
pub const REASONS: [&str; 6] = [
    "operator",
    "kernel",
    "trip",
    "success_ratio",
    "http",
    "metric",
];

/// The figures the metrics show.
#[derive(Debug, Default)]
pub struct Figures {
    pub running: u64,
    /// Connects affected, by fault kind: ended experiments and running ones.
    pub affected: Vec<(String, u64)>,
    /// Guests' packets affected, by guest fault kind, likewise.
    pub affected_packets: Vec<(String, u64)>,
    pub aborts: Vec<(String, u64)>,
}

/// A running experiment's handle.
struct Running {
    /// Its latest view, refreshed by its task at every step.
    view: ExperimentView,
    /// Its faults' kernel slots.
    slots: Slots,
    /// Wakes its task for an operator's abort.
    stop: Arc<Notify>,
}

/// Why an experiment cannot start (nothing was injected).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Invalid(Invalid),
    #[error("experiment `{0}` is running already")]
    Running(String),
    #[error(
        "{wanted} fault slots wanted, {free} free: at most {} faults run at once",
        kernel::SLOTS
    )]
    Slots { wanted: usize, free: usize },
}

impl Experiments {
    /// The register kept in `state_dir`: past experiments, and those that
    /// were running when the previous daemon stopped, as interrupted.
    pub fn load(state_dir: &Path) -> Self {
        if let Err(e) = private_dir::create(state_dir, "daemon.state_dir") {
            tracing::warn!("the chaos register is not kept: {e}");
        }
        let file = state_dir.join(FILE);
        let past = match private_dir::read_file(&file) {
            Ok(text) => serde_json::from_str::<Vec<ExperimentView>>(&text)
                .map_err(|e| tracing::warn!("ignoring {}: {e}", file.display()))
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let past = past
            .into_iter()
            .map(|mut v| {
                if v.stage.running() {
                    tracing::warn!(
                        "chaos experiment `{}` was interrupted: its faults ended at their deadline",
                        v.name
                    );
                    v.stage = Stage::Interrupted;
                }
                v
            })
            .collect();
        let resets = match crate::bpf::reset::Resetter::of_running_kernel() {
            Ok(r) => ResetSupport::Available(r),
            Err(e) => {
                tracing::info!("chaos: the reset fault is unavailable: {e}");
                ResetSupport::Unavailable(e.to_string())
            }
        };
        let register = Self {
            past,
            file: Some(file),
            resets,
            ..Self::default()
        };
        register.save();
        register
    }

    /// Every experiment: running ones first, then the past, newest first.
    pub fn views(&self) -> Vec<ExperimentView> {
        self.running
            .values()
            .map(|r| r.view.clone())
            .chain(self.past.iter().rev().cloned())
            .collect()
    }

    /// The newest experiment named `name`.
    pub fn view(&self, name: &str) -> Option<ExperimentView> {
        self.running
            .get(name)
            .map(|r| r.view.clone())
            .or_else(|| self.past.iter().rev().find(|v| v.name == name).cloned())
    }

    /// The experiments whose faults are armed, with their faults' targets.
    pub fn injecting(&self) -> Vec<(String, Vec<crate::chaos::experiment::Targets>)> {
        self.running
            .values()
            .filter(|r| r.view.stage == Stage::Injecting)
            .map(|r| {
                let targets = r.view.experiment.faults.iter().map(|f| f.targets.clone());
                (r.view.name.clone(), targets.collect())
            })
            .collect()
    }

    /// What the metrics show.
    pub fn figures(&self) -> Figures {
        let mut affected = self.affected.clone();
        for k in KINDS.into_iter().chain(GUEST_KINDS) {
            affected.entry(k).or_default();
        }
        for f in self.running.values().flat_map(|r| &r.view.faults) {
            *affected.entry(kind_name(&f.kind)).or_default() += f.affected;
        }
        let (packets, connects): (Vec<_>, Vec<_>) = affected
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .partition(|(k, _)| GUEST_KINDS.contains(&k.as_str()));
        let mut aborts = self.aborts.clone();
        for r in REASONS {
            aborts.entry(r.to_owned()).or_default();
        }
        Figures {
            running: self.running.len() as u64,
            affected: connects,
            affected_packets: packets,
            aborts: aborts.into_iter().collect(),
        }
    }

    /// The workload selectors of the running experiments' faults, each
    /// with its fault's slot.
    pub fn workload_selectors(&self) -> impl Iterator<Item = (u32, &[Pattern])> {
        self.running.values().flat_map(|r| {
            let faults = r.view.experiment.faults.iter().enumerate();
            faults.filter_map(|(i, f)| Some((r.slots.of(i)?, f.targets.workloads.as_slice())))
        })
    }

    /// Slots held by running experiments (a bit set).
    fn slots_in_use(&self) -> u32 {
        self.running
            .values()
            .fold(0, |bits, r| bits | r.slots.bits())
    }

    fn save(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let all: Vec<&ExperimentView> = self
            .past
            .iter()
            .chain(self.running.values().map(|r| &r.view))
            .collect();
        let bytes = serde_json::to_vec(&all).expect("views serialise");
        if let Err(e) = private_dir::replace_file(file, &bytes) {
            tracing::warn!("cannot keep the chaos register in {}: {e}", file.display());
        }
    }

    /// A running experiment's task reports its view; a view that ended
    /// moves to the past (true).
    fn update(&mut self, view: ExperimentView) -> bool {
        let stage_changed = self
            .running
            .get(&view.name)
            .is_none_or(|r| r.view.stage != view.stage);
        let ended = !view.stage.running();
        if !ended {
            if let Some(r) = self.running.get_mut(&view.name) {
                r.view = view;
            }
        } else {
            self.running.remove(&view.name);
            for f in &view.faults {
                *self.affected.entry(kind_name(&f.kind)).or_default() += f.affected;
            }
            if let Some(a) = &view.abort {
                *self.aborts.entry(a.reason.clone()).or_default() += 1;
            }
            self.past.push_back(view);
            while self.past.len() > HISTORY {
                self.past.pop_front();
            }
        }
        if stage_changed {
            self.save();
        }
        ended
    }
}

/// The static name of a fault kind a view names.
fn kind_name(kind: &str) -> &'static str {
    KINDS
        .into_iter()
        .chain(GUEST_KINDS)
        .find(|k| *k == kind)
        .unwrap_or("other")
}

/// Validates `experiment` against the host (its cgroups exist, slots are
/// free) and starts its task; its first view.
pub fn start(shared: &Shared, experiment: Experiment) -> Result<ExperimentView, StartError> {
    let mut d = lock(shared);
    if d.chaos.running.contains_key(&experiment.name) {
        return Err(StartError::Running(experiment.name));
    }
    let callers = resolve_callers(&experiment, &d.classes).map_err(StartError::Invalid)?;
    for (field, of) in experiment.named() {
        let known = match of {
            RatioOf::Policy(name) => d.policies.iter().any(|p| p.spec.name == *name),
            RatioOf::Class(name) => d.classes.iter().any(|c| c.spec.name == *name),
            RatioOf::Destination(_) => true,
        };
        if !known {
            return Err(StartError::Invalid(Invalid {
                field,
                line: None,
                message: format!(
                    "no running {of} (see `enforcer policy list`, `enforcer class list`)"
                ),
            }));
        }
    }
    if let Some(i) = experiment.faults.iter().position(|f| f.kind.for_guests())
        && d.config.daemon.interfaces.is_empty()
    {
        return Err(StartError::Invalid(Invalid {
            field: format!("fault[{i}].kind"),
            line: None,
            message: "a guest fault acts on the packets of watched interfaces, and the daemon \
                      watches none (`[daemon] interfaces`)"
                .to_owned(),
        }));
    }
    if let (Some(i), ResetSupport::Unavailable(why)) = (
        experiment.faults.iter().position(|f| f.kind.resets()),
        &d.chaos.resets,
    ) {
        return Err(StartError::Invalid(Invalid {
            field: format!("fault[{i}].kind"),
            line: None,
            message: why.clone(),
        }));
    }
    let wanted = experiment.faults.iter().filter(|f| f.kind.armed()).count();
    let in_use = d.chaos.slots_in_use();
    let mut free = plan::free_slots(in_use, wanted)
        .ok_or(StartError::Slots {
            wanted,
            free: (kernel::SLOTS - in_use.count_ones()) as usize,
        })?
        .into_iter();
    let slots = Slots(
        experiment
            .faults
            .iter()
            .map(|f| f.kind.armed().then(|| free.next()).flatten())
            .collect(),
    );
    let stop = Arc::new(Notify::new());
    let course = crate::chaos::report::Course::new(experiment);
    let view = run::view(
        &course,
        crate::clock::unix_ms(),
        std::time::Duration::ZERO,
        &[],
        &slots,
    );
    d.chaos.running.insert(
        view.name.clone(),
        Running {
            view: view.clone(),
            slots: slots.clone(),
            stop: stop.clone(),
        },
    );
    d.chaos.save();
    // Their matches are in the kernel before the faults are armed (after
    // the baseline), and kept current while they run.
    if course.experiment.selects_workloads()
        && let Err(e) = super::workloads::changed(&mut d)
    {
        tracing::warn!(
            "chaos experiment `{}`: writing its workloads: {e}",
            view.name
        );
    }
    tracing::info!(
        "chaos experiment `{}` started: {} fault(s) for {} after a {} baseline",
        view.name,
        slots.0.len(),
        course.experiment.duration,
        course.experiment.baseline
    );
    let resetter = match &d.chaos.resets {
        ResetSupport::Available(r) => Some(r.clone()),
        ResetSupport::Unavailable(_) => None,
    };
    drop(d);
    let task = run::Task {
        course,
        slots,
        callers,
        resetter,
        stop,
        started_unix_ms: view.started_unix_ms,
    };
    tokio::spawn(run::run(shared.clone(), task));
    Ok(view)
}

/// Each fault's callers: its cgroups as (id, level) (the root's for a fault
/// on every caller) and its classes as the bits of their priorities among
/// the running classes; a cgroup that is not one, or a class nobody runs,
/// names its field.
fn resolve_callers(e: &Experiment, classes: &[RunningClass]) -> Result<Vec<Callers>, Invalid> {
    let cgroups = resolve_cgroups(e)?;
    e.faults
        .iter()
        .zip(cgroups)
        .enumerate()
        .map(|(i, (f, cgroups))| {
            let mut bits = 0;
            for name in &f.targets.classes {
                let class = classes.iter().find(|c| c.spec.name == *name);
                let Some(class) = class else {
                    return Err(Invalid {
                        field: format!("fault[{i}].classes"),
                        line: None,
                        message: format!("no running class `{name}` (see `enforcer class list`)"),
                    });
                };
                bits |= class.spec.priority.bit();
            }
            Ok(Callers {
                cgroups,
                classes: bits,
            })
        })
        .collect()
}

/// Each fault's cgroups as (id, level): the root's for a fault on every
/// caller; a cgroup that is not one names its field.
fn resolve_cgroups(e: &Experiment) -> Result<Vec<Vec<(u64, u32)>>, Invalid> {
    let mount = crate::cgroup::v2_mount().ok();
    let root = || {
        mount
            .as_deref()
            .and_then(crate::cgroup::scope)
            .ok_or_else(|| Invalid {
                field: "fault".to_owned(),
                line: None,
                message: "no cgroup v2 hierarchy is mounted".to_owned(),
            })
    };
    e.faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let outside = |p: &&Pattern| mount.as_deref().is_some_and(|m| !p.is_below(m));
            if let Some(p) = f.targets.workloads.iter().find(outside) {
                return Err(Invalid {
                    field: format!("fault[{i}].workloads"),
                    line: None,
                    message: format!("{p} is not below the cgroup v2 hierarchy"),
                });
            }
            if f.targets.cgroups.is_empty() {
                return Ok(vec![root()?]);
            }
            f.targets
                .cgroups
                .iter()
                .map(|path| {
                    crate::cgroup::scope(path).ok_or_else(|| Invalid {
                        field: format!("fault[{i}].cgroups"),
                        line: None,
                        message: format!("`{}` is not a cgroup v2 directory", path.display()),
                    })
                })
                .collect()
        })
        .collect()
}

/// Stops the experiments named (every running one for `None`): their faults
/// are disarmed at once, in one write of the kernel's configuration (the
/// kill switch), and their tasks record the abort. The names stopped.
pub fn abort(d: &mut Daemon, name: Option<&str>) -> Result<Vec<String>, BpfError> {
    let targets: Vec<&Running> = match name {
        Some(n) => d.chaos.running.get(n).into_iter().collect(),
        None => d.chaos.running.values().collect(),
    };
    let bits = match name {
        // The kill switch clears every bit, whoever armed it.
        None => u32::MAX,
        Some(_) => targets.iter().fold(0, |b, r| b | r.slots.bits()),
    };
    let names = targets.iter().map(|r| r.view.name.clone()).collect();
    for r in &targets {
        r.stop.notify_one();
    }
    disarm(d, bits)?;
    Ok(names)
}

/// Disarms the faults of `slots` (a bit set) in one write of the kernel's
/// configuration, then detaches the packet programs nothing needs any more
/// (tried whether the write succeeded or not).
fn disarm(d: &mut Daemon, slots: u32) -> Result<(), BpfError> {
    let disarmed = crate::bpf::chaos::disarm(&mut d.enforcer.maps_mut().config, slots);
    super::skb_hooks::sync_or_warn(d);
    disarmed
}

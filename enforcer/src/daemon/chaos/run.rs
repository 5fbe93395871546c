//! One experiment's task: samples its measures and checks its abort
//! conditions every [`VALVE_PERIOD`] (trips as soon as their events arrive),
//! arms and disarms its faults, and reports its view to the register.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use enforcer_common::{
    chaos::{self as kernel, Fault},
    class::{CLASSES, ClassCounts},
    counters::GlobalCounter,
    dest::{DestCounters, DestKey},
};
use tokio::sync::{Notify, broadcast::error::RecvError, watch};

use super::super::{Daemon, Shared, lock, notices::daemon_event, skb_hooks};
use crate::{
    api::{Event, ExperimentView, FaultView},
    bpf::reset::Resetter,
    chaos::{
        VALVE_PERIOD,
        experiment::{FaultKind, Measure, RatioOf},
        plan::{self, Callers},
        report::{Course, Step},
        series::Sample,
    },
    clock::monotonic_ns,
    http::check::HttpCheck,
    rule::Rule,
};

/// What an experiment's task holds.
pub struct Task {
    pub course: Course,
    pub slots: Slots,
    /// Each fault's callers, resolved when it started.
    pub callers: Vec<Callers>,
    /// How connections are reset, where the kernel can.
    pub resetter: Option<Resetter>,
    /// Wakes the task for an operator's abort.
    pub stop: Arc<Notify>,
    pub started_unix_ms: u64,
}

/// Each fault's kernel slot, by the experiment's fault index (none for a
/// fault the kernel does not hold: a reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots(pub Vec<Option<u32>>);

impl Slots {
    /// The slots as bits of the configuration's `chaos_armed`.
    pub fn bits(&self) -> u32 {
        self.0.iter().flatten().fold(0, |b, s| b | kernel::bit(*s))
    }

    pub fn of(&self, fault: usize) -> Option<u32> {
        self.0.get(fault).copied().flatten()
    }
}

pub async fn run(shared: Shared, task: Task) {
    let Task {
        mut course,
        slots,
        callers,
        resetter,
        stop,
        started_unix_ms,
    } = task;
    let start = Instant::now();
    let mut events = lock(&shared).events.subscribe();
    let mut probes = Probes::spawn(&course);
    // Connections each reset fault reset (by fault index).
    let mut resets = vec![0u64; course.experiment.faults.len()];
    let mut tick = tokio::time::interval(VALVE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // The step, and when what caused it happened (a trip: in the kernel).
        let (step, cause) = tokio::select! {
            _ = tick.tick() => {
                let samples = sample(&lock(&shared), &course, &mut probes);
                (course.step(start.elapsed(), &samples), Instant::now())
            }
            event = events.recv() => match event {
                Ok(e) => match tripped(&e) {
                    Some((dest, at)) => (course.tripped(start.elapsed(), dest), at),
                    None => (Step::Wait, Instant::now()),
                },
                // Missed events are counted by their follower's `lagged`; a
                // trip among them is seen by the next one or the ratios.
                Err(RecvError::Lagged(_)) => (Step::Wait, Instant::now()),
                Err(RecvError::Closed) => return,
            },
            () = stop.notified() => {
                (course.stop(start.elapsed(), "operator", "operator".to_owned()), Instant::now())
            }
        };
        let mut d = lock(&shared);
        let kernel = Kernel {
            slots: &slots,
            callers: &callers,
            resetter: resetter.as_ref(),
        };
        let done = act(&mut d, &mut course, &step, &kernel, &mut resets);
        if step == Step::Disarm {
            course.disarmed(cause.elapsed());
        }
        let view = view(
            &course,
            started_unix_ms,
            start.elapsed(),
            &counts(&d, &slots, &resets),
            &slots,
        );
        if step != Step::Wait {
            announce(&d, &view, &step);
        }
        // An experiment that ended leaves its workloads' entries behind.
        if d.chaos.update(view)
            && course.experiment.selects_workloads()
            && let Err(e) = super::super::workloads::changed(&mut d)
        {
            tracing::warn!("chaos: forgetting an experiment's workloads: {e}");
        }
        if done {
            break;
        }
    }
    probes.stop();
}

/// Where an experiment's faults go in the kernel.
struct Kernel<'a> {
    slots: &'a Slots,
    callers: &'a [Callers],
    resetter: Option<&'a Resetter>,
}

/// Does what a step asks of the kernel; whether the experiment is over.
fn act(
    d: &mut Daemon,
    course: &mut Course,
    step: &Step,
    kernel: &Kernel<'_>,
    resets: &mut [u64],
) -> bool {
    let slots = kernel.slots;
    let name = course.experiment.name.clone();
    match step {
        Step::Wait => {
            if course.injecting() {
                reset(kernel.resetter, course, resets, false);
            }
            false
        }
        Step::Arm => {
            if let Err(e) = arm(d, course, kernel) {
                tracing::error!("chaos experiment `{name}`: arming failed: {e}");
                let at = course.elapsed();
                // Nothing armed, or part of it: disarm whatever was.
                let _ = super::disarm(d, slots.bits());
                course.stop(at, "kernel", format!("arming the faults failed: {e}"));
                return false;
            }
            reset(kernel.resetter, course, resets, true);
            false
        }
        Step::Disarm => {
            if let Err(e) = super::disarm(d, slots.bits()) {
                // The kernel ends them at their deadline regardless.
                tracing::error!("chaos experiment `{name}`: disarming failed: {e}");
            }
            false
        }
        Step::Done => true,
    }
}

/// Writes the armed faults, each ending `duration` from now by the kernel's
/// clock.
fn arm(d: &mut Daemon, course: &Course, kernel: &Kernel<'_>) -> Result<(), crate::bpf::BpfError> {
    let e = &course.experiment;
    let until_ns = monotonic_ns().saturating_add(e.duration.0.as_nanos() as u64);
    let faults: Vec<(u32, Fault)> = e
        .faults
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let callers = kernel.callers.get(i)?;
            Some((
                kernel.slots.of(i)?,
                plan::kernel_fault(spec, callers, until_ns),
            ))
        })
        .collect();
    // The packet programs that drop SYNs are attached before any fault that
    // needs them is armed.
    let drops_syns = faults.iter().any(|(_, f)| kernel::drops_syns(f.kind));
    skb_hooks::sync(d, drops_syns)?;
    let maps = d.enforcer.maps_mut();
    maps.chaos.arm(&mut maps.config, &faults)
}

/// Resets the connections the experiment's faults target: a `reset`'s as
/// the injection starts (`starting`), an `abort_after_bytes`' every step
/// while it lasts (those past their bytes); counted in `resets`.
fn reset(resetter: Option<&Resetter>, course: &Course, resets: &mut [u64], starting: bool) {
    let Some(resetter) = resetter else {
        return;
    };
    for (i, spec) in course.experiment.faults.iter().enumerate() {
        let min_bytes = match spec.kind {
            FaultKind::Reset if starting => 0,
            FaultKind::AbortAfterBytes { bytes } => bytes,
            _ => continue,
        };
        let targets: Vec<_> = spec.targets.destinations.iter().map(Rule::target).collect();
        let chance = kernel::chance(spec.targets.percentage);
        match resetter.reset(&targets, chance, min_bytes) {
            Ok(n) => resets[i] += n,
            Err(e) => tracing::error!(
                "chaos experiment `{}`: fault[{i}]: resetting failed: {e}",
                course.experiment.name
            ),
        }
    }
}

/// Each fault's counts: what the kernel counted in its slot, or the
/// connections a reset reset.
fn counts(d: &Daemon, slots: &Slots, resets: &[u64]) -> Vec<Fault> {
    (0..resets.len())
        .map(|i| match slots.of(i) {
            Some(slot) => d.enforcer.maps().chaos.get(slot).unwrap_or_default(),
            None => Fault {
                affected: resets[i],
                ..Fault::default()
            },
        })
        .collect()
}

/// The destination of a trip event, and when the kernel recorded the trip.
fn tripped(e: &Event) -> Option<(SocketAddr, Instant)> {
    if e.kind != enforcer_common::event::Kind::Tripped.name() {
        return None;
    }
    let age = Duration::from_millis(e.age_ms.unwrap_or(0));
    Some((
        e.dest?,
        Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
    ))
}

/// The experiment's view; `faults` as the kernel counted them (none before
/// the first step).
pub fn view(
    course: &Course,
    started_unix_ms: u64,
    elapsed: Duration,
    faults: &[Fault],
    slots: &Slots,
) -> ExperimentView {
    let running = course.stage.running();
    let fault_views = course
        .experiment
        .faults
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let k = faults.get(i).copied().unwrap_or_default();
            FaultView {
                kind: spec.kind.name().to_owned(),
                slot: running.then(|| slots.of(i)).flatten(),
                affected: k.hit(),
                spared: k.spared,
                syns_dropped: k.syns_dropped,
            }
        })
        .collect();
    ExperimentView {
        name: course.experiment.name.clone(),
        stage: course.stage,
        started_unix_ms,
        elapsed_ms: elapsed.as_millis() as u64,
        injected_ms: course.injected().map(|d| d.as_millis() as u64),
        abort: course.abort().cloned(),
        recovery_ms: course.recovery().map(|d| d.as_millis() as u64),
        hypothesis_held: course.hypothesis_held(),
        checks: course.checks(),
        faults: fault_views,
        experiment: course.experiment.clone(),
    }
}

/// Logs a step and sends it to `enforcer events` followers.
fn announce(d: &Daemon, view: &ExperimentView, step: &Step) {
    let (kind, detail) = match step {
        Step::Arm => (
            "chaos_injecting",
            format!("{} fault(s) armed", view.faults.len()),
        ),
        Step::Disarm => (
            "chaos_disarmed",
            match &view.abort {
                Some(a) => format!("aborted: {}", a.condition),
                None => "the duration is over".to_owned(),
            },
        ),
        Step::Done => (
            "chaos_ended",
            format!(
                "{}{}",
                view.stage.name(),
                view.recovery_ms
                    .map(|r| format!(", recovered in {r} ms"))
                    .unwrap_or_default()
            ),
        ),
        Step::Wait => return,
    };
    if let (Step::Disarm, Some(a)) = (step, &view.abort) {
        tracing::warn!(
            "chaos experiment `{}` aborted: {} (figure {:?}, bound {:?}, destination {:?})",
            view.name,
            a.condition,
            a.figure,
            a.bound,
            a.dest
        );
    }
    d.publish(daemon_event(
        kind,
        None,
        &format!("{}: {detail}", view.name),
    ));
}

/// Reads every measure of the course, in [`Course::measures`]' order.
fn sample(d: &Daemon, course: &Course, probes: &mut Probes) -> Vec<Option<Sample>> {
    let sums = Sums::read(d, course);
    course
        .measures()
        .enumerate()
        .map(|(i, m)| match m? {
            Measure::SuccessRatio {
                of: RatioOf::Destination(destination),
                ..
            } => {
                let key = DestKey::from(*destination).in_netns(d.namespaces.own_cookie());
                let state = d.enforcer.maps().dests.get(&key).ok()?;
                let (good, total) = outcomes(&state.map(|s| s.counters).unwrap_or_default());
                Some(Sample::Counts { good, total })
            }
            Measure::SuccessRatio {
                of: RatioOf::Policy(name),
                ..
            } => {
                let id = d.policies.iter().find(|p| p.spec.name == *name)?.id;
                let (good, total) = sums.policies.get(&id).copied().unwrap_or_default();
                Some(Sample::Counts { good, total })
            }
            Measure::SuccessRatio {
                of: RatioOf::Class(name),
                ..
            } => {
                let class = d.classes.iter().find(|c| c.spec.name == *name)?;
                let c = sums.classes[class.spec.priority as usize];
                Some(Sample::Counts {
                    good: c.admitted,
                    total: c.admitted + c.shed,
                })
            }
            Measure::Rate { metric, .. } => {
                let counter = GlobalCounter::ALL
                    .into_iter()
                    .find(|g| metric.strip_prefix("enforcer_kernel_") == Some(g.name()))?;
                let total = d.enforcer.maps().counters.get(counter).ok()?;
                Some(Sample::Counts { good: 0, total })
            }
            Measure::Http { .. } => Some(Sample::Answered(probes.answered(i))),
        })
        .collect()
}

/// A destination's successes and every connect the gate saw to it.
fn outcomes(c: &DestCounters) -> (u64, u64) {
    let total = c.successes + c.failures() + c.rejected_circuit + c.rejected_bulkhead;
    (c.successes, total)
}

/// The outcomes summed by policy and the class counts summed by priority,
/// in one pass over the destination map, when a measure names a policy or a
/// class (else none).
#[derive(Default)]
struct Sums {
    policies: HashMap<u32, (u64, u64)>,
    classes: [ClassCounts; CLASSES],
}

impl Sums {
    fn read(d: &Daemon, course: &Course) -> Self {
        let mut sums = Self::default();
        if course.experiment.named().is_empty() {
            return sums;
        }
        let each = d.enforcer.maps().dests.each(|_, s| {
            let (good, total) = outcomes(&s.counters);
            let p = sums.policies.entry(s.policy_id).or_default();
            *p = (p.0 + good, p.1 + total);
            for (sum, c) in sums.classes.iter_mut().zip(&s.classes) {
                sum.admitted += c.admitted;
                sum.shed += c.shed;
            }
        });
        if let Err(e) = each {
            tracing::warn!("chaos: reading the destinations: {e}");
        }
        sums
    }
}

/// The HTTP checks' tasks: each GETs its URL over and over and counts the
/// 200s; a sample asks whether one arrived since the last.
struct Probes {
    answers: Vec<Option<(watch::Receiver<u64>, u64)>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Probes {
    fn spawn(course: &Course) -> Self {
        let mut answers = Vec::new();
        let mut tasks = Vec::new();
        for m in course.measures() {
            let Some(Measure::Http { url, timeout }) = m else {
                answers.push(None);
                continue;
            };
            let Ok(check) = HttpCheck::parse(url) else {
                answers.push(None);
                continue;
            };
            let (tx, rx) = watch::channel(0u64);
            let timeout = timeout.0;
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    let begun = Instant::now();
                    if check.ok(timeout).await {
                        ok += 1;
                        let _ = tx.send(ok);
                    }
                    tokio::time::sleep(VALVE_PERIOD.saturating_sub(begun.elapsed())).await;
                }
            }));
            answers.push(Some((rx, 0)));
        }
        Self { answers, tasks }
    }

    /// Whether check `i` answered 200 since the last time it was asked.
    fn answered(&mut self, i: usize) -> bool {
        let Some(Some((rx, seen))) = self.answers.get_mut(i) else {
            return false;
        };
        let now = *rx.borrow_and_update();
        let fresh = now > *seen;
        *seen = now;
        fresh
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

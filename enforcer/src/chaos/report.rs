//! An experiment's course, driven by the daemon every
//! [`super::VALVE_PERIOD`]: the stage it is in, the steady state in each
//! phase, the abort conditions, recovery, and the report made of them.

use std::{net::SocketAddr, time::Duration};

use enforcer_common::dest::DestKey;

use super::{
    experiment::{AbortCondition, Experiment, Measure},
    series::{Phase, Sample, Series, Shape, within},
};
use crate::api::{AbortView, CheckView, Stage};

/// A steady-state check as it runs.
#[derive(Clone, Debug)]
struct Check {
    series: Series,
    baseline: Phase,
    during: Phase,
    after: Phase,
}

/// An experiment as it runs, on a clock that starts at 0 when it starts.
#[derive(Clone, Debug)]
pub struct Course {
    pub experiment: Experiment,
    pub stage: Stage,
    checks: Vec<Check>,
    aborts: Vec<Option<Series>>,
    /// When the faults were armed and disarmed.
    injected_at: Option<Duration>,
    ended_at: Option<Duration>,
    recovered_at: Option<Duration>,
    abort: Option<AbortView>,
    last: Duration,
}

/// What the daemon must do after a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing new.
    Wait,
    /// Arm the faults now.
    Arm,
    /// Disarm the faults now (the duration is over, or an abort).
    Disarm,
    /// The experiment is over.
    Done,
}

/// The shape a measure's samples take.
pub fn shape(m: &Measure) -> (Shape, Duration) {
    match m {
        Measure::SuccessRatio { window, .. } => (Shape::Ratio, window.0),
        Measure::Rate { window, .. } => (Shape::Rate, window.0),
        Measure::Http { timeout, .. } => (Shape::Up, timeout.0),
    }
}

impl Course {
    pub fn new(experiment: Experiment) -> Self {
        let series = |m: &Measure| {
            let (shape, window) = shape(m);
            Series::new(shape, window)
        };
        let checks = experiment
            .steady_state
            .iter()
            .map(|s| Check {
                series: series(&s.measure),
                baseline: Phase::default(),
                during: Phase::default(),
                after: Phase::default(),
            })
            .collect();
        let aborts = experiment
            .abort
            .iter()
            .map(|a| match a {
                AbortCondition::Trip { .. } => None,
                AbortCondition::Below { measure, .. } | AbortCondition::Above { measure, .. } => {
                    Some(series(measure))
                }
            })
            .collect();
        Self {
            experiment,
            stage: Stage::Baseline,
            checks,
            aborts,
            injected_at: None,
            ended_at: None,
            recovered_at: None,
            abort: None,
            last: Duration::ZERO,
        }
    }

    /// The measures to sample for the steady-state checks, then for the
    /// abort conditions (`None`: a trip condition, fed by [`Self::tripped`]).
    pub fn measures(&self) -> impl Iterator<Item = Option<&Measure>> {
        let steady = self
            .experiment
            .steady_state
            .iter()
            .map(|s| Some(&s.measure));
        let aborts = self.experiment.abort.iter().map(|a| match a {
            AbortCondition::Trip { .. } => None,
            AbortCondition::Below { measure, .. } | AbortCondition::Above { measure, .. } => {
                Some(measure)
            }
        });
        steady.chain(aborts)
    }

    /// Takes the samples of [`Self::measures`] (in that order; `None` where
    /// nothing could be read) at `at`, and says what to do.
    pub fn step(&mut self, at: Duration, samples: &[Option<Sample>]) -> Step {
        self.last = at;
        let (steady, aborts) = samples.split_at(self.checks.len().min(samples.len()));
        for (check, sample) in self.checks.iter_mut().zip(steady) {
            if let Some(sample) = sample {
                check.series.push(at, *sample);
            }
            let Some(value) = check.series.value() else {
                continue;
            };
            let baseline = check.baseline.mean();
            match self.stage {
                Stage::Baseline => check.baseline.add(value, None),
                Stage::Injecting => check.during.add(value, baseline),
                _ => check.after.add(value, baseline),
            }
        }
        for (i, sample) in aborts.iter().enumerate() {
            if let (Some(Some(series)), Some(sample)) = (self.aborts.get_mut(i), sample) {
                series.push(at, *sample);
            }
        }
        if self.faults_ahead_or_on()
            && let Some(fired) = self.valve(at)
        {
            return self.aborted(at, fired);
        }
        self.advance(at)
    }

    /// Whether the safety valve watches: before and while the faults are on
    /// (once they are off, a condition that fires has nothing to stop).
    fn faults_ahead_or_on(&self) -> bool {
        matches!(self.stage, Stage::Baseline | Stage::Injecting)
    }

    /// A destination tripped at `at`: whether a trip condition fires.
    pub fn tripped(&mut self, at: Duration, dest: SocketAddr) -> Step {
        if !self.faults_ahead_or_on() {
            return Step::Wait;
        }
        let fired = self
            .experiment
            .abort
            .iter()
            .enumerate()
            .find(|(_, a)| match a {
                AbortCondition::Trip {
                    destination: Some(d),
                } => {
                    // An IPv4 address and its v4-mapped form are one destination.
                    DestKey::from(*d) == DestKey::from(dest)
                }
                AbortCondition::Trip { destination: None } => !self.experiment.targets(dest),
                _ => false,
            });
        match fired {
            Some((i, _)) => {
                let view = AbortView {
                    reason: "trip".to_owned(),
                    condition: format!("abort[{i}]: {}", describe(&self.experiment.abort[i])),
                    figure: None,
                    bound: None,
                    dest: Some(dest.to_string()),
                    at_ms: millis(at),
                    reaction_ms: None,
                };
                self.aborted(at, view)
            }
            None => Step::Wait,
        }
    }

    /// Stops the experiment at `at` for `reason` (`operator`, `kernel`),
    /// described by `condition`.
    pub fn stop(&mut self, at: Duration, reason: &str, condition: String) -> Step {
        if !self.stage.running() || self.abort.is_some() {
            return Step::Wait;
        }
        let view = AbortView {
            reason: reason.to_owned(),
            condition,
            figure: None,
            bound: None,
            dest: None,
            at_ms: millis(at),
            reaction_ms: None,
        };
        self.aborted(at, view)
    }

    /// The faults of an abort were disarmed `after` what fired it.
    pub fn disarmed(&mut self, after: Duration) {
        if let Some(a) = &mut self.abort {
            a.reaction_ms.get_or_insert(after.as_secs_f64() * 1000.0);
        }
    }

    /// The time of the latest step.
    pub fn elapsed(&self) -> Duration {
        self.last
    }

    /// The daemon went away while it ran.
    pub fn interrupt(&mut self) {
        if self.stage.running() {
            self.stage = Stage::Interrupted;
        }
    }

    /// The first abort condition whose measure crossed its bound.
    fn valve(&self, at: Duration) -> Option<AbortView> {
        self.experiment
            .abort
            .iter()
            .zip(&self.aborts)
            .enumerate()
            .find_map(|(i, (condition, series))| {
                let value = series.as_ref()?.value()?;
                let (crossed, bound) = match condition {
                    AbortCondition::Below { bound, .. } => (value < *bound, *bound),
                    AbortCondition::Above { bound, .. } => (value > *bound, *bound),
                    AbortCondition::Trip { .. } => return None,
                };
                crossed.then(|| AbortView {
                    reason: reason(condition).to_owned(),
                    condition: format!("abort[{i}]: {}", describe(condition)),
                    figure: Some(value),
                    bound: Some(bound),
                    dest: None,
                    at_ms: millis(at),
                    reaction_ms: None,
                })
            })
    }

    fn aborted(&mut self, at: Duration, view: AbortView) -> Step {
        self.abort = Some(view);
        match self.stage {
            Stage::Baseline => {
                // Nothing was injected: nothing to recover from.
                self.stage = Stage::Aborted;
                Step::Done
            }
            Stage::Injecting => {
                self.ended_at = Some(at);
                self.stage = Stage::Recovering;
                Step::Disarm
            }
            // The faults are off already: stop measuring.
            _ => {
                self.stage = Stage::Aborted;
                Step::Done
            }
        }
    }

    fn advance(&mut self, at: Duration) -> Step {
        let e = &self.experiment;
        match self.stage {
            Stage::Baseline if at >= e.baseline.0 => {
                self.stage = Stage::Injecting;
                self.injected_at = Some(at);
                Step::Arm
            }
            Stage::Injecting if at >= self.injected_at.unwrap_or(at) + e.duration.0 => {
                self.stage = Stage::Recovering;
                self.ended_at = Some(at);
                Step::Disarm
            }
            Stage::Recovering => {
                let ended = self.ended_at.unwrap_or(at);
                if self.recovered_at.is_none() && self.recovered() {
                    self.recovered_at = Some(at);
                }
                if self.recovered_at.is_some() || at >= ended + e.recovery.0 {
                    self.stage = if self.abort.is_some() {
                        Stage::Aborted
                    } else {
                        Stage::Completed
                    };
                    Step::Done
                } else {
                    Step::Wait
                }
            }
            _ => Step::Wait,
        }
    }

    /// Whether every steady-state check is back within its tolerance of its
    /// baseline (checks without a baseline cannot say, and do not hold
    /// recovery up).
    fn recovered(&self) -> bool {
        self.checks
            .iter()
            .zip(&self.experiment.steady_state)
            .all(|(c, s)| match (c.baseline.mean(), c.series.value()) {
                (Some(b), Some(v)) => within(v, b, s.tolerance),
                (Some(_), None) => false,
                (None, _) => true,
            })
    }

    /// The report so far.
    pub fn checks(&self) -> Vec<CheckView> {
        self.checks
            .iter()
            .zip(&self.experiment.steady_state)
            .map(|(c, s)| {
                let baseline = c.baseline.mean();
                let held = match (baseline, c.during.worst()) {
                    (Some(b), Some(w)) => Some(within(w, b, s.tolerance)),
                    _ => None,
                };
                CheckView {
                    name: s.name.clone(),
                    tolerance: s.tolerance,
                    baseline,
                    during: c.during.mean(),
                    worst: c.during.worst(),
                    after: c.after.mean(),
                    current: c.series.value(),
                    held,
                }
            })
            .collect()
    }

    /// Whether the steady state held while the faults were on: every check
    /// that could tell held, and no abort fired.
    pub fn hypothesis_held(&self) -> Option<bool> {
        self.injected_at?;
        let held: Vec<Option<bool>> = self.checks().iter().map(|c| c.held).collect();
        if self.abort.is_some() {
            return Some(false);
        }
        if held.is_empty() {
            return None;
        }
        Some(held.iter().all(|h| *h != Some(false)))
    }

    pub fn abort(&self) -> Option<&AbortView> {
        self.abort.as_ref()
    }

    /// How long the faults were on.
    pub fn injected(&self) -> Option<Duration> {
        let from = self.injected_at?;
        Some(self.ended_at.unwrap_or(self.last).saturating_sub(from))
    }

    /// From the end of injection to recovery.
    pub fn recovery(&self) -> Option<Duration> {
        Some(self.recovered_at?.saturating_sub(self.ended_at?))
    }

    /// Whether the faults are (to be) armed.
    pub fn injecting(&self) -> bool {
        self.stage == Stage::Injecting
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// An abort condition's kind, for the metrics.
fn reason(c: &AbortCondition) -> &'static str {
    match c {
        AbortCondition::Trip { .. } => "trip",
        AbortCondition::Below { measure, .. } | AbortCondition::Above { measure, .. } => {
            match measure {
                Measure::SuccessRatio { .. } => "success_ratio",
                Measure::Http { .. } => "http",
                Measure::Rate { .. } => "metric",
            }
        }
    }
}

/// An abort condition in words.
pub fn describe(c: &AbortCondition) -> String {
    let measure = |m: &Measure| match m {
        Measure::SuccessRatio { of, window } => format!("success ratio of {of} over {window}"),
        Measure::Http { url, timeout } => format!("GET {url} answering 200 within {timeout}"),
        Measure::Rate { metric, window } => format!("rate of {metric} over {window}"),
    };
    match c {
        AbortCondition::Trip { destination: None } => {
            "a destination outside the targets tripped".to_owned()
        }
        AbortCondition::Trip {
            destination: Some(d),
        } => format!("{d} tripped"),
        AbortCondition::Below {
            measure: m @ Measure::Http { .. },
            ..
        } => format!("{} stopped", measure(m)),
        AbortCondition::Below { measure: m, bound } => format!("{} below {bound}", measure(m)),
        AbortCondition::Above { measure: m, bound } => format!("{} above {bound}", measure(m)),
    }
}

#[cfg(test)]
mod tests;

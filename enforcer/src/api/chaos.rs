//! The chaos API's resources: an experiment's state and, once it ended, its
//! report.

use serde::{Deserialize, Serialize};

use crate::chaos::experiment::Experiment;

/// Where an experiment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Measuring the steady state before injecting.
    Baseline,
    /// The faults are armed.
    Injecting,
    /// The faults are off; waiting for the steady state to come back.
    Recovering,
    /// Ran its course.
    Completed,
    /// An abort condition fired or an operator aborted it.
    Aborted,
    /// The daemon stopped (or died) while it ran; the kernel ended its
    /// faults at their deadline.
    Interrupted,
}

impl Stage {
    pub const fn running(self) -> bool {
        matches!(self, Self::Baseline | Self::Injecting | Self::Recovering)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Injecting => "injecting",
            Self::Recovering => "recovering",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Interrupted => "interrupted",
        }
    }
}

/// An experiment: what was asked, where it is, and what it found so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentView {
    pub name: String,
    pub stage: Stage,
    /// Unix time (ms) it was started.
    pub started_unix_ms: u64,
    /// Time since it started (ms), to its end once it ended.
    pub elapsed_ms: u64,
    /// How long the faults were armed (ms), once they were.
    pub injected_ms: Option<u64>,
    /// Why it was aborted.
    pub abort: Option<AbortView>,
    /// From the end of injection until every steady-state check was back
    /// within its tolerance of the baseline (ms); none while not (yet).
    pub recovery_ms: Option<u64>,
    /// Whether every steady-state check stayed within its tolerance while
    /// the faults were on (none before injecting, or without checks).
    pub hypothesis_held: Option<bool>,
    pub checks: Vec<CheckView>,
    pub faults: Vec<FaultView>,
    /// The experiment as validated.
    pub experiment: Experiment,
}

/// Why an experiment stopped early.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbortView {
    /// `operator`, `kernel`, `trip`, `success_ratio`, `http` or `metric`.
    pub reason: String,
    /// The condition, as the experiment names it (`abort[1]: …`), or
    /// `operator` for `enforcer chaos abort`.
    pub condition: String,
    /// The figure that fired it and the bound it crossed, when it has them.
    pub figure: Option<f64>,
    pub bound: Option<f64>,
    /// The destination whose trip fired it.
    pub dest: Option<String>,
    /// Time since the start (ms).
    pub at_ms: u64,
    /// From what fired it (for a trip: the kernel's trip; for a measure:
    /// the sample that crossed the bound) to the faults' disarming, in ms.
    pub reaction_ms: Option<f64>,
}

/// A steady-state check's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub name: String,
    pub tolerance: f64,
    /// Mean over the baseline window.
    pub baseline: Option<f64>,
    /// Mean while the faults were on, and the value furthest from the
    /// baseline.
    pub during: Option<f64>,
    pub worst: Option<f64>,
    /// Mean after injection ended.
    pub after: Option<f64>,
    /// The latest value.
    pub current: Option<f64>,
    /// Whether the worst value during injection was within tolerance.
    pub held: Option<bool>,
}

/// A fault and what the kernel counted for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultView {
    pub kind: String,
    /// The kernel slot it occupies (while running).
    pub slot: Option<u32>,
    /// Connects the fault hit (a guest fault: packets).
    pub affected: u64,
    /// Matching connects (a guest fault: packets) the percentage or the cap
    /// spared.
    pub spared: u64,
    /// SYNs dropped (blackhole, delay, guest_blackhole, guest_loss).
    pub syns_dropped: u64,
}

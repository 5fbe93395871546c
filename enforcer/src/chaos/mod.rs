//! Chaos experiments: faults injected on purpose by the kernel programs, with
//! a blast radius the kernel enforces, a safety valve the daemon checks every
//! [`VALVE_PERIOD`], and a report of the steady state before, during and
//! after.
//!
//! Everything here is pure: [`experiment`] validates what is written,
//! [`plan`] turns it into what the kernel holds, [`series`] keeps the
//! measures, [`report`] judges them. The daemon runs it
//! (`crate::daemon::chaos`).

use std::time::Duration;

pub mod experiment;
pub mod plan;
pub mod report;
pub mod series;

/// How often the daemon samples the measures and checks the abort
/// conditions.
pub const VALVE_PERIOD: Duration = Duration::from_millis(100);

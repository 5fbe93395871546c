//! Scenario 10, adaptive concurrency limits (issue 13):
//!
//! - (a) [`overload`]: a backend of known capacity offered three times that,
//!   with no cap, a static cap at its capacity, and a learnt cap per
//!   algorithm: goodput, the latency of what is admitted, how fast the rest is
//!   refused, and where each learnt limit settles;
//! - (b) [`signal_cost`]: what learning from the response latency adds to a
//!   request against learning from the handshake, and that against no policy.
//!
//! The issue sets no number, so the comparisons are reported side by side
//! without a verdict; only the setup checks can fail the run.

mod overload;
mod signal_cost;
mod tables;

use serde::Serialize;

use crate::{compare::Check, interleave::Round, report::Table};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub overload: overload::Size,
    pub signal_cost: signal_cost::Size,
}

/// About two and a half minutes: the overloads take most of it.
pub const FULL: Size = Size {
    overload: overload::Size {
        unloaded_ms: 5_000,
        warm_up_ms: 3_000,
        overload_ms: 20_000,
        settle_ms: 10_000,
        timeout_ms: 8_000,
    },
    signal_cost: signal_cost::Size {
        rounds: 10,
        round: Round {
            per_variant: 2_000,
            slice: 200,
        },
        warm_up: 200,
        profiled: 10_000,
    },
};

/// Under half a minute (`cargo xtask test` runs it): limits have no time to
/// settle, the figures only show that the scenario runs.
pub const QUICK: Size = Size {
    overload: overload::Size {
        unloaded_ms: 1_000,
        warm_up_ms: 500,
        overload_ms: 3_000,
        settle_ms: 1_500,
        timeout_ms: 2_000,
    },
    signal_cost: signal_cost::Size {
        rounds: 2,
        round: Round {
            per_variant: 200,
            slice: 50,
        },
        warm_up: 20,
        profiled: 200,
    },
};

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub overload: overload::Results,
    pub signal_cost: signal_cost::Results,
}

pub fn run(size: Size) -> Results {
    Results {
        size,
        overload: overload::run(size.overload),
        signal_cost: signal_cost::run(size.signal_cost),
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut tables = vec![self.overload.table()];
        tables.extend(self.signal_cost.tables());
        tables
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.overload.checks().chain(self.signal_cost.checks())
    }
}

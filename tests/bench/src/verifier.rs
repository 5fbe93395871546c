//! The verifier's work per program (instructions processed to accept it), read
//! from the kernel after a load, against the figures where issue 17 started:
//! the hot path may get faster, but not by making any program twice as hard
//! to verify.

use enforcer_tests::{cgroup::ScratchCgroup, fixtures};
use serde::Serialize;

use crate::report::{self, Goal, Table};

/// Instructions processed on Linux 6.18 when issue 17 started (main at
/// 608bb28; `cargo test -p enforcer-tests --test modes verifier`). The
/// chaos programs of then (`chaos_connect4/6`, 19 713 and 19 719) are a
/// step of the gates since.
const AT_START: [(&str, u32); 11] = [
    ("track_sockops", 12_447),
    ("track_sock_release", 2_233),
    ("sock_out", 172),
    ("sock_in", 232),
    ("gate_connect4", 75_211),
    ("gate_connect6", 51_111),
    ("control", 4_169),
    ("packet_in_xdp", 75_578),
    ("packet_in_tc", 141_534),
    ("packet_out_tc", 14_070),
    ("chaos_in_tc", 104_597),
];

#[derive(Serialize)]
pub struct Row {
    pub program: &'static str,
    pub processed: Option<u32>,
    pub at_start: Option<u32>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        Some(f64::from(self.processed?) / f64::from(self.at_start?.max(1)))
    }
}

#[derive(Serialize)]
pub struct Results {
    pub kernel: String,
    pub rows: Vec<Row>,
}

pub fn run() -> Results {
    // The cgroup programs are verified when they attach: to a scratch cgroup
    // of the run's own, removed on drop.
    let cgroup = ScratchCgroup::new();
    let enforcer = fixtures::attached(&cgroup);
    let rows = enforcer
        .program_stats(None)
        .into_iter()
        .map(|s| Row {
            program: s.name,
            processed: s.verified_insns,
            at_start: AT_START
                .iter()
                .find(|(name, _)| *name == s.name)
                .map(|(_, n)| *n),
        })
        .collect();
    Results {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |r| r.trim().to_owned()),
        rows,
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Verifier: instructions processed per program",
            &["program", "processed", "when issue 17 started", "ratio"],
        );
        let figure = |n: Option<u32>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        for r in &self.rows {
            t.row(vec![
                r.program.to_owned(),
                figure(r.processed),
                figure(r.at_start),
                r.ratio().map_or_else(String::new, report::times),
            ]);
        }
        t.note(format!(
            "on Linux {} (the start figures are 6.18's); the kernel's limit is 1 000 000",
            self.kernel
        ));
        t.note(
            "the gates hold the chaos check since it stopped being programs of its own \
             (chaos_connect4/6: 19 713 and 19 719 at the start)",
        );
        vec![t]
    }

    pub fn goals(&self) -> Vec<Goal> {
        let worst = self
            .rows
            .iter()
            .filter_map(|r| Some((r.program, r.ratio()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let unknown: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.ratio().is_none())
            .map(|r| r.program)
            .collect();
        vec![Goal {
            scenario: 1,
            goal: "issue 17: no program's verifier figure beyond 2× of where the issue started"
                .to_owned(),
            measured: format!(
                "the largest growth: {}{}",
                worst.map_or_else(
                    || "none measured".to_owned(),
                    |(p, r)| format!("{p} {}", report::times(r))
                ),
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!("; without a figure: {}", unknown.join(", "))
                }
            ),
            met: unknown.is_empty() && worst.is_some_and(|(_, r)| r <= 2.0),
        }]
    }
}

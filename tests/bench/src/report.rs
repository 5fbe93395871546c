//! What a run prints (markdown tables) and what it records (JSON): the machine,
//! the figures, and each goal of issue 5 as met or not.

use std::fmt::Write as _;

use serde::Serialize;

/// A markdown table with a title and notes under it.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "{}: row width", self.title);
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out += &line(&self.headers);
        out += &format!("|{}\n", "---|".repeat(self.headers.len()));
        for row in &self.rows {
            out += &line(row);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// A duration for people: whole ns below 10 µs (where the overheads live), then
/// µs, ms and s.
pub fn duration(ns: u64) -> String {
    match ns {
        0..10_000 => format!("{ns} ns"),
        10_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// A signed difference in ns, always with its sign.
pub fn signed(ns: i64) -> String {
    if ns < 0 {
        format!("−{} ns", ns.unsigned_abs())
    } else {
        format!("+{ns} ns")
    }
}

/// A ratio against a baseline.
pub fn times(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else {
        format!("{ratio:.2}×")
    }
}

/// One goal of issue 5 and how this run measured against it.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub scenario: u32,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Goal {
    pub fn line(&self) -> String {
        let verdict = if self.met { "met" } else { "NOT met" };
        format!(
            "- scenario {}: {} — **{verdict}**: {}",
            self.scenario, self.goal, self.measured
        )
    }
}

/// A comparison an issue asks for without setting a goal: the figures side by
/// side, with no verdict (a threshold of our own would be invented, and a
/// "met" that cannot fail says nothing).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub scenario: u32,
    pub what: String,
    pub measured: String,
}

impl Comparison {
    pub fn line(&self) -> String {
        format!(
            "- scenario {}: {}: {}",
            self.scenario, self.what, self.measured
        )
    }
}

/// A share of a whole, as a percentage; "—" of nothing.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "—".to_owned()
    } else {
        format!("{:.1} %", 100.0 * part as f64 / whole as f64)
    }
}

/// The machine a run measured, for BENCHMARKS.md.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(12_345), "12.3 µs");
        assert_eq!(duration(1_500_000), "1.50 ms");
        assert_eq!(duration(131_000_000_000), "131.000 s");
        assert_eq!(signed(-30), "−30 ns");
        assert_eq!(signed(142), "+142 ns");
        assert_eq!(share(1, 3), "33.3 %");
        assert_eq!(share(0, 0), "—");
    }

    #[test]
    fn a_table_renders_as_markdown() {
        let mut t = Table::new("T", &["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        t.note("n");
        assert_eq!(
            t.markdown(),
            "### T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- n\n"
        );
    }
}

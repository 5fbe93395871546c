//! Scenario 8, daemon footprint: the daemon's memory and CPU at idle with no
//! destination and with many, and while `/metrics` is scraped; scrape time.
//!
//! The release daemon (`ENFORCER_BIN`, set by `cargo xtask bench`) on a
//! scratch cgroup and a private bpffs, with the destination map filled by
//! refused connects from that cgroup (see [`crate::populate`]). CPU is the
//! process's user + system time over a window, as a share of one core.

use std::time::{Duration, Instant};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{self, Daemon, Metrics},
};
use serde::Serialize;

use crate::{
    compare::Check,
    populate::Refusing,
    proc_usage::{self, Usage},
    report::{self, Goal, Table},
    stats::Summary,
};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub dests: usize,
    /// How long each idle reading lasts.
    pub idle_ms: u64,
    pub scrapes: usize,
}

pub const FULL: Size = Size {
    dests: 100_000,
    idle_ms: 5_000,
    scrapes: 20,
};
pub const QUICK: Size = Size {
    dests: 10_000,
    idle_ms: 500,
    scrapes: 3,
};

/// A window of the daemon's life.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub what: String,
    pub wall_ns: u64,
    pub cpu_share: f64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub windows: Vec<Window>,
    pub scrape: Summary,
    pub scrape_bytes: usize,
    pub check: Check,
}

/// Reads the daemon over `f` (which runs for the window).
fn window(pid: i32, what: String, f: impl FnOnce()) -> Window {
    let (before, start) = (Usage::of(pid), Instant::now());
    f();
    let wall_ns = crate::client::nanos(start.elapsed());
    let after = Usage::of(pid);
    Window {
        what,
        wall_ns,
        cpu_share: proc_usage::cpu_share(before, after, wall_ns),
        rss_bytes: after.rss_bytes,
        hwm_bytes: after.hwm_bytes,
    }
}

pub fn run(size: Size) -> Results {
    let cgroup = ScratchCgroup::new();
    let pins = PinDir::new();
    let refusing = Refusing::new(128);
    // Refusals never trip: the map keeps every destination, CLOSED.
    let daemon = Daemon::start_with(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"many\"\nmatch = [\"{}\"]\nfailure_threshold = 1000000\n\
             min_attempts = 1000000\n",
            refusing.covering_rule()
        ),
        &format!("dests_capacity = {}\n", size.dests.next_power_of_two()),
        false,
    );
    let pid = proc_usage::child_running(&daemon::binary()).expect("the daemon's pid");
    let idle = Duration::from_millis(size.idle_ms);
    let mut windows = vec![window(pid, "idle, no destination".to_owned(), || {
        std::thread::sleep(idle)
    })];
    eprintln!("bench: footprint: filling {} destinations", size.dests);
    refusing.connect_each(&cgroup, size.dests);
    windows.push(window(
        pid,
        format!("idle, {} destinations", size.dests),
        || std::thread::sleep(idle),
    ));
    let mut times = Vec::with_capacity(size.scrapes);
    let mut body = String::new();
    windows.push(window(
        pid,
        format!("{} back-to-back /metrics scrapes", size.scrapes),
        || {
            for _ in 0..size.scrapes {
                let start = Instant::now();
                let (status, text) =
                    daemon::http_get(daemon.metrics, "/metrics").expect("scraping /metrics");
                times.push(crate::client::nanos(start.elapsed()));
                assert_eq!(status, 200, "/metrics: {text}");
                body = text;
            }
        },
    ));
    let tracked = Metrics::parse(&body)
        .get("enforcer_tracked_destinations", &[])
        .unwrap_or(-1.0);
    Results {
        size,
        windows,
        scrape: Summary::of(&times),
        scrape_bytes: body.len(),
        check: Check::expect(
            tracked == size.dests as f64,
            format!(
                "/metrics reports {tracked} tracked destinations of {} filled",
                size.dests
            ),
        ),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 8: daemon footprint (release build)",
            &[
                "window",
                "length",
                "CPU (share of one core)",
                "RSS",
                "peak RSS so far",
            ],
        );
        for w in &self.windows {
            t.row(vec![
                w.what.clone(),
                report::duration(w.wall_ns),
                format!("{:.1} %", w.cpu_share * 100.0),
                mib(w.rss_bytes),
                mib(w.hwm_bytes),
            ]);
        }
        t.note(format!(
            "scrape time (GET /metrics on loopback, whole response): p50 {}, p99 {}, max {} over \
             {} scrapes; {} bytes each",
            report::duration(self.scrape.p50_ns),
            report::duration(self.scrape.p99_ns),
            report::duration(self.scrape.max_ns),
            self.scrape.n,
            self.scrape_bytes
        ));
        t.note(
            "the BPF maps are kernel memory, not in the RSS (scenario 5 has their size); \
             max_series 1000 (the default): the other destinations fold into dest=\"other\"",
        );
        t.note(self.check.note());
        vec![t]
    }

    /// The issue sets no number for this scenario: the figures are reported as
    /// measured, not judged.
    pub fn goals(&self) -> Vec<Goal> {
        let idle = self.windows.get(1);
        vec![Goal {
            scenario: 8,
            goal: format!(
                "report the daemon's RSS and CPU at idle and while scraped with {} destinations, \
                 and the scrape time (no target set)",
                self.size.dests
            ),
            measured: format!(
                "idle: {:.1} % CPU, RSS {}; scrape p50 {}, p99 {}",
                idle.map_or(0.0, |w| w.cpu_share * 100.0),
                mib(idle.map_or(0, |w| w.rss_bytes)),
                report::duration(self.scrape.p50_ns),
                report::duration(self.scrape.p99_ns)
            ),
            met: true,
        }]
    }
}

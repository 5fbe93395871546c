//! Scenario 11, outlier detection and learned thresholds (issue 14):
//!
//! - (a) time from a backend going bad to its ejection, and (b) false
//!   ejections per hour of healthy traffic: the daemon's own detector
//!   ([`enforcer::outlier::Tracker`], the code the daemon runs) fed at speed
//!   with simulated intervals of ten backends (binomial failures, handshake
//!   latencies drawn around a median), the bad one turning at a random
//!   moment of an interval;
//! - (c) the daemon's CPU per 1 000 destinations per interval: a real daemon
//!   holding many destinations, measured idle, then with outlier detection,
//!   then with learned thresholds, each every second.
//!
//! The issue sets no number, so the figures are reported without a verdict;
//! only the setup checks can fail the run.

use std::time::{Duration, Instant};

use enforcer::outlier::{Measure, Peers, Settings, Tracker};
use enforcer_common::dest::{DestKey, DestState};
use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{self, Daemon},
};
use serde::Serialize;

use crate::{
    compare::Check,
    populate::Refusing,
    proc_usage::{self, Usage},
    report::{self, Comparison, Table},
    stats::Summary,
};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    /// Backends going bad, one per trial.
    pub trials: usize,
    /// Hours of healthy traffic simulated.
    pub hours: u64,
    /// Destinations the real daemon holds.
    pub dests: usize,
    /// Each CPU window's length.
    pub window_ms: u64,
}

pub const FULL: Size = Size {
    trials: 2_000,
    hours: 200,
    dests: 20_000,
    window_ms: 20_000,
};

pub const QUICK: Size = Size {
    trials: 100,
    hours: 5,
    dests: 1_000,
    window_ms: 3_000,
};

/// Ten backends of one service, 200 completed connects each per 10 s
/// interval (Envoy's default interval), healthy ones failing 0.5 % with
/// handshakes around 300 µs, a bad one failing 50 %.
const BACKENDS: usize = 10;
const PER_INTERVAL: u64 = 200;
const HEALTHY_FAILING: f64 = 0.005;
const BAD_FAILING: f64 = 0.5;
const HANDSHAKE_US: f64 = 300.0;

#[derive(Debug, Serialize)]
pub struct Detector {
    pub what: String,
    pub to_ejection: Summary,
    /// Trials in which the bad backend was not ejected within 10 intervals.
    pub missed: usize,
    pub false_ejections_per_hour: f64,
}

#[derive(Debug, Serialize)]
pub struct CpuWindow {
    pub what: String,
    pub wall_ns: u64,
    pub cpu_ns: u64,
    /// Passes over the destinations in the window (one per second).
    pub passes: u64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub detectors: Vec<Detector>,
    pub cpu: Vec<CpuWindow>,
    pub check: Check,
}

pub fn run(size: Size) -> Results {
    let mut rng = fastrand::Rng::with_seed(14);
    let detectors = [
        ("success rate (Envoy's defaults)", Settings::DEFAULT),
        (
            "failure percentage 40 % alone",
            Settings {
                failure_percentage: Some(40),
                success_rate_min_hosts: u32::MAX,
                ..Settings::DEFAULT
            },
        ),
    ]
    .map(|(what, settings)| simulate(what, settings, size, &mut rng));
    let cpu = cpu_windows(size);
    let passes: u64 = cpu.iter().map(|w| w.passes).sum();
    let check = Check::expect(
        passes > 0 && detectors.iter().all(|d| d.to_ejection.n > 0),
        format!(
            "every detector ejected bad backends ({} trials each) and the daemon made {passes} \
             passes over {} destinations",
            size.trials, size.dests
        ),
    );
    Results {
        size,
        detectors: detectors.into(),
        cpu,
        check,
    }
}

/// The backends' kernel states as the daemon reads them, their counters
/// moved by one interval of traffic; `bad` fails at `BAD_FAILING` for the
/// last `bad_share` of the interval.
fn interval(
    reads: &mut [(DestKey, DestState)],
    bad: Option<(usize, f64)>,
    rng: &mut fastrand::Rng,
) {
    for (i, (_, s)) in reads.iter_mut().enumerate() {
        for _ in 0..PER_INTERVAL {
            let failing = match bad {
                Some((b, share)) if b == i && rng.f64() < share => BAD_FAILING,
                _ => HEALTHY_FAILING,
            };
            if rng.f64() < failing {
                s.counters.failures_refused += 1;
            } else {
                s.counters.successes += 1;
                // Log-normal around the median, σ of a third of an octave.
                let us = HANDSHAKE_US * (0.23 * normal(rng)).exp();
                s.latency.record((us * 1e3) as u64);
            }
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn fresh() -> Vec<(DestKey, DestState)> {
    (0..BACKENDS)
        .map(|i| {
            let key = DestKey::from(std::net::SocketAddr::from(([10, 0, 0, i as u8 + 1], 80)));
            let state = DestState {
                policy_id: 1,
                policy_epoch: 1,
                generation: 1,
                ..DestState::default()
            };
            (key, state)
        })
        .collect()
}

fn simulate(what: &str, settings: Settings, size: Size, rng: &mut fastrand::Rng) -> Detector {
    let peers = Peers {
        policy_id: 1,
        epoch: 1,
        settings,
        max_open_percent: 100,
        measure: Measure::HandshakeP90,
    };
    let interval_ns = settings.interval.as_nanos() as u64;
    let pass = |t: &mut Tracker, reads: &[(DestKey, DestState)]| {
        t.pass(&peers, reads.iter().map(|(k, s)| (k, s)))
    };
    // (a) A backend turns bad at a random moment of an interval; the
    // detector runs at each interval's end.
    let mut times = Vec::with_capacity(size.trials);
    let mut missed = 0;
    for _ in 0..size.trials {
        let (mut t, mut reads) = (Tracker::default(), fresh());
        pass(&mut t, &reads);
        for _ in 0..3 {
            interval(&mut reads, None, rng);
            pass(&mut t, &reads);
        }
        let bad = rng.usize(..BACKENDS);
        let phase = rng.f64();
        let mut share = 1.0 - phase;
        let mut found = None;
        for k in 1..=10u64 {
            interval(&mut reads, Some((bad, share)), rng);
            share = 1.0;
            if pass(&mut t, &reads).iter().any(|e| e.key == reads[bad].0) {
                found = Some(k);
                break;
            }
        }
        match found {
            Some(k) => times.push(((k as f64 - phase) * interval_ns as f64) as u64),
            None => missed += 1,
        }
    }
    // (b) Healthy backends only: every ejection is a false one.
    let intervals = size.hours * 3600 / settings.interval.as_secs().max(1);
    let (mut t, mut reads) = (Tracker::default(), fresh());
    pass(&mut t, &reads);
    let mut ejections = 0usize;
    for _ in 0..intervals {
        interval(&mut reads, None, rng);
        ejections += pass(&mut t, &reads).len();
    }
    Detector {
        what: what.to_owned(),
        to_ejection: Summary::of(&times),
        missed,
        false_ejections_per_hour: ejections as f64 / size.hours as f64,
    }
}

/// The daemon's CPU while it holds `size.dests` destinations: idle, then
/// with each per-destination loop running every second.
fn cpu_windows(size: Size) -> Vec<CpuWindow> {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = Refusing::new(192);
    let rule = refusing.covering_rule();
    let policy = |extra: &str| {
        format!(
            "[[policy]]\nname = \"many\"\nmatch = [\"{rule}\"]\nfailure_threshold = 1000000\n\
             min_attempts = 1000000\nwindow = \"1s\"\nbaseline_window = \"1m\"\n{extra}"
        )
    };
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        &policy(""),
        &format!("dests_capacity = {}\n", size.dests.next_power_of_two()),
        false,
    );
    let pid = proc_usage::child_running(&daemon::binary()).expect("the daemon's pid");
    eprintln!("bench: outliers: filling {} destinations", size.dests);
    refusing.connect_each(&cgroup, size.dests);
    let window = Duration::from_millis(size.window_ms);
    let measure = |what: &str, passes: u64| {
        let (before, start) = (Usage::of(pid), Instant::now());
        std::thread::sleep(window);
        let wall = start.elapsed();
        CpuWindow {
            what: what.to_owned(),
            wall_ns: wall.as_nanos() as u64,
            cpu_ns: Usage::of(pid).cpu_ns.saturating_sub(before.cpu_ns),
            passes: passes * wall.as_secs(),
        }
    };
    let mut windows = vec![measure("idle", 0)];
    let matching = format!("match={rule}");
    let set = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "set",
            "many",
            matching.as_str(),
            "failure_threshold=1000000",
            "min_attempts=1000000",
            "window=1s",
            "baseline_window=1m",
        ];
        args.extend_from_slice(extra);
        d.ok(&args);
    };
    set(&["outlier.interval=1s"]);
    windows.push(measure("outlier detection every 1 s", 1));
    set(&["failure_rate=auto", "slow_connect=auto"]);
    windows.push(measure("learned thresholds every 1 s", 1));
    windows
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut a = Table::new(
            "Scenario 11: outlier detection, simulated at speed (the daemon's detector)",
            &[
                "detector",
                "bad backend to ejection p50",
                "p99",
                "missed (10 intervals)",
                "false ejections per hour",
            ],
        );
        for d in &self.detectors {
            a.row(vec![
                d.what.clone(),
                report::duration(d.to_ejection.p50_ns),
                report::duration(d.to_ejection.p99_ns),
                format!("{} of {}", d.missed, self.size.trials),
                format!("{:.2}", d.false_ejections_per_hour),
            ]);
        }
        a.note(format!(
            "{BACKENDS} backends, {PER_INTERVAL} completed connects each per 10 s interval, healthy \
             ones failing {:.1} % (handshakes log-normal around {HANDSHAKE_US} µs), the bad one \
             {:.0} % from a random moment of an interval; {} trials, {} hours of healthy traffic",
            HEALTHY_FAILING * 100.0,
            BAD_FAILING * 100.0,
            self.size.trials,
            self.size.hours
        ));
        let mut c = Table::new(
            "Scenario 11: the daemon's CPU per 1 000 destinations per pass (release build)",
            &["window", "length", "CPU", "per pass per 1 000 destinations"],
        );
        let idle_rate = self
            .cpu
            .first()
            .map_or(0.0, |w| w.cpu_ns as f64 / w.wall_ns.max(1) as f64);
        for w in &self.cpu {
            let over_idle = w.cpu_ns as f64 - idle_rate * w.wall_ns as f64;
            let per = (w.passes > 0)
                .then(|| over_idle.max(0.0) / w.passes as f64 / (self.size.dests as f64 / 1000.0));
            c.row(vec![
                w.what.clone(),
                report::duration(w.wall_ns),
                report::duration(w.cpu_ns),
                per.map_or("—".to_owned(), |ns| report::duration(ns as u64)),
            ]);
        }
        c.note(format!(
            "{} destinations (refused loopback connects, CLOSED); over the idle window's rate",
            self.size.dests
        ));
        c.note(self.check.note());
        vec![a, c]
    }

    pub fn comparisons(&self) -> Vec<Comparison> {
        self.detectors
            .iter()
            .map(|d| Comparison {
                scenario: 11,
                what: format!("{}: bad backend to ejection", d.what),
                measured: format!(
                    "p50 {}, p99 {}; {:.2} false ejections per hour",
                    report::duration(d.to_ejection.p50_ns),
                    report::duration(d.to_ejection.p99_ns),
                    d.false_ejections_per_hour
                ),
            })
            .collect()
    }
}

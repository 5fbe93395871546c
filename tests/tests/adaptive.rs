//! Adaptive concurrency limits end to end: a backend of fixed capacity
//! (W workers, S of work per request, a connection per request) offered three
//! times what it can serve from the protected cgroup, through the daemon with
//! `max_connections = "auto"` learning from the response latency the kernel
//! measures. Without a cap the queue (and the latency) grows for as long as
//! the overload lasts; with the learnt cap the limit settles near W, admitted
//! requests keep close to the unloaded latency, and the rest fail in
//! microseconds. When the backend's capacity doubles, the limit follows.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir,
    capacity::{Backend, LoadOptions, Report, offered},
    cgroup::ScratchCgroup,
    daemon::{Daemon, Follower},
    exec::Place,
    netns::own_inode,
};

/// Workers and work per request: a capacity of W / S = 160 requests/s.
const W: usize = 8;
const S: Duration = Duration::from_millis(50);
/// Three times the capacity.
const OVERLOAD: f64 = 3.0 * W as f64 / 0.050;
/// How long each phase runs, and by when the limit must have settled in it.
const PHASE: Duration = Duration::from_secs(14);
const SETTLED: Duration = Duration::from_secs(10);

fn options() -> LoadOptions {
    LoadOptions {
        // An uncapped queue holds requests for seconds.
        timeout: Duration::from_secs(30),
        // Requests from then on are summed apart: the settled figures.
        settled_from: SETTLED,
        ..LoadOptions::default()
    }
}

/// The load at `rate` for `duration` from a child in the protected cgroup.
fn load(place: &Place, addr: SocketAddr, rate: f64, duration: Duration) -> Report {
    let line = place.run(move || offered(addr, rate, duration, &options()).to_line());
    Report::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The destination's learnt limit as `status` shows it.
fn limit(d: &Daemon, addr: SocketAddr) -> Option<u64> {
    d.status_of(addr)["limit"].as_u64()
}

fn policy(name: &str, addr: SocketAddr, algorithm: &str) -> String {
    format!(
        "[[policy]]\nname = \"{name}\"\nmatch = [\"{addr}\"]\n\
         failure_threshold = 1000000\nmin_attempts = 1000000\n\
         max_connections = \"auto\"\n\
         [policy.adaptive]\nalgorithm = \"{algorithm}\"\nsignal = \"response\"\n\
         min = 1\nmax = 200\ninitial = 20\ninterval = \"500ms\"\n"
    )
}

#[test]
fn a_learnt_limit_settles_near_the_backends_capacity_and_follows_it() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let algorithms = ["gradient2", "vegas", "aimd"];
    let backends: Vec<Backend> = algorithms.iter().map(|_| Backend::start(W, S)).collect();
    let uncapped = Backend::start(W, S);
    let config: String = algorithms
        .iter()
        .zip(&backends)
        .map(|(a, b)| policy(a, b.addr(), a))
        .collect();
    let d = Daemon::start(&cgroup, &pins, &config);
    let place = Place::cgroup(&cgroup);

    // Unloaded: a tenth of the capacity.
    let unloaded = load(&place, uncapped.addr(), 16.0, Duration::from_secs(2));
    assert_eq!(unloaded.ok, unloaded.sent, "unloaded: {unloaded}");
    let unloaded_p99 = Duration::from_nanos(unloaded.ok_p99_ns);

    // No cap (no policy covers this backend): the queue grows all along.
    let queued = load(&place, uncapped.addr(), OVERLOAD, Duration::from_secs(6));
    let queued_p99 = Duration::from_nanos(queued.ok_p99_ns);
    assert!(
        queued_p99 > 4 * unloaded_p99,
        "without a cap the latency grows with the queue: p99 {queued_p99:?}, unloaded {unloaded_p99:?}"
    );

    let mut events = Follower::start(&d);
    for (algorithm, backend) in algorithms.iter().zip(&backends) {
        let addr = backend.addr();
        // Traffic first at a tenth of the capacity: where the baseline (the
        // unloaded latency) is learnt, as on any service before its overload.
        let warm = load(&place, addr, 16.0, Duration::from_secs(3));
        assert_eq!(warm.ok, warm.sent, "{algorithm}: warm-up: {warm}");
        let mut limits: Vec<(Duration, u64)> = Vec::new();
        let start = Instant::now();
        let report = thread::scope(|s| {
            let running = s.spawn(|| load(&place, addr, OVERLOAD, 2 * PHASE));
            // The load's child is forked first: a CLI started while it forks
            // would leave the child holding the CLI's output pipe, and the
            // status read waiting for the whole load.
            thread::sleep(Duration::from_millis(500));
            let mut doubled = false;
            while !running.is_finished() {
                let t = start.elapsed();
                if t >= PHASE && !doubled {
                    // Capacity doubles half-way.
                    backend.set_workers(2 * W);
                    doubled = true;
                }
                if let Some(l) = limit(&d, addr) {
                    limits.push((t, l));
                }
                thread::sleep(Duration::from_millis(250));
            }
            running.join().expect("the load")
        });
        let in_window = |from: Duration, to: Duration| -> Vec<u64> {
            limits
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, l)| *l)
                .collect()
        };
        let settled = in_window(SETTLED, PHASE);
        assert!(
            !settled.is_empty()
                && settled
                    .iter()
                    .all(|l| (W as u64 / 2..=2 * W as u64).contains(l)),
            "{algorithm}: the limit settles in [W/2, 2W] = [{}, {}] within {SETTLED:?}: {limits:?}",
            W / 2,
            2 * W
        );
        let followed = in_window(PHASE + SETTLED, 2 * PHASE);
        assert!(
            !followed.is_empty()
                && followed
                    .iter()
                    .all(|l| (W as u64..=4 * W as u64).contains(l)),
            "{algorithm}: with twice the workers the limit follows into [{W}, {}]: {limits:?}",
            4 * W
        );
        assert!(
            report.refused > 0 && report.errors == 0,
            "{algorithm}: the overload is refused at the cap, nothing fails otherwise: {report}"
        );
        assert!(
            Duration::from_nanos(report.refused_connect_p99_ns) < Duration::from_millis(1),
            "{algorithm}: refused connects fail in microseconds: {report}"
        );
        // Every admitted request scheduled once the limit settled, through
        // the doubling too.
        let admitted_p99 = Duration::from_nanos(report.settled.ok_p99_ns);
        assert!(
            admitted_p99 <= 2 * unloaded_p99,
            "{algorithm}: once settled, admitted requests stay within twice the unloaded p99 \
             ({unloaded_p99:?}): {admitted_p99:?}; {report}"
        );
        // Each move worth telling is an event with its reason and figures.
        let shrank = events.next_where(|e| {
            e["kind"] == "limit_changed"
                && e["policy"] == *algorithm
                && e["limit"]["reason"] == "shrank"
        });
        assert!(
            shrank["limit"]["latency_us"].as_u64().is_some()
                && shrank["limit"]["baseline_us"].as_u64().is_some(),
            "{shrank}"
        );
        let metrics = d.metrics();
        let (dest, netns) = (addr.to_string(), own_inode().to_string());
        let labels = [
            ("dest", dest.as_str()),
            ("netns", &netns),
            ("policy", algorithm),
        ];
        for name in [
            "enforcer_adaptive_limit",
            "enforcer_adaptive_latency_seconds",
            "enforcer_adaptive_baseline_seconds",
        ] {
            assert!(
                metrics.get(name, &labels).is_some_and(|v| v > 0.0),
                "{algorithm}: {name}"
            );
        }
        eprintln!(
            "{algorithm}: limits {limits:?}; settled p99 {admitted_p99:?} (unloaded {unloaded_p99:?}, uncapped {queued_p99:?}); {report}"
        );
    }
}

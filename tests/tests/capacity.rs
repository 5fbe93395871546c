//! The capacity harness itself: a backend of fixed capacity queues what it
//! cannot serve (latency grows, nothing fails), follows a change of its
//! workers, and the open-loop load run from a child in a scratch cgroup says
//! so. Then, against a static bulkhead, the load tells the local kernel's
//! refusals (immediate) from everything else.

use std::time::Duration;

use enforcer_common::policy::{BackoffRow, Policy};
use enforcer_tests::{
    capacity::{Backend, LoadOptions, Report, offered},
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
};

const WORKERS: usize = 4;
const WORK: Duration = Duration::from_millis(20);
/// WORKERS / WORK.
const CAPACITY_PER_S: f64 = 200.0;

/// Offers the load from a child in `place` and reads its report back.
fn offered_from(
    place: &Place,
    backend: &Backend,
    rate: f64,
    secs: f64,
    opts: &LoadOptions,
) -> Report {
    let addr = backend.addr();
    let duration = Duration::from_secs_f64(secs);
    let line = place.run(|| offered(addr, rate, duration, opts).to_line());
    let report = Report::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    eprintln!("{report}");
    report
}

/// Every request started and answered.
fn all_answered(report: &Report) {
    assert!(
        report.sent > 0 && report.ok == report.sent && report.shed == 0,
        "not every request answered: {report}"
    );
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[test]
fn a_fixed_capacity_backend_queues_past_its_capacity_and_follows_its_workers() {
    let cgroup = ScratchCgroup::new();
    let place = Place::cgroup(&cgroup);
    let backend = Backend::start(WORKERS, WORK);
    // The overloaded run queues up to 8 s of work; give it room.
    let opts = LoadOptions {
        timeout: Duration::from_secs(20),
        ..LoadOptions::default()
    };

    // A quarter of the capacity: every request finds a free worker.
    let unloaded = offered_from(&place, &backend, CAPACITY_PER_S / 4.0, 2.0, &opts);
    all_answered(&unloaded);
    assert_eq!(unloaded.sent, 100);
    let work_ns = WORK.as_nanos() as u64;
    assert!(
        unloaded.ok_p50_ns >= work_ns && unloaded.ok_p99_ns < 3 * work_ns,
        "unloaded latency is not the work's: p50 {:.1} ms, p99 {:.1} ms",
        ms(unloaded.ok_p50_ns),
        ms(unloaded.ok_p99_ns)
    );

    // Three times the capacity: the queue grows all along, and so does the
    // latency; nothing fails.
    let overloaded = offered_from(&place, &backend, 3.0 * CAPACITY_PER_S, 4.0, &opts);
    all_answered(&overloaded);
    assert!(
        overloaded.ok_p99_ns > 3 * unloaded.ok_p99_ns,
        "overload did not queue: p99 {:.1} ms against {:.1} ms unloaded",
        ms(overloaded.ok_p99_ns),
        ms(unloaded.ok_p99_ns)
    );
    let buckets = &overloaded.buckets;
    assert_eq!(buckets.len(), 8, "4 s in buckets of 500 ms");
    assert_eq!(buckets.iter().map(|b| b.ok).sum::<u64>(), overloaded.ok);
    let (first, last) = (&buckets[0], &buckets[buckets.len() - 1]);
    assert!(
        last.ok_p99_ns > 2 * first.ok_p99_ns,
        "the latency did not grow with the queue: {buckets:?}"
    );
    let stats = backend.stats();
    assert!(
        stats.queued_max > 100 && stats.overflowed == 0,
        "the backend's queue: {stats:?}"
    );

    // Twice the workers: the same load is 1.5 times the capacity, and the
    // queue grows less.
    backend.set_workers(2 * WORKERS);
    let doubled = offered_from(&place, &backend, 3.0 * CAPACITY_PER_S, 4.0, &opts);
    all_answered(&doubled);
    assert!(
        doubled.ok_p99_ns > 3 * unloaded.ok_p99_ns && doubled.ok_p99_ns < overloaded.ok_p99_ns,
        "with twice the workers p99 is {:.1} ms: not between {:.1} ms (unloaded, ×3) and \
         {:.1} ms (overloaded)",
        ms(doubled.ok_p99_ns),
        ms(3 * unloaded.ok_p99_ns),
        ms(overloaded.ok_p99_ns)
    );
    assert_eq!(
        backend.served(),
        unloaded.ok + overloaded.ok + doubled.ok,
        "the backend answered what the clients saw answered"
    );
}

#[test]
fn refusals_by_the_local_kernel_are_told_from_the_backends() {
    let cgroup = ScratchCgroup::new();
    let place = Place::cgroup(&cgroup);
    let backend = Backend::start(WORKERS, WORK);
    let opts = LoadOptions::default();

    // No listener: the backend's side refuses, with a RST after connect()
    // returned. An error, not a refusal.
    let closed = enforcer_tests::net::RefusingPort::loopback_v4();
    let addr = closed.addr;
    let line = place.run(|| offered(addr, 100.0, Duration::from_millis(200), &opts).to_line());
    let report = Report::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    eprintln!("closed port: {report}");
    assert_eq!(
        (report.sent, report.errors, report.refused),
        (20, 20, 0),
        "{report}"
    );

    // A static bulkhead of WORKERS: at three times the capacity the local
    // kernel refuses the rest, inside connect().
    let mut enforcer = fixtures::attached(&cgroup);
    let policy = Policy {
        max_connections: WORKERS as u32,
        ..fixtures::base_policy()
    };
    let ms = BackoffRow::exponential(1_000_000, 1_000_000);
    fixtures::apply_one(&mut enforcer, backend.addr(), policy, ms);
    let capped = offered_from(&place, &backend, 3.0 * CAPACITY_PER_S, 1.0, &opts);
    assert!(
        capped.refused > 0 && capped.ok > 0 && capped.errors == 0,
        "{capped}"
    );
    assert_eq!(capped.ok + capped.refused, capped.sent);
    assert!(
        capped.refused_connect_p99_ns < 5_000_000,
        "refused connects took {:.3} ms (p99)",
        capped.refused_connect_p99_ns as f64 / 1e6
    );
    // At most WORKERS requests are ever at the backend: none waits for long.
    assert!(
        capped.ok_p99_ns < 3 * WORK.as_nanos() as u64,
        "admitted requests queued under a cap of the workers: {capped}"
    );
}

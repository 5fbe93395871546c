//! The algorithms against a model of an overloaded backend: `workers`
//! connections served at once, each taking `service`; offered three times what
//! it serves, so the callers always want more than the limit. A connection's
//! latency is its service time times the queue it waits in,
//! `max(1, limit / workers)`: what a caller sees of a backend past its
//! capacity.

use std::time::Duration;

use super::*;

const SERVICE: Duration = Duration::from_millis(10);

fn interval(limit: u32, workers: u32) -> Sample {
    let queue = (f64::from(limit) / f64::from(workers)).max(1.0);
    Sample {
        latency: SERVICE.mul_f64(queue),
        completed: u64::from(limit),
        inflight: limit,
        refused_at_cap: true,
        failed: false,
    }
}

fn settings(algorithm: Algorithm) -> Settings {
    Settings {
        algorithm,
        min: 1,
        max: 200,
        initial: 4,
        ..Settings::default()
    }
}

/// Runs `intervals` intervals; the limits it went through.
fn run(limiter: &mut Limiter, workers: u32, intervals: usize) -> Vec<u32> {
    (0..intervals)
        .map(|_| {
            limiter
                .update(Some(interval(limiter.limit(), workers)))
                .limit
        })
        .collect()
}

#[test]
fn each_algorithm_settles_near_the_backends_capacity_and_follows_it() {
    for algorithm in [Algorithm::Gradient2, Algorithm::Vegas, Algorithm::Aimd] {
        let mut limiter = Limiter::new(settings(algorithm));
        let limits = run(&mut limiter, 8, 100);
        let settled = &limits[60..];
        assert!(
            settled.iter().all(|l| (4..=16).contains(l)),
            "{algorithm:?} with 8 workers: {limits:?}"
        );
        let limits = run(&mut limiter, 16, 100);
        let settled = &limits[60..];
        assert!(
            settled.iter().all(|l| (8..=32).contains(l)),
            "{algorithm:?} with 16 workers: {limits:?}"
        );
    }
}

#[test]
fn a_pause_in_traffic_holds_the_limit() {
    let mut limiter = Limiter::new(settings(Algorithm::Gradient2));
    run(&mut limiter, 8, 50);
    let before = limiter.limit();
    for _ in 0..100 {
        let change = limiter.update(None);
        assert_eq!(change.reason, Reason::NoSample);
        assert_eq!(change.limit, before);
    }
}

#[test]
fn callers_using_less_than_half_do_not_grow_it() {
    for algorithm in [Algorithm::Gradient2, Algorithm::Vegas, Algorithm::Aimd] {
        let mut limiter = Limiter::new(Settings {
            initial: 40,
            ..settings(algorithm)
        });
        let quiet = Sample {
            latency: SERVICE,
            completed: 5,
            inflight: 5,
            refused_at_cap: false,
            failed: false,
        };
        let change = limiter.update(Some(quiet));
        assert_eq!(
            (change.limit, change.reason),
            (40, Reason::AppLimited),
            "{algorithm:?}"
        );
    }
}

#[test]
fn failures_shrink_vegas_and_aimd() {
    for algorithm in [Algorithm::Vegas, Algorithm::Aimd] {
        let mut limiter = Limiter::new(Settings {
            initial: 40,
            ..settings(algorithm)
        });
        let failing = Sample {
            failed: true,
            ..interval(40, 100)
        };
        let change = limiter.update(Some(failing));
        assert!(change.limit < 40, "{algorithm:?}: {change:?}");
        assert_eq!(change.reason, Reason::Shrank);
    }
}

#[test]
fn the_bounds_hold_and_a_held_bound_is_not_growth() {
    let mut limiter = Limiter::new(Settings {
        min: 10,
        max: 12,
        initial: 50,
        ..settings(Algorithm::Aimd)
    });
    assert_eq!(limiter.limit(), 12);
    let fast = interval(1, 100);
    let change = limiter.update(Some(fast));
    assert_eq!((change.limit, change.reason), (12, Reason::Steady));
    for _ in 0..100 {
        let slow = Sample {
            failed: true,
            ..interval(limiter.limit(), 1)
        };
        assert!(limiter.update(Some(slow)).limit >= 10);
    }
    assert_eq!(limiter.limit(), 10);
}

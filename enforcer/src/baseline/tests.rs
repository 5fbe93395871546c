use std::time::Duration;

use enforcer_common::{
    baseline::{Baseline, WARMUP_WINDOWS, learn},
    dest::{DestKey, DestState, Latency},
    policy::Policy,
};

use super::*;
use crate::clock::Jitter;

const STEP: Duration = Duration::from_secs(10);

fn settings() -> Settings {
    Settings {
        window: Duration::from_secs(600),
        sensitivity: 3.0,
        rate_min: 0.05,
        rate_max: 0.5,
        slow_factor: 3.0,
    }
}

/// The kernel's policy for [`settings`], as `PolicySpec::kernel` writes it.
fn policy() -> Policy {
    Policy {
        min_attempts: 20,
        failure_rate_permille: 500,
        learn: learn::RATE | learn::SLOW,
        sensitivity_milli: 3000,
        rate_min_permille: 50,
        slow_factor_milli: 3000,
        ..Policy::default()
    }
}

/// A window of `n` completed connects of which `failed` failed, every
/// handshake `us` long.
fn window(n: u64, failed: u64, us: u64) -> Interval {
    let mut w = Interval {
        successes: n - failed,
        failures: failed,
        ..Interval::default()
    };
    w.latency[Latency::bucket_of(us * 1000)] = n - failed;
    w
}

/// Binomial draw: of `n` connects each failing with `p`.
fn draw(rng: &mut Jitter, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.unit() < p).count() as u64
}

/// Learns `windows` windows of `n` connects failing with `p`, as the kernel
/// would hold each result.
fn learned(
    rng: &mut Jitter,
    e: &mut Estimate,
    kernel: &mut Baseline,
    windows: usize,
    n: u64,
    p: f64,
) {
    for _ in 0..windows {
        let w = window(n, draw(rng, n, p), 300);
        if e.learn(&w, STEP, &settings(), &policy(), kernel) {
            *kernel = e.baseline(n);
        }
    }
}

#[test]
fn a_destination_failing_3_percent_trips_above_its_noise_and_below_a_jump_to_20() {
    let mut rng = Jitter::with_seed(3);
    let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
    learned(&mut rng, &mut e, &mut kernel, 200, 200, 0.03);
    assert!((e.share - 0.03).abs() < 0.01, "{e:?}");
    let trip = policy().trip_permille(&kernel);
    assert!((60..=150).contains(&trip), "trip at {trip} ‰: {kernel:?}");
    // Its usual windows stay below the trip rate: at most a few in a
    // thousand reach it (the spread is learned from the same draws).
    let false_trips = (0..1000)
        .filter(|_| draw(&mut rng, 200, 0.03) * 1000 >= u64::from(trip) * 200)
        .count();
    assert!(
        false_trips <= 10,
        "{false_trips} of 1000 usual windows trip"
    );
    // A window at 20 % reaches it: a jump trips in one window.
    assert!(trip <= 200, "20 % trips at {trip} ‰");
}

#[test]
fn a_clean_destination_trips_at_the_floor_a_smaller_jump_than_a_noisy_one() {
    let mut rng = Jitter::with_seed(5);
    let (mut clean, mut clean_kernel) = (Estimate::default(), Baseline::default());
    learned(&mut rng, &mut clean, &mut clean_kernel, 50, 200, 0.0);
    let (mut noisy, mut noisy_kernel) = (Estimate::default(), Baseline::default());
    learned(&mut rng, &mut noisy, &mut noisy_kernel, 50, 200, 0.03);
    let (clean_trip, noisy_trip) = (
        policy().trip_permille(&clean_kernel),
        policy().trip_permille(&noisy_kernel),
    );
    assert_eq!(clean_trip, 50, "the floor, failure_rate_min");
    assert!(noisy_trip > clean_trip, "{noisy_trip} > {clean_trip}");
}

#[test]
fn a_young_baseline_is_cold_and_trips_at_the_highest_rate() {
    let mut rng = Jitter::with_seed(1);
    let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
    learned(
        &mut rng,
        &mut e,
        &mut kernel,
        WARMUP_WINDOWS as usize - 1,
        200,
        0.03,
    );
    assert!(!kernel.warm());
    assert_eq!(policy().trip_permille(&kernel), 500);
    assert_eq!(policy().slow_ns(&kernel), 0);
    learned(&mut rng, &mut e, &mut kernel, 1, 200, 0.03);
    assert!(kernel.warm() && policy().trip_permille(&kernel) < 500);
}

#[test]
fn incidents_teach_nothing() {
    let mut rng = Jitter::with_seed(9);
    let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
    learned(&mut rng, &mut e, &mut kernel, 100, 200, 0.03);
    let before = e;
    // A window at 30 % is above the trip rate: not the normal.
    assert!(!e.learn(&window(200, 60, 300), STEP, &settings(), &policy(), &kernel));
    // Nor one with handshakes beyond the slow bound (3 × 300 µs, at least
    // 1 ms): 5 ms.
    assert!(!e.learn(&window(200, 6, 5000), STEP, &settings(), &policy(), &kernel));
    // Nor a window too small to be a share, nor one ending open.
    assert!(!e.learn(&window(19, 0, 300), STEP, &settings(), &policy(), &kernel));
    let open = Interval {
        open: true,
        ..window(200, 6, 300)
    };
    assert!(!e.learn(&open, STEP, &settings(), &policy(), &kernel));
    assert_eq!(e, before);
}

#[test]
fn a_slowly_drifting_normal_is_followed() {
    let mut rng = Jitter::with_seed(11);
    let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
    for step in 0..400 {
        // 1 % up to 9 % over 400 windows: never a jump.
        let p = 0.01 + 0.08 * f64::from(step) / 400.0;
        learned(&mut rng, &mut e, &mut kernel, 1, 400, p);
    }
    assert!(e.share > 0.06, "{e:?}");
}

#[test]
fn the_p99_baseline_follows_the_handshakes() {
    let mut rng = Jitter::with_seed(2);
    let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
    learned(&mut rng, &mut e, &mut kernel, 20, 200, 0.0);
    // 300 µs handshakes fall in the bucket [256, 512) µs.
    assert!((256..512).contains(&kernel.p99_us), "{kernel:?}");
    let slow = policy().slow_ns(&kernel);
    assert!((1_000_000..1_600_000).contains(&slow), "{slow} ns");
}

#[test]
fn the_daemon_goes_on_from_the_kernels_baseline_and_starts_over_for_a_new_entry() {
    let l = Learner {
        policy_id: 1,
        epoch: 7,
        settings: settings(),
        policy: policy(),
        step: STEP,
    };
    let key = DestKey::from("127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap());
    let kernel = Baseline {
        share_ppm: 30_000,
        spread_ppm: 10_000,
        p99_us: 400,
        windows: 40,
    };
    let mut state = DestState {
        policy_id: 1,
        policy_epoch: 7,
        generation: 1,
        baseline: kernel,
        ..DestState::default()
    };
    let mut learning = Learning::default();
    // The first read only remembers.
    assert!(learning.pass(&[l], [(&key, &state)]).is_empty());
    state.counters.successes += 194;
    state.counters.failures_refused += 6;
    state.latency.buckets[8] += 194;
    let learned = learning.pass(&[l], [(&key, &state)]);
    let [one] = learned.as_slice() else {
        panic!("{learned:?}")
    };
    assert!(
        one.baseline != state.baseline && one.baseline.windows == 41,
        "{one:?}"
    );
    assert!(one.baseline.share_ppm.abs_diff(30_000) < 1_000, "{one:?}");
    // A new entry of the key (forgotten and tracked again): nothing to
    // compare with.
    state.generation = 2;
    state.counters.successes += 200;
    assert!(learning.pass(&[l], [(&key, &state)]).is_empty());
    // A window with a trip in it teaches nothing.
    state.counters.successes += 200;
    state.counters.trips += 1;
    assert!(learning.pass(&[l], [(&key, &state)]).is_empty());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_trip_rate_stays_within_its_bounds(
            shares in proptest::collection::vec((0u64..200, 20u64..400), 1..60),
        ) {
            let (mut e, mut kernel) = (Estimate::default(), Baseline::default());
            for (failed, n) in shares {
                let w = window(n, failed.min(n), 300);
                if e.learn(&w, STEP, &settings(), &policy(), &kernel) {
                    kernel = e.baseline(n);
                }
                let trip = policy().trip_permille(&kernel);
                prop_assert!((50..=500).contains(&trip), "{trip}");
                prop_assert!(e.share >= 0.0 && e.share <= 1.0 && e.variance >= 0.0);
            }
        }
    }
}

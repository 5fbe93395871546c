use enforcer_common::dest::Latency;
use proptest::prelude::*;

use super::*;

/// A destination's interval: `ok` successes, `failed` failures, every
/// handshake taking `us` µs.
fn interval(ok: u64, failed: u64, us: u64) -> Interval {
    let mut i = Interval {
        successes: ok,
        failures: failed,
        ..Interval::default()
    };
    i.latency[Latency::bucket_of(us * 1000)] = ok;
    i
}

fn peers(figures: &[(u64, u64, u64)]) -> Vec<(usize, Interval)> {
    figures
        .iter()
        .enumerate()
        .map(|(k, (ok, failed, us))| (k, interval(*ok, *failed, *us)))
        .collect()
}

fn keys(e: &[Ejection<usize>]) -> Vec<usize> {
    e.iter().map(|e| e.key).collect()
}

#[test]
fn a_destination_failing_half_its_connects_among_nine_healthy_ones_is_ejected() {
    let mut figures = vec![(200, 0, 100); 10];
    figures[3] = (100, 100, 100);
    let found = detect(
        &Settings::default(),
        Measure::HandshakeP90,
        &peers(&figures),
        0,
        10,
        100,
    );
    assert_eq!(keys(&found), [3]);
    let Reason::SuccessRate {
        rate, threshold, ..
    } = found[0].reason
    else {
        panic!("{:?}", found[0].reason)
    };
    assert_eq!(rate, 0.5);
    assert!(threshold > 0.5 && threshold < 1.0, "{threshold}");
}

#[test]
fn chance_failures_among_healthy_peers_eject_nobody() {
    // Ten backends failing 0.5 % at random: one with 3 failures of 200 is
    // below mean − 1.9 σ of the others (Envoy would eject it) but a
    // backend failing 0.5 % does that in one interval of twelve.
    let mut figures = vec![(199, 1, 100); 10];
    figures[4] = (197, 3, 100);
    figures[7] = (200, 0, 100);
    let s = Settings::default();
    assert!(detect(&s, Measure::HandshakeP90, &peers(&figures), 0, 10, 100).is_empty());
    // Twelve of 200 is beyond chance for a 0.5 % backend.
    figures[4] = (188, 12, 100);
    let found = detect(&s, Measure::HandshakeP90, &peers(&figures), 0, 10, 100);
    assert_eq!(keys(&found), [4]);
}

#[test]
fn the_binomial_tail_says_what_chance_allows() {
    // λ = 1: P(X ≥ 7) ≈ 8e-5, P(X ≥ 9) ≈ 1e-6.
    assert!(!beyond_chance(7, 200, 0.005));
    assert!(beyond_chance(9, 200, 0.005));
    assert!(!beyond_chance(0, 200, 0.0));
    assert!(beyond_chance(1, 200, 0.0), "peers that never fail");
    assert!(!beyond_chance(200, 200, 1.0));
    // Large counts stay finite and right.
    assert!(!beyond_chance(5_100, 1_000_000, 0.005));
    assert!(beyond_chance(5_400, 1_000_000, 0.005));
    assert!(beyond_chance(500_000, 1_000_000, 0.005));
}

#[test]
fn too_few_hosts_or_requests_eject_nobody() {
    let s = Settings::default();
    // Four hosts: below success_rate_min_hosts.
    let few = peers(&[(200, 0, 100), (200, 0, 100), (200, 0, 100), (0, 200, 100)]);
    assert!(detect(&s, Measure::HandshakeP90, &few, 0, 4, 100).is_empty());
    // Ten hosts, but the bad one completed fewer than 100.
    let mut figures = vec![(200, 0, 100); 10];
    figures[0] = (10, 80, 100);
    assert!(detect(&s, Measure::HandshakeP90, &peers(&figures), 0, 10, 100).is_empty());
}

#[test]
fn failure_percentage_and_latency_when_set() {
    let s = Settings {
        failure_percentage: Some(85),
        latency_factor: Some(5.0),
        ..Settings::default()
    };
    let mut figures = vec![(60, 0, 100); 6];
    // 90 % failures over 60: below the success-rate minimum of 100
    // requests, above the failure percentage's 50.
    figures[1] = (6, 54, 100);
    // 20× slower handshakes.
    figures[4] = (60, 0, 2000);
    let found = detect(&s, Measure::HandshakeP90, &peers(&figures), 0, 6, 100);
    let mut by_reason: Vec<(usize, &str)> =
        found.iter().map(|e| (e.key, e.reason.name())).collect();
    by_reason.sort();
    assert_eq!(by_reason, [(1, "failure_percentage"), (4, "latency")]);
}

#[test]
fn where_the_response_latency_is_measured_it_is_the_latency_compared() {
    let s = Settings {
        latency_factor: Some(5.0),
        ..Settings::default()
    };
    // Same handshakes everywhere; one destination answers 20× slower.
    let mut all = peers(&[(60, 0, 100); 6]);
    for (k, (_, i)) in all.iter_mut().enumerate() {
        i.signal_count = 60;
        i.signal_ns = 60 * if k == 2 { 40_000_000 } else { 2_000_000 };
    }
    assert!(detect(&s, Measure::HandshakeP90, &all, 0, 6, 100).is_empty());
    let found = detect(&s, Measure::ResponseMean, &all, 0, 6, 100);
    assert_eq!(keys(&found), [2]);
    let Reason::Latency {
        measure,
        latency,
        median,
        ..
    } = found[0].reason
    else {
        panic!("{:?}", found[0].reason)
    };
    assert_eq!(measure, Measure::ResponseMean);
    assert_eq!((latency.as_millis(), median.as_millis()), (40, 2));
    // Too few answers measured: not judged.
    for (_, i) in &mut all {
        i.signal_count = 10;
    }
    assert!(detect(&s, Measure::ResponseMean, &all, 0, 6, 100).is_empty());
}

#[test]
fn the_cap_counts_what_is_open_and_keeps_the_worst() {
    let s = Settings::default();
    // Twenty destinations: success rates of 10 % and 40 % are below the
    // threshold (mean − 1.9 σ ≈ 47 %), 75 % is not.
    let mut figures = vec![(200, 0, 100); 20];
    figures[2] = (150, 50, 100);
    figures[5] = (20, 180, 100);
    figures[7] = (80, 120, 100);
    let all = peers(&figures);
    // Without a cap, both outliers, the worst first.
    assert_eq!(
        keys(&detect(&s, Measure::HandshakeP90, &all, 0, 20, 100)),
        [5, 7]
    );
    // 10 % of 20: two at once.
    assert_eq!(
        keys(&detect(&s, Measure::HandshakeP90, &all, 0, 20, 10)),
        [5, 7]
    );
    // One open already: room for one, the worst.
    assert_eq!(
        keys(&detect(&s, Measure::HandshakeP90, &all, 1, 20, 10)),
        [5]
    );
    // At least one may always be ejected.
    assert_eq!(
        keys(&detect(&s, Measure::HandshakeP90, &all, 0, 20, 1)),
        [5]
    );
    assert!(detect(&s, Measure::HandshakeP90, &all, 1, 20, 1).is_empty());
    // An open destination is neither judged again nor a peer.
    let mut open = all.clone();
    open[5].1.open = true;
    assert!(!keys(&detect(&s, Measure::HandshakeP90, &open, 1, 20, 100)).contains(&5));
}

#[test]
fn ejections_grow_with_their_count_up_to_the_maximum() {
    let s = Settings::default();
    let secs: Vec<u64> = [1, 2, 3, 10, 11]
        .iter()
        .map(|k| ejection_time(&s, *k).as_secs())
        .collect();
    assert_eq!(secs, [30, 60, 90, 300, 300]);
}

#[test]
fn the_p90_is_read_from_the_histogram() {
    let mut i = Interval::default();
    // 9 fast (bucket of 100 µs: [64, 128)), 1 slow (bucket of 5 ms).
    i.latency[Latency::bucket_of(100_000)] = 9;
    i.latency[Latency::bucket_of(5_000_000)] = 1;
    let p90 = i.p90().expect("a p90");
    assert!(p90 <= Duration::from_micros(128), "{p90:?}");
    assert_eq!(Interval::default().p90(), None);
}

proptest! {
    /// Healthy peers with ordinary noise (0-2 % failures, latency within 2×)
    /// never eject anyone, whatever the noise.
    #[test]
    fn constant_healthy_input_ejects_nobody(
        hosts in proptest::collection::vec((100u64..400, 0u64..3, 100u64..200), 5..40),
    ) {
        let figures: Vec<(u64, u64, u64)> = hosts
            .iter()
            .map(|(n, fail_pct, us)| (n - n * fail_pct / 100, n * fail_pct / 100, *us))
            .collect();
        let s = Settings {
            failure_percentage: Some(85),
            latency_factor: Some(3.0),
            ..Settings::default()
        };
        let all = peers(&figures);
        // With this little spread, the stdev threshold can still catch the
        // lowest: Envoy's detector has the same property, and the cap bounds
        // it. Failure percentage and latency never fire.
        for e in detect(&s, Measure::HandshakeP90, &all, 0, all.len() as u64, 100) {
            prop_assert_eq!(e.reason.name(), "success_rate");
            let Reason::SuccessRate { rate, .. } = e.reason else { unreachable!() };
            prop_assert!(rate >= 0.97);
        }
    }

    /// Never more than the cap leaves, whatever the input.
    #[test]
    fn ejections_never_exceed_the_cap(
        hosts in proptest::collection::vec((0u64..300, 0u64..300, 1u64..10_000), 0..40),
        open in 0u64..10,
        percent in 1u32..=100,
    ) {
        let all = peers(&hosts);
        let tracked = all.len() as u64 + open;
        let cap = (tracked * u64::from(percent) / 100).max(1);
        let s = Settings {
            failure_percentage: Some(50),
            latency_factor: Some(2.0),
            ..Settings::default()
        };
        let found = detect(&s, Measure::HandshakeP90, &all, open, tracked, percent);
        prop_assert!(found.len() as u64 <= cap.saturating_sub(open));
        // And below the minimum hosts, nothing.
        if all.len() < 5 {
            prop_assert!(found.is_empty());
        }
    }
}

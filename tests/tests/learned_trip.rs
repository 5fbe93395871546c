//! The kernel's side of learned thresholds (`SET_BASELINE` through the
//! control program), without the daemon: the breaker trips on the
//! destination's baseline as soon as it holds one, and only a baseline
//! learned under the destination's own policy lands. Runs on Linux 6.1
//! too (the end-to-end test, `baselines`, is a load test).

use enforcer::bpf::Applied;
use enforcer_common::{
    baseline::{Baseline, WARMUP_WINDOWS, learn},
    breaker::State,
    control::Command,
    policy::Policy,
};
use enforcer_tests::{cgroup::ScratchCgroup, exec::Place, fixtures, net::AcceptingServer};

#[test]
fn a_baseline_set_in_the_kernel_moves_the_trip_rate() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    // Trips on the window's share alone: 50 % until a baseline is learned,
    // then the baseline's share + 3 spreads, at least 5 %.
    let policy = Policy {
        failure_rate_permille: 500,
        min_attempts: 10,
        learn: learn::RATE,
        sensitivity_milli: 3000,
        rate_min_permille: 50,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(&mut enforcer, addr, policy, fixtures::minute_open());
    let place = Place::cgroup(&cgroup);
    assert_eq!(place.connects(addr, 8), [Ok(()); 8]);
    drop(server);
    let refused = place.connects(addr, 2);
    assert!(refused.iter().all(Result::is_err), "{refused:?}");
    let key = enforcer_tests::key(addr);
    let state =
        |e: &enforcer::bpf::Enforcer| e.maps().dests.get(&key).expect("DESTS").expect("tracked");
    assert_eq!(
        state(&enforcer).breaker.state,
        State::Closed as u32,
        "2 of 10 is below the cold 50 %"
    );
    // 1 % ± 1 %, warm: trips at 5 %.
    let learned = Baseline {
        share_ppm: 10_000,
        spread_ppm: 10_000,
        p99_us: 200,
        windows: WARMUP_WINDOWS,
    };
    let set = |policy_id| {
        enforcer
            .control()
            .run(&Command::set_baseline(key, policy_id, &learned))
            .expect("SET_BASELINE")
    };
    assert_eq!(
        set(fixtures::POLICY_ID + 1),
        Applied::NotApplicable,
        "another policy's"
    );
    assert_eq!(state(&enforcer).baseline, Baseline::default());
    assert_eq!(set(fixtures::POLICY_ID), Applied::Applied);
    assert_eq!(state(&enforcer).baseline, learned);
    // The next refusal makes 3 of 11: far above its normal.
    let next = place.connects(addr, 1);
    assert!(next[0].is_err(), "{next:?}");
    let s = state(&enforcer);
    assert_eq!(s.breaker.state, State::Open as u32, "{:?}", s.counters);
    assert_eq!(s.counters.trips, 1);
}

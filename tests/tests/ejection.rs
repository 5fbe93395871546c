//! The kernel's side of an outlier ejection (`EJECT` through the control
//! program), without the daemon.

use std::{
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    net::{self, AcceptingServer},
};

/// The kernel's side of an ejection (`EJECT` through the control program),
/// without the daemon: only a CLOSED destination of the policy it names is
/// ejected; while ejected, every connect is refused, an unprivileged
/// caller's too; after its time the half-open probes bring it back.
#[test]
fn an_ejected_destination_is_refused_for_its_time_then_probed_back() {
    use enforcer::bpf::Applied;
    use enforcer_common::{breaker::State, control::Command, policy::BackoffRow};
    use enforcer_tests::fixtures;

    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let policy = enforcer_common::policy::Policy {
        close_after: 1,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(&mut enforcer, addr, policy, BackoffRow::exponential(1, 1));
    let place = Place::cgroup(&cgroup);
    assert_eq!(place.connects(addr, 1), [Ok(())], "tracked, closed");
    let key = enforcer_tests::key(addr);
    let eject = |policy_id, ms: u64| {
        enforcer
            .control()
            .run(&Command::eject(key, policy_id, ms * 1_000_000))
            .expect("EJECT")
    };
    // Judged under another policy: never applied.
    assert_eq!(
        eject(fixtures::POLICY_ID + 1, 60_000),
        Applied::NotApplicable
    );
    assert_eq!(eject(fixtures::POLICY_ID, 1_500), Applied::Applied);
    // Open already: nothing more.
    assert_eq!(eject(fixtures::POLICY_ID, 1_500), Applied::NotApplicable);
    let out = place.run_as_nobody(move || format!("{:?}", net::connect(addr).map(drop)));
    assert_eq!(out, format!("{:?}", Err::<(), i32>(libc::ECONNREFUSED)));
    let state = |e: &enforcer::bpf::Enforcer| {
        e.maps()
            .dests
            .get(&key)
            .expect("DESTS")
            .expect("tracked")
            .breaker
            .state
    };
    assert_eq!(state(&enforcer), State::Open as u32);
    // After its time, one probe success (close_after 1) closes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&enforcer) != State::Closed as u32 {
        assert!(Instant::now() < deadline, "not back after its ejection");
        thread::sleep(Duration::from_millis(200));
        let _ = place.connects(addr, 1);
    }
}

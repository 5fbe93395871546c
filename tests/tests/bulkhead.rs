//! Bulkheads: caps on concurrent connections per destination, exact under
//! concurrency, and slots released exactly once whatever way a socket ends.

use std::{
    net::SocketAddr,
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    dest::DestState,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures::{self, ECONNREFUSED},
    net::{self, AcceptingServer, HoldingServer},
    netns::NetNs,
};

const MS: u64 = 1_000_000;

/// Every tracked destination, once no slot is held any more (sockets finish
/// closing asynchronously: FIN handshakes, TIME_WAIT); fails after a deadline.
fn settled(enforcer: &Enforcer) -> Vec<DestState> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dests: Vec<DestState> = enforcer
            .maps()
            .dests
            .all()
            .expect("DESTS")
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let held: Vec<(u32, u32)> = dests
            .iter()
            .map(|s| (s.breaker.active, s.breaker.pending))
            .filter(|h| *h != (0, 0))
            .collect();
        if held.is_empty() {
            return dests;
        }
        assert!(
            Instant::now() < deadline,
            "slots still held after 10 s: {held:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sixty_four_clients_against_a_cap_of_ten() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = HoldingServer::start();
    let addr = server.addr;
    let policy = Policy {
        max_connections: 10,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(&mut enforcer, addr, policy, BackoffRow::exponential(MS, MS));

    let counts = Place::cgroup(&cgroup).run(|| {
        let barrier = Arc::new(Barrier::new(64));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    let result = net::connect(addr);
                    // Hold the connection while the others try.
                    thread::sleep(Duration::from_millis(300));
                    result.map(drop)
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        let rejected = results
            .iter()
            .filter(|r| **r == Err(ECONNREFUSED as i32))
            .count();
        format!("{admitted} {rejected}")
    });
    assert_eq!(counts, "10 54");
    assert!(server.max_concurrent() <= 10);
    assert_eq!(server.max_concurrent(), 10);
    let state = settled(&enforcer).pop().expect("one destination");
    assert_eq!(state.counters.rejected_bulkhead, 54);
    assert_eq!(state.counters.successes, 10);
    assert_eq!(
        state.counters.failures(),
        0,
        "bulkhead rejections are not failures"
    );
}

#[test]
fn ten_thousand_connects_through_every_close_path_leave_no_slot_behind() {
    const ROUNDS: usize = 2_000; // × 4 paths in one process
    const SYNC_FAILURES: usize = 1_000;
    const KILLED: usize = 10; // processes × 100 sockets
    let cgroup = ScratchCgroup::new();
    let ns = NetNs::new();
    let blackhole = SocketAddr::new(ns.ns_v4.into(), 9);
    ns.tcp_port(9, "drop");
    let server = AcceptingServer::bind("127.0.0.1:0");
    let open = server.addr;
    let mut enforcer = fixtures::attached(&cgroup);
    // Caps engaged (some connects are rejected), the breaker never trips.
    let policy = Policy {
        max_connections: 40,
        max_pending: 30,
        ..fixtures::base_policy()
    };
    fixtures::apply(
        &mut enforcer,
        &["0.0.0.0/0:*"],
        policy,
        BackoffRow::exponential(MS, MS),
    );
    let place = Place::cgroup(&cgroup);

    place.run(|| {
        for i in 0..ROUNDS * 4 {
            match i % 4 {
                // Normal close (FIN).
                0 => drop(net::connect(open)),
                // Reset.
                1 => {
                    if let Ok(stream) = net::connect(open) {
                        net::close_with_rst(stream.into());
                    }
                }
                // Closed while in SYN_SENT.
                2 => drop(net::connect_nonblocking(blackhole)),
                // Non-blocking connect abandoned at once.
                _ => drop(net::connect_nonblocking(open)),
            }
        }
        String::new()
    });
    // Synchronous failures: no route inside the namespace.
    place.clone_with_netns(&ns).run(|| {
        let nowhere: SocketAddr = "198.51.100.1:80".parse().unwrap();
        for _ in 0..SYNC_FAILURES {
            let (_, result) = net::connect_nonblocking(nowhere);
            assert_eq!(result, Err(libc::ENETUNREACH));
        }
        String::new()
    });
    // Processes killed with sockets established and in SYN_SENT.
    for _ in 0..KILLED {
        place.run_then_kill(|| {
            (0..100)
                .map(|i| {
                    if i % 2 == 0 {
                        net::connect_nonblocking(open).0
                    } else {
                        net::connect_nonblocking(blackhole).0
                    }
                })
                .collect::<Vec<_>>()
        });
    }

    let dests = settled(&enforcer);
    let attempts: u64 = dests.iter().map(|d| d.counters.attempts).sum();
    let rejected: u64 = dests.iter().map(|d| d.counters.rejected_bulkhead).sum();
    assert!(
        attempts + rejected >= 10_000,
        "only {attempts} + {rejected} connects"
    );
    for d in &dests {
        let c = &d.counters;
        // Every admitted connect ended exactly one way.
        assert_eq!(
            c.attempts,
            c.successes + c.failures() + c.abandoned + c.local_errors,
            "{c:?}"
        );
    }
    for d in &dests {
        eprintln!("churn: {:?}", d.counters);
    }
    // A synchronous routing failure is the local stack's, never the
    // destination's.
    let local: u64 = dests.iter().map(|d| d.counters.local_errors).sum();
    assert_eq!(local, SYNC_FAILURES as u64);
    let unreachable: u64 = dests.iter().map(|d| d.counters.failures_unreachable).sum();
    assert_eq!(unreachable, 0);
}

/// `n` unprivileged processes (`nobody`, no capabilities) in `place`, each
/// holding one connection to `addr` until killed (one refused holds none).
fn holders(place: &Place, addr: SocketAddr, n: usize) -> Vec<std::process::Child> {
    (0..n)
        .map(|_| place.spawn_nobody_holding(addr, 1))
        .collect()
}

/// Waits (bounded) until the destination has refused `refused` connects at
/// its cap and holds `active` slots.
fn settle_at(enforcer: &Enforcer, addr: SocketAddr, refused: u64, active: u32) {
    let key = enforcer_tests::key(addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rejected, held) = enforcer
            .maps()
            .dests
            .get(&key)
            .expect("DESTS")
            .map_or((0, 0), |s| (s.counters.rejected_bulkhead, s.breaker.active));
        if (rejected, held) == (refused, active) {
            return;
        }
        assert!(
            rejected <= refused && held <= active && Instant::now() < deadline,
            "{rejected} connects refused (want {refused}), {held} slots held (want {active})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_learned_limit_is_the_cap_exactly_against_unprivileged_holders() {
    use enforcer::bpf::Applied;
    use enforcer_common::control::Command;
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = HoldingServer::start();
    let addr = server.addr;
    let backoff = BackoffRow::exponential(MS, MS);
    let adaptive = Policy {
        max_connections: 8,
        adaptive: 1,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(&mut enforcer, addr, adaptive, backoff);
    let place = Place::cgroup(&cgroup);
    let mut held = holders(&place, addr, 1);
    settle_at(&enforcer, addr, 0, 1);
    let key = enforcer_tests::key(addr);
    let set = |enforcer: &Enforcer, policy_id, limit| {
        enforcer
            .control()
            .run(&Command::set_limit(key, policy_id, limit))
            .expect("SET_LIMIT")
    };
    // Learned for another policy: never applied.
    assert_eq!(
        set(&enforcer, fixtures::POLICY_ID + 1, 3),
        Applied::NotApplicable
    );
    assert_eq!(set(&enforcer, fixtures::POLICY_ID, 3), Applied::Applied);
    // One held, a limit of 3: of five more holders exactly two get a slot.
    held.extend(holders(&place, addr, 5));
    settle_at(&enforcer, addr, 3, 3);
    // The limit grows: of three more, two.
    assert_eq!(set(&enforcer, fixtures::POLICY_ID, 5), Applied::Applied);
    held.extend(holders(&place, addr, 3));
    settle_at(&enforcer, addr, 4, 5);
    // The same policy made static: its max_connections caps, the learned
    // limit is not read (8 - 5 = 3 of four more).
    fixtures::apply_one(
        &mut enforcer,
        addr,
        Policy {
            adaptive: 0,
            ..adaptive
        },
        backoff,
    );
    held.extend(holders(&place, addr, 4));
    settle_at(&enforcer, addr, 5, 8);
    assert!(
        server.max_concurrent() <= 8,
        "the server saw more than the cap"
    );
    for mut child in held {
        let _ = child.kill();
        let _ = child.wait();
    }
    settled(&enforcer);
}

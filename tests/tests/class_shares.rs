//! Priority classes sharing a destination's cap, in the kernel: the caller's
//! class is the nearest listed ancestor of its cgroup; a class's share is
//! reserved for it, the rest of the cap is lent to whoever comes first, the
//! cap holds exactly across classes, and a degrading destination sheds the
//! lowest class first. Every client drops to `nobody` before it connects.

use std::{
    net::SocketAddr,
    process::Child,
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    class::{ClassTable, Priority},
    dest::DestState,
    event::Kind,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{HoldingServer, RefusingPort},
};

const EHOSTUNREACH: i32 = 113;

/// Critical (half the cap reserved) and sheddable (no share) classes, each
/// listed by a child cgroup of the protected one.
fn classes(enforcer: &mut Enforcer, critical: &ScratchCgroup, sheddable: &ScratchCgroup) {
    let table = ClassTable {
        share_permille: [500, 0, 0, 0],
        enabled: 1,
        _pad: 0,
    };
    let listed = [
        (critical.id(), Priority::Critical),
        (sheddable.id(), Priority::Sheddable),
    ];
    enforcer
        .maps_mut()
        .classes
        .replace(table, &listed)
        .expect("writing the classes");
}

fn state(enforcer: &Enforcer, addr: SocketAddr) -> DestState {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(addr))
        .expect("DESTS")
        .unwrap_or_default()
}

/// Waits until `done` holds of the destination's state, or fails saying what
/// it was.
fn wait_for(enforcer: &Enforcer, addr: SocketAddr, what: &str, done: impl Fn(&DestState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = state(enforcer, addr);
        if done(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: classes {:?}, active {}",
            s.classes,
            s.breaker.active
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `n` unprivileged processes in `place`, each holding one connection if it
/// gets one (a refused one exits).
fn holders(place: &Place, addr: SocketAddr, n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| place.spawn_nobody_holding(addr, 1))
        .collect()
}

fn end(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn a_reserved_share_is_there_at_once_during_a_flood_and_the_cap_holds_across_classes() {
    let parent = ScratchCgroup::new();
    let (critical, sheddable) = (parent.child(), parent.child());
    let mut enforcer = fixtures::attached(&parent);
    let server = HoldingServer::start();
    let addr = server.addr;
    let capped = Policy {
        max_connections: 10,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(&mut enforcer, addr, capped, fixtures::minute_open());
    classes(&mut enforcer, &critical, &sheddable);

    // A sheddable flood of 20 holders: exactly the unreserved half.
    let flood = holders(&Place::cgroup(&sheddable), addr, 20);
    let shed = Priority::Sheddable as usize;
    wait_for(&enforcer, addr, "the flood settles", |s| {
        s.classes[shed].active + s.classes[shed].shed as u32 == 20
    });
    let s = state(&enforcer, addr);
    assert_eq!((s.classes[shed].active, s.classes[shed].shed), (5, 15));

    // Five critical callers during the flood: all connect at once.
    let crit = Priority::Critical as usize;
    let out = Place::cgroup(&critical).run_as_nobody(move || {
        let results: Vec<bool> = (0..5)
            .map(|_| {
                std::net::TcpStream::connect(addr)
                    .map(std::mem::forget)
                    .is_ok()
            })
            .collect();
        format!("{results:?}")
    });
    assert_eq!(out, format!("{:?}", [true; 5]), "every critical connect");
    let s = state(&enforcer, addr);
    assert_eq!(s.classes[crit].admitted, 5);
    assert_eq!(
        s.classes[crit].shed, 0,
        "no critical caller is ever refused"
    );
    // Every refusal was a sheddable one, and the cap held throughout.
    assert_eq!(s.counters.rejected_bulkhead, s.classes[shed].shed);
    end(flood);
    wait_for(&enforcer, addr, "every slot given back", |s| {
        s.breaker.active == 0 && s.classes.iter().all(|c| c.active == 0)
    });
    assert!(
        server.max_concurrent() <= 10,
        "the destination held {} at once",
        server.max_concurrent()
    );

    // A sheddable caller cannot make itself critical: the class cgroups are
    // root's.
    let target = critical.procs_path();
    let out = Place::cgroup(&sheddable).run_as_nobody(move || {
        match std::fs::write(
            target.to_str().expect("utf-8"),
            std::process::id().to_string(),
        ) {
            Ok(()) => "moved".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        }
    });
    assert_eq!(out, "PermissionDenied");
}

#[test]
fn a_degrading_destination_sheds_the_lowest_class_first() {
    let parent = ScratchCgroup::new();
    let (critical, sheddable) = (parent.child(), parent.child());
    let mut enforcer = fixtures::attached(&parent);
    // A destination that answers, then refuses: its failure share rises.
    let port = RefusingPort::loopback_v4();
    let addr = port.addr;
    let listener = port.listen();
    let degrading = Policy {
        failure_rate_permille: 500,
        min_attempts: 8,
        // Rejections by the gate say so: the backend's own refusals are
        // ECONNREFUSED.
        errno: EHOSTUNREACH as u32,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(
        &mut enforcer,
        addr,
        degrading,
        BackoffRow::exponential(1, 1),
    );
    classes(&mut enforcer, &critical, &sheddable);
    let in_critical = Place::cgroup(&critical);
    let in_sheddable = Place::cgroup(&sheddable);
    // Processes in neither listed cgroup are `default`.
    let in_default = Place::cgroup(&parent);

    // Healthy: everyone connects.
    for place in [&in_critical, &in_sheddable, &in_default] {
        assert_eq!(place.connects(addr, 2), [Ok(()), Ok(())]);
    }
    drop(listener);
    // 2 refused of 8 completed: a quarter, half the trip point (50 %).
    assert_eq!(
        in_critical.connects(addr, 2),
        [Err(libc::ECONNREFUSED), Err(libc::ECONNREFUSED)]
    );
    // Sheddable and default callers are refused by the gate; critical ones
    // still reach the destination.
    assert_eq!(in_sheddable.connects(addr, 1), [Err(EHOSTUNREACH)]);
    assert_eq!(in_default.connects(addr, 1), [Err(EHOSTUNREACH)]);
    assert_eq!(in_critical.connects(addr, 1), [Err(libc::ECONNREFUSED)]);
    let s = state(&enforcer, addr);
    assert_eq!(
        s.shedding,
        (1 << Priority::Default as u32) | (1 << Priority::Sheddable as u32)
    );
    assert_eq!(s.classes[Priority::Critical as usize].shed, 0);
    // Each class's shedding was told once, the lowest first.
    let shed: Vec<u32> = enforcer
        .maps_mut()
        .events
        .drain()
        .into_iter()
        .filter(|e| e.kind == Kind::ClassShed as u32)
        .map(|e| e.class)
        .collect();
    assert_eq!(
        shed,
        [Priority::Sheddable as u32, Priority::Default as u32],
        "class_shed events"
    );
}

//! Policy modes, the global switch, per-destination overrides, address families,
//! a full destination map, and what the verifier thinks of the programs.

use std::{
    net::{SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use enforcer::{
    bpf::{Enforcer, LoadOptions, ProgramStats},
    clock::monotonic_ns,
};
use enforcer_common::{
    breaker::State,
    counters::GlobalCounter,
    dest::DestState,
    overrides::{Kind, Override},
    policy::{Mode, Policy},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures::{self, ECONNREFUSED},
    net::{AcceptingServer, RefusingPort},
    wait,
};

const MS: u64 = 1_000_000;
const REFUSED: Result<(), i32> = Err(ECONNREFUSED as i32);

fn dest(enforcer: &Enforcer, addr: SocketAddr) -> Option<DestState> {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(addr))
        .expect("reading DESTS")
}

/// Results of `n` connects from a child in the cgroup.
fn connects(place: &Place, addr: SocketAddr, n: usize) -> Vec<Result<(), i32>> {
    place.connects(addr, n)
}

/// A cgroup, the programs, and `policy` for `rules`, with one-minute open periods.
fn setup(rules: &[&str], policy: Policy) -> (ScratchCgroup, Enforcer) {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    fixtures::apply(&mut enforcer, rules, policy, fixtures::minute_open());
    (cgroup, enforcer)
}

fn tripping() -> Policy {
    Policy {
        failure_threshold: 2,
        ..fixtures::base_policy()
    }
}

#[test]
fn observe_mode_trips_but_never_rejects() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let (cgroup, enforcer) = setup(
        &[&addr.to_string()],
        Policy {
            mode: Mode::Observe as u32,
            ..tripping()
        },
    );
    let place = Place::cgroup(&cgroup);
    // All four reach the destination (and are refused by it), none by us.
    assert_eq!(connects(&place, addr, 4), vec![REFUSED; 4]);
    let state = dest(&enforcer, addr).expect("tracked");
    assert_eq!(state.breaker.state, State::Open as u32);
    assert_eq!(state.counters.would_reject_circuit, 2);
    assert_eq!(state.counters.rejected_circuit, 0);
    assert_eq!(state.counters.failures_refused, 4);
}

#[test]
fn off_mode_leaves_the_destination_alone() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let (cgroup, enforcer) = setup(
        &[&addr.to_string()],
        Policy {
            mode: Mode::Off as u32,
            ..tripping()
        },
    );
    assert_eq!(connects(&Place::cgroup(&cgroup), addr, 3), vec![REFUSED; 3]);
    assert!(dest(&enforcer, addr).is_none(), "not tracked");
    assert_eq!(
        enforcer
            .maps()
            .counters
            .get(GlobalCounter::PolicyOff)
            .unwrap(),
        3
    );
}

#[test]
fn the_global_switch_passes_everything_untouched() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let (cgroup, mut enforcer) = setup(&[&addr.to_string()], tripping());
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 3), vec![REFUSED; 3]);
    let before = dest(&enforcer, addr).expect("tracked");
    assert_eq!(before.breaker.state, State::Open as u32);
    assert_eq!(before.counters.rejected_circuit, 1);

    enforcer.maps_mut().config.set_paused(true).expect("pause");
    let server = AcceptingServer::serve(refusing.listen());
    assert_eq!(
        connects(&place, server.addr, 3),
        vec![Ok(()); 3],
        "paused: reaches the server"
    );
    assert_eq!(
        dest(&enforcer, addr).expect("tracked").counters,
        before.counters,
        "untouched"
    );

    enforcer
        .maps_mut()
        .config
        .set_paused(false)
        .expect("resume");
    assert_eq!(
        connects(&place, addr, 1),
        vec![REFUSED],
        "open again, by us"
    );
    assert_eq!(dest(&enforcer, addr).unwrap().counters.rejected_circuit, 2);
}

#[test]
fn forced_open_rejects_until_it_expires() {
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let (cgroup, mut enforcer) = setup(&[&addr.to_string()], fixtures::base_policy());
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 1), vec![Ok(())]);
    let until = monotonic_ns() + 500 * MS;
    fixtures::force_open(&mut enforcer, addr, until);
    assert_eq!(connects(&place, addr, 2), vec![REFUSED; 2]);
    TcpStream::connect(addr).expect("outside the cgroup it is reachable");
    thread::sleep(Duration::from_millis(600));
    assert_eq!(connects(&place, addr, 1), vec![Ok(())], "expired");
    let state = dest(&enforcer, addr).unwrap();
    assert_eq!(state.counters.rejected_circuit, 2);
    assert_eq!(
        state.breaker.state,
        State::Closed as u32,
        "an override does not change the state"
    );
}

#[test]
fn a_disabled_destination_is_never_rejected() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let (cgroup, mut enforcer) = setup(&[&addr.to_string()], tripping());
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 3), vec![REFUSED; 3]);
    assert_eq!(dest(&enforcer, addr).unwrap().counters.rejected_circuit, 1);
    let maps = enforcer.maps_mut();
    maps.overrides
        .set(
            &mut maps.config,
            addr,
            Override {
                kind: Kind::Disabled as u32,
                _pad: 0,
                until_ns: 0,
            },
        )
        .expect("override");
    let server = AcceptingServer::serve(refusing.listen());
    assert_eq!(
        connects(&place, server.addr, 2),
        vec![Ok(()); 2],
        "open, but disabled"
    );
    assert!(enforcer.maps_mut().overrides.remove(addr).expect("remove"));
    assert_eq!(connects(&place, addr, 1), vec![REFUSED], "enforced again");
    assert_eq!(
        enforcer
            .maps()
            .counters
            .get(GlobalCounter::Disabled)
            .unwrap(),
        2
    );
}

#[test]
fn ipv4_and_v4_mapped_ipv6_share_one_state() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", addr.port())
        .parse()
        .unwrap();
    let (cgroup, enforcer) = setup(&[&addr.to_string()], tripping());
    let place = Place::cgroup(&cgroup);
    // One failure over connect4, one over connect6 (an AF_INET6 socket): tripped.
    assert_eq!(connects(&place, addr, 1), vec![REFUSED]);
    assert_eq!(connects(&place, mapped, 1), vec![REFUSED]);
    let state = dest(&enforcer, addr).expect("tracked");
    assert_eq!(state.breaker.state, State::Open as u32);
    assert_eq!(state.counters.failures_refused, 2);
    assert_eq!(enforcer.maps().dests.all().unwrap().len(), 1);
}

#[test]
fn ipv6_destinations_trip_and_reject() {
    let refusing = RefusingPort::bind("[::1]:0".parse().unwrap());
    let addr = refusing.addr;
    let (cgroup, enforcer) = setup(&[&format!("[::1/128]:{}", addr.port())], tripping());
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 2), vec![REFUSED; 2]);
    let _server = AcceptingServer::serve(refusing.listen());
    assert_eq!(
        connects(&place, addr, 1),
        vec![REFUSED],
        "rejected by the breaker"
    );
    let state = dest(&enforcer, addr).unwrap();
    assert_eq!(
        (state.breaker.state, state.counters.rejected_circuit),
        (State::Open as u32, 1)
    );
}

#[test]
fn a_port_rule_wins_over_an_any_port_rule() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let backoff = fixtures::minute_open();
    // Policy 1 (tripping) for 127.0.0.0/8 on any port; policy 2 (off) for this port.
    let off = Policy {
        mode: Mode::Off as u32,
        ..tripping()
    };
    let port_rule = format!("127.0.0.1:{}", addr.port());
    fixtures::install(
        &mut enforcer,
        &[(1, tripping(), backoff), (2, off, backoff)],
        &[("127.0.0.0/8:*", 1), (&port_rule, 2)],
    );
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 3), vec![REFUSED; 3]);
    assert!(
        dest(&enforcer, addr).is_none(),
        "the port rule (off) applied"
    );
    let other = RefusingPort::loopback_v4();
    assert_eq!(connects(&place, other.addr, 3), vec![REFUSED; 3]);
    assert_eq!(
        dest(&enforcer, other.addr)
            .unwrap()
            .counters
            .rejected_circuit,
        1
    );
    assert!(
        connects(&place, "127.0.0.2:1".parse().unwrap(), 1)[0].is_err(),
        "any port of 127/8 is covered"
    );
}

#[test]
fn a_destination_moves_to_its_new_policy_with_its_counts() {
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let one = Policy {
        failure_threshold: 1,
        ..fixtures::base_policy()
    };
    let (cgroup, mut enforcer) = setup(&["127.0.0.0/8:*"], one);
    let place = Place::cgroup(&cgroup);
    assert_eq!(connects(&place, addr, 1), vec![REFUSED]);
    let stats = |e: &Enforcer, id| {
        let s = e.maps().policy_stats.get(id).unwrap();
        (s.tracked, s.open)
    };
    assert_eq!(
        stats(&enforcer, 1),
        (1, 1),
        "tracked and open under policy 1"
    );
    // A port rule now sends the destination to policy 2.
    let backoff = fixtures::minute_open();
    fixtures::install(
        &mut enforcer,
        &[(1, one, backoff), (2, tripping(), backoff)],
        &[("127.0.0.0/8:*", 1), (&addr.to_string(), 2)],
    );
    assert_eq!(connects(&place, addr, 1), vec![REFUSED], "still open");
    assert_eq!(stats(&enforcer, 1), (0, 0));
    assert_eq!(stats(&enforcer, 2), (1, 1));
    assert_eq!(dest(&enforcer, addr).unwrap().policy_id, 2);
}

#[test]
fn batch_reads_of_the_destination_map_match_reads_by_key() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached_with(
        &cgroup,
        &LoadOptions {
            dests_capacity: 8192,
            ..LoadOptions::default()
        },
    );
    fixtures::count_everything(&mut enforcer);
    // More destinations than one batch holds (4096): ports of a refusing socket
    // on many loopback addresses.
    let ports: Vec<RefusingPort> = (0..3).map(|_| RefusingPort::loopback_v4()).collect();
    let port_numbers: Vec<u16> = ports.iter().map(|p| p.addr.port()).collect();
    Place::cgroup(&cgroup).run(|| {
        for i in 0..1700u32 {
            for port in &port_numbers {
                let ip = std::net::Ipv4Addr::from(0x7f00_0001 + i);
                let _ = TcpStream::connect(SocketAddr::new(ip.into(), *port));
            }
        }
        String::new()
    });
    let mut batched = enforcer
        .maps()
        .dests
        .batched()
        .expect("batch lookups work on this kernel");
    let mut by_key = enforcer.maps().dests.by_key().expect("reading by key");
    assert_eq!(batched.len(), 5100);
    batched.sort_by_key(|(k, _)| k.socket_addr());
    by_key.sort_by_key(|(k, _)| k.socket_addr());
    assert_eq!(batched, by_key);
    assert!(batched.iter().all(|(_, s)| s.counters.attempts == 1));
}

#[test]
fn a_full_destination_map_allows_and_counts() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached_with(
        &cgroup,
        &LoadOptions {
            dests_capacity: 2,
            ..LoadOptions::default()
        },
    );
    fixtures::count_everything(&mut enforcer);
    let servers: Vec<AcceptingServer> = (0..3)
        .map(|_| AcceptingServer::bind("127.0.0.1:0"))
        .collect();
    let place = Place::cgroup(&cgroup);
    for s in &servers {
        assert_eq!(connects(&place, s.addr, 1), vec![Ok(())]);
    }
    assert_eq!(enforcer.maps().dests.all().unwrap().len(), 2);
    assert!(dest(&enforcer, servers[2].addr).is_none());
    assert_eq!(
        enforcer
            .maps()
            .counters
            .get(GlobalCounter::DestMapFull)
            .unwrap(),
        1
    );
}

/// A cgroup with the programs and a connection table of `slots`, and a
/// loopback server a policy tracks.
fn tracked_with_slots(slots: u32) -> (ScratchCgroup, Enforcer, AcceptingServer) {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached_with(
        &cgroup,
        &LoadOptions {
            conns_capacity: slots,
            ..LoadOptions::default()
        },
    );
    let server = AcceptingServer::bind("127.0.0.1:0");
    fixtures::apply_one(
        &mut enforcer,
        server.addr,
        fixtures::base_policy(),
        fixtures::minute_open(),
    );
    (cgroup, enforcer, server)
}

/// `addr`'s state once exactly `n` of its connections hold a slot, each
/// with its record in the connection table.
fn held(enforcer: &Enforcer, addr: SocketAddr, n: usize) -> DestState {
    wait::until(&format!("{n} slots and records held"), || {
        let s = dest(enforcer, addr).unwrap_or_default();
        let records = enforcer.maps().conns.all().unwrap().len();
        if s.breaker.active as usize == n && records == n {
            Ok(s)
        } else {
            Err(format!("active {} records {records}", s.breaker.active))
        }
    })
}

#[test]
fn a_full_connection_table_allows_and_counts() {
    let (cgroup, enforcer, server) = tracked_with_slots(2);
    // Three held at once: the third finds no room for its record and
    // passes untracked, its admission given back.
    let place = Place::cgroup(&cgroup);
    assert_eq!(place.held_connects(server.addr, 3), vec![Ok(()); 3]);
    let full = || {
        enforcer
            .maps()
            .counters
            .get(GlobalCounter::ConnTableFull)
            .unwrap()
    };
    assert_eq!(full(), 1);
    let s = held(&enforcer, server.addr, 0);
    assert_eq!(s.counters.attempts, 3);
    assert_eq!(s.counters.successes, 2, "{:?}", s.counters);
    assert_eq!(s.counters.abandoned, 1, "{:?}", s.counters);
    // The table emptied: connects are tracked again.
    assert_eq!(place.connects(server.addr, 1), vec![Ok(())]);
    assert_eq!(full(), 1);
}

/// A record goes in the first free one of the slots its socket's cookie
/// names, and every hook finds it there: with all but one slot of the table
/// held by an unprivileged process, connects still each find the free one.
#[test]
fn a_connect_takes_the_free_slot_its_cookie_names_and_every_hook_finds_it() {
    const HELD: usize = 7;
    const CONNECTS: usize = 40;
    // As many slots as a cookie may probe: any one may be the free one.
    let (cgroup, enforcer, server) = tracked_with_slots(enforcer_common::maps::CONN_PROBES as u32);
    let place = Place::cgroup(&cgroup);
    let settled = |n: usize| held(&enforcer, server.addr, n);
    let mut holder = place.spawn_nobody_holding(server.addr, HELD);
    let mut s = settled(HELD);
    // One at a time: a closed connection holds its slot until its close
    // completes.
    for _ in 0..CONNECTS {
        assert_eq!(place.connects(server.addr, 1), vec![Ok(())]);
        s = settled(HELD);
    }
    assert_eq!(s.counters.attempts, (HELD + CONNECTS) as u64);
    assert_eq!(
        s.counters.successes,
        (HELD + CONNECTS) as u64,
        "{:?}",
        s.counters
    );
    let full = enforcer.maps().counters.get(GlobalCounter::ConnTableFull);
    assert_eq!(full.unwrap(), 0);
    holder.kill().expect("killing the holder");
    holder.wait().expect("reaping the holder");
    settled(0);
}

#[test]
fn the_verifier_accepts_every_program_far_below_its_limit() {
    let cgroup = ScratchCgroup::new();
    let enforcer = fixtures::attached(&cgroup);
    let stats = enforcer.program_stats(None);
    for s in &stats {
        eprintln!(
            "verifier: {}: {:?} instructions processed",
            s.name, s.verified_insns
        );
    }
    for ProgramStats {
        name,
        verified_insns: insns,
        ..
    } in stats
    {
        let insns = insns.unwrap_or_else(|| panic!("{name}: no verified instruction count"));
        // Well under the 1M limit: room for the kernel's verifier to get
        // stricter, and for the programs to grow. The largest is packet_in_tc
        // (about 182k: the in-place RST, SYN vetting, reverse path and window checks).
        assert!(insns < 200_000, "{name}: {insns} of the 1M limit");
    }
}

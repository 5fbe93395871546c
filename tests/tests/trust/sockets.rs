//! Local processes in the protected cgroup: every way a caller can end its own
//! connect is its own business, never a destination's failure, and never a
//! slot left behind.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    breaker::State,
    dest::{DestKey, DestState},
    policy::{BackoffRow, Policy},
    sock::{SockInfo, flags},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{self, AcceptingServer, RefusingPort},
    netns::NetNs,
    routed::{Ns, Routed},
    wait,
};

const MS: u64 = 1_000_000;
const SEC: Duration = Duration::from_secs(1);

/// The destination's state once it holds no slot and no pending connect
/// (sockets finish closing asynchronously); fails after a generous deadline.
fn settled(enforcer: &Enforcer, key: &DestKey) -> DestState {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = enforcer
            .maps()
            .dests
            .get(key)
            .expect("reading DESTS")
            .unwrap_or_else(|| panic!("{key:?} is not tracked"));
        if (s.breaker.active, s.breaker.pending) == (0, 0) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "slots still held: active {} pending {} ({:?})",
            s.breaker.active,
            s.breaker.pending,
            s.counters
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A policy that trips on three consecutive failures and stays open a minute.
fn tripping_policy() -> Policy {
    Policy {
        failure_threshold: 3,
        ..fixtures::base_policy()
    }
}

/// A destination that never answers: SYNs to it vanish inside a namespace of
/// the test's own.
struct Blackhole {
    _ns: NetNs,
    addr: SocketAddr,
}

impl Blackhole {
    /// A blackhole, and programs in a scratch cgroup that track it with
    /// [`tripping_policy`].
    fn tracked() -> (ScratchCgroup, Enforcer, Self) {
        let cgroup = ScratchCgroup::new();
        let mut enforcer = fixtures::attached(&cgroup);
        let hole = Self::new();
        fixtures::apply_one(
            &mut enforcer,
            hole.addr,
            tripping_policy(),
            fixtures::minute_open(),
        );
        (cgroup, enforcer, hole)
    }

    fn new() -> Self {
        let ns = NetNs::new();
        ns.tcp_port(9, "drop");
        let addr = SocketAddr::new(ns.ns_v4.into(), 9);
        Self { _ns: ns, addr }
    }
}

#[test]
fn connecting_again_after_a_synchronous_failure_strands_no_slot() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    // Never reached: a socket bound to 127.0.0.1 fails to connect anywhere
    // else with EINVAL before any packet leaves.
    let remote: SocketAddr = "10.0.0.5:80".parse().unwrap();
    let policy = Policy {
        max_pending: 2,
        ..tripping_policy()
    };
    fixtures::apply_one(&mut enforcer, remote, policy, fixtures::minute_open());
    let place = Place::cgroup(&cgroup);

    let attack = place.run_as_nobody(|| {
        let socket = net::tcp_socket(true, false);
        net::bind_fd(&socket, "127.0.0.1:0".parse().unwrap()).expect("bind");
        let results: Vec<String> = (0..5)
            .map(|_| format!("{:?}", net::connect_fd(&socket, remote)))
            .collect();
        drop(socket);
        results.join(" ")
    });
    // EINVAL where a route to it exists (the source is loopback's), ENETUNREACH
    // where none does (a host without a default route): synchronous, local.
    let local = ["Err(22)", "Err(101)"].map(|e| [e; 5].join(" "));
    assert!(local.contains(&attack), "{attack}");

    let s = settled(&enforcer, &enforcer_tests::key(remote));
    assert_eq!(s.counters.attempts, 5);
    assert_eq!(s.counters.local_errors, 5, "{:?}", s.counters);
    assert_eq!(s.counters.failures(), 0, "local errors are not failures");
    assert_eq!(s.breaker.state, State::Closed as u32);

    // Any other process still passes the gate (and fails the same local way,
    // not with the bulkhead's ECONNREFUSED).
    let others = place.run(|| {
        (0..3)
            .map(|_| format!("{:?}", net::connect_from_loopback(remote)))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let local = ["Err(22)", "Err(101)"].map(|e| [e; 3].join(" "));
    assert!(local.contains(&others), "{others}");
    let s = settled(&enforcer, &enforcer_tests::key(remote));
    assert_eq!(s.counters.rejected_bulkhead, 0);
    assert_eq!(s.counters.local_errors, 8);
}

/// Programs in a scratch cgroup that track every port of 127.0.0.1 with
/// `policy`, and a server there.
fn loopback_tracked(policy: Policy) -> (ScratchCgroup, Enforcer, AcceptingServer) {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = AcceptingServer::bind("127.0.0.1:0");
    fixtures::apply(
        &mut enforcer,
        &["127.0.0.1/32:*"],
        policy,
        fixtures::minute_open(),
    );
    (cgroup, enforcer, server)
}

#[test]
fn connecting_again_after_a_refused_connect_releases_both_destinations() {
    let (cgroup, enforcer, server) = loopback_tracked(fixtures::base_policy());
    let refusing = RefusingPort::loopback_v4();
    let (open, refused) = (server.addr, refusing.addr);

    let out = Place::cgroup(&cgroup).run_as_nobody(|| {
        let mut results = Vec::new();
        for _ in 0..5 {
            let socket = net::tcp_socket(true, true);
            results.push(format!("{:?}", net::connect_fd(&socket, refused)));
            // Wait for the RST without reading the error: the next connect()
            // reports it and leaves the socket unconnected.
            let deadline = Instant::now() + 10 * SEC;
            let again = loop {
                match net::connect_fd(&socket, open) {
                    Err(libc::EALREADY) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    other => break other,
                };
            };
            results.push(format!("{again:?}"));
            results.push(format!("{:?}", net::connect_fd(&socket, open)));
            results.push(format!("{:?}", net::connect_result(&socket, 10 * SEC)));
        }
        results.join(" ")
    });
    assert_eq!(out, ["Ok(()) Err(111) Ok(()) Some(0)"; 5].join(" "));

    let r = settled(&enforcer, &enforcer_tests::key(refused));
    assert_eq!(r.counters.attempts, 5);
    assert_eq!(r.counters.failures_refused, 5);
    let o = settled(&enforcer, &enforcer_tests::key(open));
    assert_eq!(o.counters.attempts, 5);
    assert_eq!(o.counters.successes, 5);
    assert_eq!(o.counters.local_errors + o.counters.abandoned, 0);
}

/// Five connects to a silent destination, each ended by the caller with `end`
/// while in SYN_SENT, as `nobody`: the destination stays CLOSED and counts
/// them abandoned.
fn caller_ends_five_connects(end: fn(&std::os::fd::OwnedFd) -> Result<(), i32>) {
    let (cgroup, enforcer, hole) = Blackhole::tracked();
    let addr = hole.addr;
    let out = Place::cgroup(&cgroup).run_as_nobody(move || {
        (0..5)
            .map(|_| {
                let (socket, started) = net::connect_nonblocking(addr);
                let ended = end(&socket);
                format!("{started:?}/{ended:?}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    assert!(!out.contains("Err"), "{out}");
    let s = settled(&enforcer, &enforcer_tests::key(addr));
    assert_eq!(s.counters.attempts, 5);
    assert_eq!(s.counters.abandoned, 5, "{:?}", s.counters);
    assert_eq!(s.counters.failures(), 0);
    assert_eq!(s.breaker.state, State::Closed as u32);
    assert_eq!(s.counters.trips, 0);
}

#[test]
fn shutdown_in_syn_sent_is_abandoned_not_a_failure() {
    caller_ends_five_connects(net::shutdown);
}

#[test]
fn connect_af_unspec_in_syn_sent_is_abandoned_not_a_failure() {
    caller_ends_five_connects(net::disconnect);
}

#[test]
fn an_error_left_on_the_socket_by_an_earlier_connect_is_not_counted_again() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let hole = Blackhole::new();
    let refusing = RefusingPort::loopback_v4();
    let (silent, refused) = (hole.addr, refusing.addr);
    // The refusing port may trip: that is its own, real refusals.
    fixtures::apply(
        &mut enforcer,
        &[&silent.to_string()],
        tripping_policy(),
        fixtures::minute_open(),
    );
    let out = Place::cgroup(&cgroup).run_as_nobody(move || {
        (0..5)
            .map(|_| {
                let socket = net::tcp_socket(true, true);
                let first = net::connect_fd(&socket, refused);
                // The RST leaves ECONNREFUSED on the socket, unread.
                assert!(
                    net::connect_done(&socket, 10 * SEC),
                    "no answer from {refused}"
                );
                let dissolved = net::disconnect(&socket);
                let second = net::connect_fd(&socket, silent);
                let ended = net::shutdown(&socket);
                format!("{first:?}{dissolved:?}{second:?}{ended:?}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    assert!(!out.contains("Err"), "{out}");
    let s = settled(&enforcer, &enforcer_tests::key(silent));
    assert_eq!(s.counters.attempts, 5);
    assert_eq!(s.counters.abandoned, 5, "{:?}", s.counters);
    assert_eq!(s.counters.failures_refused, 0);
    assert_eq!(s.breaker.state, State::Closed as u32);
}

#[test]
fn a_caller_that_gives_up_after_silence_counts_as_a_timeout() {
    // The other side of "abandoned": a SYN unanswered past a retransmission
    // is silence, whoever closes the socket afterwards.
    let (cgroup, enforcer, hole) = Blackhole::tracked();
    let addr = hole.addr;
    let out = Place::cgroup(&cgroup).run_as_nobody(move || {
        let sockets: Vec<_> = (0..3).map(|_| net::connect_nonblocking(addr)).collect();
        // The first SYN retransmission comes after the initial RTO (1 s).
        thread::sleep(Duration::from_millis(2_500));
        let ends: Vec<String> = sockets
            .iter()
            .map(|(s, started)| format!("{started:?}/{:?}", net::shutdown(s)))
            .collect();
        ends.join(" ")
    });
    assert!(!out.contains("Err"), "{out}");
    let s = settled(&enforcer, &enforcer_tests::key(addr));
    assert_eq!(s.counters.failures_timeout, 3, "{:?}", s.counters);
    assert_eq!(s.counters.abandoned, 0);
    assert_eq!(s.breaker.state, State::Open as u32, "three timeouts trip");
}

#[test]
fn tcp_fast_open_connects_release_their_slots() {
    const TCP_FASTOPEN_CONNECT: i32 = 30;
    const TCP_FASTOPEN: i32 = 23;
    let cgroup = ScratchCgroup::new();
    let ns = NetNs::new();
    ns.exec("sysctl", &["-q", "-w", "net.ipv4.tcp_fastopen=3"]);
    let fd = ns.open();
    let listener = thread::spawn(move || {
        enforcer_tests::netns::enter_raw(&fd).expect("setns");
        let socket = net::tcp_socket(true, false);
        net::bind_fd(&socket, "127.0.0.1:0".parse().unwrap()).expect("bind");
        net::set_int_option(&socket, libc::IPPROTO_TCP, TCP_FASTOPEN, 16).expect("TCP_FASTOPEN");
        net::listen_fd(&socket).expect("listen");
        std::net::TcpListener::from(socket)
    })
    .join()
    .expect("listening in the namespace");
    // Holding what it accepts: closing a connection with the client's data
    // unread would reset it, racing the client's sendto on a slow machine.
    let mut held = Vec::new();
    let mut server = AcceptingServer::serve_with(listener, || {}, move |conn| held.push(conn));
    server.in_netns(&ns);
    let addr = server.addr;
    let mut enforcer = fixtures::attached(&cgroup);
    fixtures::apply_one(
        &mut enforcer,
        addr,
        fixtures::base_policy(),
        fixtures::minute_open(),
    );
    let place = Place::cgroup(&cgroup).with_netns(&ns);

    let out = place.run_as_nobody(move || {
        let fast_open = || {
            let socket = net::tcp_socket(true, false);
            net::set_int_option(&socket, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
                .expect("TCP_FASTOPEN_CONNECT");
            socket
        };
        // The first connect fetches a cookie; with it cached, connect() returns
        // at once and the SYN waits for the first write.
        let first = fast_open();
        let fetched = net::connect_fd(&first, addr);
        let wrote = net::write_fd(&first, b"x");
        drop(first);
        let mut deferred = Vec::new();
        for _ in 0..5 {
            let socket = fast_open();
            deferred.push(format!("{:?}", net::connect_fd(&socket, addr)));
            // Released without a write: the SYN never left.
        }
        // sendto(MSG_FASTOPEN) connects and sends in one call.
        let socket = net::tcp_socket(true, false);
        let sent = net::send_fast_open(&socket, addr, b"y");
        drop(socket);
        format!("{fetched:?} {wrote:?} [{}] {sent:?}", deferred.join(" "))
    });
    assert_eq!(
        out,
        "Ok(()) Ok(1) [Ok(()) Ok(()) Ok(()) Ok(()) Ok(())] Ok(1)"
    );

    let s = settled(&enforcer, &enforcer_tests::key_in(&ns, addr));
    assert_eq!(s.counters.attempts, 7, "{:?}", s.counters);
    assert_eq!(s.counters.successes, 2);
    assert_eq!(s.counters.abandoned, 5);
    assert_eq!(s.counters.failures(), 0);
    assert_eq!(s.breaker.state, State::Closed as u32);
}

#[test]
fn a_probe_nobody_ends_is_reclaimed() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let ns = NetNs::new();
    let port = 9;
    ns.tcp_port(port, "reject with tcp reset");
    let addr = SocketAddr::new(ns.ns_v4.into(), port);
    let policy = Policy {
        half_open_probes: 1,
        probe_timeout_ns: 500 * MS,
        ..tripping_policy()
    };
    let open = BackoffRow::exponential(200 * MS, 200 * MS);
    fixtures::apply_one(&mut enforcer, addr, policy, open);
    let place = Place::cgroup(&cgroup);
    let key = enforcer_tests::key(addr);

    let refused = place.connects(addr, 3);
    assert!(refused.iter().all(|r| *r == Err(libc::ECONNREFUSED)));
    assert_eq!(settled(&enforcer, &key).breaker.state, State::Open as u32);
    // The destination goes silent; the attacker's probe hangs in SYN_SENT and
    // is kept open, holding the only probe slot.
    ns.tcp_port(port, "drop");
    thread::sleep(Duration::from_millis(300));
    let out = place.run_as_nobody(move || {
        let (probe, started) = net::connect_nonblocking(addr);
        let blocked = net::connect_nonblocking(addr).1;
        // Past the probe's bound, the next connect reclaims it.
        thread::sleep(Duration::from_millis(700));
        let after = net::connect_nonblocking(addr).1;
        drop(probe);
        format!("{started:?} {blocked:?} {after:?}")
    });
    assert_eq!(out, "Ok(()) Err(111) Err(111)");
    let s = settled(&enforcer, &key);
    assert_eq!(s.counters.probes_reclaimed, 1, "{:?}", s.counters);
    assert_eq!(s.breaker.state, State::Open as u32, "reclaimed: reopened");
    assert_eq!(s.breaker.trips, 2);
    assert_eq!(s.breaker.probes_in_flight, 0);
}

#[test]
fn destinations_are_per_network_namespace() {
    // 127.0.0.1:PORT refuses inside the container-like namespace (nothing
    // listens there yet) and accepts in the host's.
    let (cgroup, enforcer, server) = loopback_tracked(tripping_policy());
    let addr = server.addr;
    let ns = NetNs::new();
    let inside = Place::cgroup(&cgroup).with_netns(&ns);
    let host = Place::cgroup(&cgroup);

    let tripped = inside.run_as_nobody(move || {
        (0..5)
            .map(|_| format!("{:?}", net::connect(addr).map(drop)))
            .collect::<Vec<_>>()
            .join(" ")
    });
    assert_eq!(tripped, ["Err(111)"; 5].join(" "));
    let key_inside = enforcer_tests::key_in(&ns, addr);
    let s = settled(&enforcer, &key_inside);
    assert_eq!(s.breaker.state, State::Open as u32);
    assert_eq!(s.counters.rejected_circuit, 2);

    // The host's 127.0.0.1:PORT is another service: untouched, reachable.
    let reached = host.connects(addr, 5);
    assert!(reached.iter().all(Result::is_ok), "{reached:?}");
    let h = settled(&enforcer, &enforcer_tests::key(addr));
    assert_eq!(h.breaker.state, State::Closed as u32);
    assert_eq!(h.counters.successes, 5);
    assert_eq!(h.counters.failures(), 0);
    assert_ne!(key_inside, enforcer_tests::key(addr));

    // A second namespace with the same addresses: its own state too.
    let other = NetNs::new();
    let listener = AcceptingServer::bind_in(&other, addr);
    let third = Place::cgroup(&cgroup).with_netns(&other);
    let reached = third.connects(addr, 3);
    assert!(reached.iter().all(Result::is_ok), "{reached:?}");
    let o = settled(&enforcer, &enforcer_tests::key_in(&other, addr));
    assert_eq!(o.breaker.state, State::Closed as u32);
    assert_eq!(o.counters.successes, 3);
    drop(listener);
}

/// Connects from the guest namespace of `routed` as `nobody`, each socket's
/// hop limit set to `hops` first (None: the system's), and returns each
/// connect's result (0 or the errno).
fn connects_from_guest(
    place: &Place,
    routed: &Routed,
    addr: SocketAddr,
    hops: Option<u8>,
    n: usize,
) -> Vec<i32> {
    let guest = routed.open(Ns::Guest);
    let out = place.run(move || {
        enforcer_tests::netns::enter_raw(&guest).expect("setns");
        enforcer_tests::exec::drop_to_nobody();
        (0..n)
            .map(|_| {
                let socket = net::tcp_socket(addr.is_ipv4(), false);
                if let Some(hops) = hops {
                    use rustix::net::sockopt::{set_ip_ttl, set_ipv6_unicast_hops};
                    if addr.is_ipv4() {
                        set_ip_ttl(&socket, hops.into())
                    } else {
                        set_ipv6_unicast_hops(&socket, Some(hops))
                    }
                    .expect("hop limit");
                }
                // Blocking: the connect waits out the answer to its SYN.
                match net::connect_fd(&socket, addr) {
                    Ok(()) => "0".to_string(),
                    Err(e) => e.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    out.split(',')
        .map(|e| e.parse().expect("an errno"))
        .collect()
}

#[test]
fn a_lowered_hop_limit_is_the_callers_doing() {
    let routed = Routed::new();
    // ICMP errors from the router without rate limits: every SYN gets its answer.
    routed.sysctl(Ns::Router, "net.ipv4.icmp_ratelimit=0");
    routed.sysctl(Ns::Router, "net.ipv6.icmp.ratelimit=0");
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let port = 7000;
    let v4 = SocketAddr::new(routed.backend_v4.into(), port);
    let v6 = SocketAddr::new(routed.backend_v6.into(), port);
    let (any_v4, any_v6) = (format!("{}/32:*", v4.ip()), format!("[{}/128]:*", v6.ip()));
    fixtures::apply(
        &mut enforcer,
        &[&any_v4, &any_v6],
        tripping_policy(),
        fixtures::minute_open(),
    );
    let place = Place::cgroup(&cgroup);
    let guest_key = |addr: SocketAddr| {
        let netns = routed.in_ns(Ns::Guest, || {
            enforcer::netns::own_cookie().expect("SO_NETNS_COOKIE")
        });
        DestKey::from(addr).in_netns(netns)
    };

    for addr in [v4, v6] {
        // A SYN sent with a hop limit of 1 dies at the router, which answers
        // with an ICMP time-exceeded: the caller's doing.
        let errors = connects_from_guest(&place, &routed, addr, Some(1), 5);
        assert_eq!(errors, [libc::EHOSTUNREACH; 5], "{addr}");
        let s = settled(&enforcer, &guest_key(addr));
        assert_eq!(s.counters.local_errors, 5, "{addr}: {:?}", s.counters);
        assert_eq!(s.counters.failures(), 0, "{addr}");
        assert_eq!(s.breaker.state, State::Closed as u32, "{addr}");
    }

    // The same ICMP error on the path of a socket with the system's hop limit
    // is the destination's: unreachable, and it trips.
    routed.set_backend_port(port + 1, "reject with icmpx type host-unreachable");
    for addr in [v4, v6] {
        let addr = SocketAddr::new(addr.ip(), port + 1);
        let errors = connects_from_guest(&place, &routed, addr, None, 3);
        assert_eq!(errors, [libc::EHOSTUNREACH; 3], "{addr}");
        let s = settled(&enforcer, &guest_key(addr));
        assert_eq!(
            s.counters.failures_unreachable, 3,
            "{addr}: {:?}",
            s.counters
        );
        assert_eq!(s.breaker.state, State::Open as u32, "{addr}");
    }
}

/// The connection table's records of `key`'s connects, once there are
/// `want` of them.
fn records_of(enforcer: &Enforcer, key: &DestKey, want: usize) -> Vec<(u64, SockInfo)> {
    wait::until(&format!("{want} records of {key:?}"), || {
        let records = enforcer.maps().conns.all().expect("reading CONNS");
        let mine: Vec<_> = records
            .into_iter()
            .filter(|(_, r)| r.dest == *key)
            .collect();
        if mine.len() == want {
            Ok(mine)
        } else {
            Err(format!("{mine:?}"))
        }
    })
}

#[test]
fn every_admitted_connect_leaves_the_connection_table_however_its_caller_ends_it() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = AcceptingServer::bind("127.0.0.1:0");
    let refusing = RefusingPort::loopback_v4();
    // Never reached: a socket bound to 127.0.0.1 fails to connect there
    // inside connect(), before any packet leaves.
    let unreachable: SocketAddr = "10.0.0.5:80".parse().unwrap();
    fixtures::apply(
        &mut enforcer,
        &["127.0.0.1/32:*", "10.0.0.5/32:80"],
        fixtures::base_policy(),
        fixtures::minute_open(),
    );
    let (open, refused) = (server.addr, refusing.addr);
    let place = Place::cgroup(&cgroup);

    // Held open by an unprivileged process: one record each, with its
    // cookie, holding its slot; gone with the process.
    let mut holder = place.spawn_nobody_holding(open, 3);
    let held = records_of(&enforcer, &enforcer_tests::key(open), 3);
    for (cookie, record) in &held {
        assert_eq!(record.cookie, *cookie);
        assert_ne!(record.flags & flags::HOLDS_SLOT, 0, "{record:?}");
        assert_ne!(record.flags & flags::OUTCOME_RECORDED, 0, "{record:?}");
    }
    holder.kill().expect("kill the holder");
    holder.wait().expect("reap the holder");

    // Every other way a caller ends its connects, as nobody.
    let out = place.run_as_nobody(|| {
        let mut results = Vec::new();
        for _ in 0..5 {
            results.push(format!("{:?}", net::connect(open).map(drop)));
            results.push(format!("{:?}", net::connect(refused).map(drop)));
            let socket = net::tcp_socket(true, false);
            net::bind_fd(&socket, "127.0.0.1:0".parse().unwrap()).expect("bind");
            results.push(format!("{:?}", net::connect_fd(&socket, unreachable)));
            let (socket, started) = net::connect_nonblocking(open);
            net::shutdown(&socket).expect("shutdown");
            results.push(format!("{started:?}"));
            let socket = net::tcp_socket(true, false);
            results.push(format!("{:?}", net::connect_fd(&socket, refused)));
            results.push(format!("{:?}", net::connect_fd(&socket, open)));
        }
        results.join(" ")
    });
    // EINVAL where a route to the unreachable address exists (the source is
    // loopback's), ENETUNREACH where none does.
    let expected = ["Err(22)", "Err(101)"]
        .map(|local| vec![format!("Ok(()) Err(111) {local} Ok(()) Err(111) Ok(())"); 5].join(" "));
    assert!(expected.contains(&out), "{out}");
    for addr in [open, refused] {
        let s = settled(&enforcer, &enforcer_tests::key(addr));
        let ended = s.counters.successes
            + s.counters.failures()
            + s.counters.abandoned
            + s.counters.local_errors;
        assert_eq!(ended, s.counters.attempts, "{addr}: {:?}", s.counters);
    }
    let s = settled(&enforcer, &enforcer_tests::key(unreachable));
    assert_eq!(s.counters.local_errors, 5, "{:?}", s.counters);

    wait::until("no record left behind", || {
        let left = enforcer.maps().conns.all().expect("reading CONNS");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

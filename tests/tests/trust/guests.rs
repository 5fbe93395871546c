//! Guests behind a watched interface: every way a guest can put packets on the
//! wire to forge an outcome of a destination others share, or to free a slot
//! it still uses, through real guest — router — backend namespaces, shown not
//! to work. The guest is root in its own namespace, as it is in its own VM:
//! it crafts whatever frames it likes (`Routed::inject`). Forged frames from
//! the destination's side come from the backend's namespace.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    os::fd::OwnedFd,
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::{Enforcer, Maps, pins::PinDir};
use enforcer_common::{
    breaker::State,
    counters::GlobalCounter,
    dest::DestState,
    flow::{Flow, FlowKey},
    policy::Policy,
};
use enforcer_tests::{
    bpffs::PinDir as ScratchBpffs,
    cgroup::ScratchCgroup,
    daemon::Daemon,
    fixtures::{self, ECONNREFUSED},
    frames::{self, ACK, FIN, RST, SYN, Tcp},
    net,
    routed::{Ns, Routed},
};

/// The backend's port that answers.
const OPEN_PORT: u16 = 8080;
/// The backend's port that drops every SYN.
const SILENT_PORT: u16 = 8081;

/// The packet programs watching `net`'s guests, with a policy that one
/// failure trips, for the backend's SILENT_PORT, which drops every SYN.
fn tripwire(net: &Routed) -> Enforcer {
    let enforcer = net.watched(
        &[SILENT_PORT],
        Policy {
            failure_threshold: 1,
            ..fixtures::base_policy()
        },
        fixtures::minute_open(),
    );
    net.set_backend_port(SILENT_PORT, "drop");
    enforcer
}

/// Polls `f` until it holds, failing with `what` after a generous deadline.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn counter(enforcer: &Enforcer, c: GlobalCounter) -> u64 {
    enforcer.maps().counters.get(c).expect("reading a counter")
}

/// The destination's state as the packet plane keys it (in the loader's
/// namespace), if tracked.
fn dest_state(enforcer: &Enforcer, dest: SocketAddr) -> Option<DestState> {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(dest))
        .expect("reading DESTS")
}

fn tracked(enforcer: &Enforcer, dest: SocketAddr) -> DestState {
    dest_state(enforcer, dest).unwrap_or_else(|| panic!("{dest} is not tracked"))
}

/// The flow of the guest's connect from `guest_port`, once it is tracked and,
/// with `answered`, has its outcome.
fn flow_of(enforcer: &Enforcer, guest_port: u16, answered: bool) -> (FlowKey, Flow) {
    let mut found = None;
    eventually(&format!("a flow from guest port {guest_port}"), || {
        found = enforcer
            .maps()
            .flows
            .all()
            .expect("reading FLOWS")
            .into_iter()
            .find(|(key, flow)| key.client_port == guest_port && flow.has_outcome() == answered);
        found.is_some()
    });
    found.expect("found")
}

/// The guest's segment on the flow from `guest` to `dest` with these numbers.
fn segment(guest: SocketAddr, dest: SocketAddr, flags: u8, seq: u32, ack: u32) -> Tcp {
    Tcp {
        src: guest.ip(),
        dst: dest.ip(),
        sport: guest.port(),
        dport: dest.port(),
        seq,
        ack,
        flags,
        options: Vec::new(),
        payload: Vec::new(),
    }
}

/// A connect from the guest to a silent destination, left in SYN_SENT, and
/// the guest's port.
fn connect_in_background(net: &Routed, enforcer: &Enforcer, to: SocketAddr) -> (OwnedFd, u16) {
    let (socket, started) = net.in_ns(Ns::Guest, || net::connect_nonblocking(to));
    assert_eq!(started, Ok(()), "a non-blocking connect to {to}");
    let mut port = None;
    eventually(&format!("the flow to {to}"), || {
        port = enforcer
            .maps()
            .flows
            .all()
            .expect("reading FLOWS")
            .into_iter()
            .find(|(key, _)| key.dest.port == to.port())
            .map(|(key, _)| key.client_port);
        port.is_some()
    });
    (socket, port.expect("found"))
}

#[test]
fn a_guests_rsts_and_fins_outside_the_window_free_no_slot() {
    let net = Routed::new();
    let enforcer = net.watched(
        &[OPEN_PORT],
        Policy {
            max_connections: 1,
            ..fixtures::base_policy()
        },
        fixtures::minute_open(),
    );
    let backend = SocketAddr::new(net.backend_v4.into(), OPEN_PORT);
    let listener = net.backend_listener(backend);
    let mut stream = net
        .in_ns(Ns::Guest, || TcpStream::connect(backend))
        .expect("the guest's first connection");
    let (mut accepted, _) = listener.accept().expect("accepting it");
    let guest = stream.local_addr().unwrap();
    let (_, flow) = flow_of(&enforcer, guest.port(), true);
    let next = flow.seq.guest_next;

    // RSTs and FINs at numbers the backend does not take: it keeps the
    // connection, so the flow keeps its slot.
    let forged = [
        (RST, next.wrapping_add(1_000)),
        (RST | ACK, next.wrapping_add(1 << 20)),
        (RST, next.wrapping_add(1 << 31)),
        (FIN | ACK, next.wrapping_sub(1 << 20)),
    ];
    let before = counter(&enforcer, GlobalCounter::PacketOutOfWindow);
    for (flags, seq) in forged {
        let frame = segment(guest, backend, flags, seq, flow.seq.guest_acked).frame();
        net.inject(Ns::Guest, &frame);
    }
    eventually("the forged segments seen", || {
        counter(&enforcer, GlobalCounter::PacketOutOfWindow) >= before + 4
    });
    let s = tracked(&enforcer, backend);
    assert_eq!(s.breaker.active, 1, "the slot is still held");
    assert_eq!(s.counters.failures() + s.counters.abandoned, 0);
    assert_eq!(enforcer.maps().flows.all().unwrap().len(), 1);
    // The cap still holds: another connect is refused by the kernel.
    let second = net.in_ns(Ns::Guest, || {
        TcpStream::connect_timeout(&backend, Duration::from_secs(5)).map_err(|e| e.raw_os_error())
    });
    assert_eq!(second.err(), Some(Some(ECONNREFUSED as i32)));
    // And the backend agrees: the connection lives.
    stream.write_all(b"ping").expect("writing");
    let mut got = [0; 4];
    accepted.read_exact(&mut got).expect("reading");
    assert_eq!(&got, b"ping");

    // The guest's real close ends it, once.
    drop(stream);
    eventually("the slot given back", || {
        tracked(&enforcer, backend).breaker.active == 0
    });
    let third = net.in_ns(Ns::Guest, || TcpStream::connect(backend));
    assert!(third.is_ok(), "{third:?}");
    drop((accepted, listener));
}

#[test]
fn icmp_errors_quoting_another_number_and_answers_the_guest_loops_back_are_no_outcome() {
    let net = Routed::new();
    let enforcer = tripwire(&net);
    let silent = SocketAddr::new(net.backend_v4.into(), SILENT_PORT);
    let (socket, port) = connect_in_background(&net, &enforcer, silent);
    let (_, flow) = flow_of(&enforcer, port, false);
    let guest = SocketAddr::new(net.guest_v4.into(), port);
    let syn = segment(guest, silent, SYN, flow.seq.syn, 0);

    // From the destination's side: ICMP errors about numbers the guest never
    // sent first.
    for seq in [syn.seq.wrapping_add(1), syn.seq.wrapping_sub(1)] {
        let other = Tcp { seq, ..syn.clone() };
        net.inject(Ns::Backend, &frames::unreachable(silent.ip(), &other));
    }
    eventually("the mismatched ICMP errors seen", || {
        counter(&enforcer, GlobalCounter::PacketIcmpMismatched) >= 2
    });
    // From the guest itself, sent to the router and routed back to it: an
    // ICMP error and a RST that answer its SYN exactly.
    net.inject(Ns::Guest, &frames::unreachable(silent.ip(), &syn));
    net.inject(Ns::Guest, &syn.answer(RST | ACK).frame());
    eventually("the looped-back answers seen", || {
        counter(&enforcer, GlobalCounter::PacketLoopedBack) >= 2
    });
    let s = tracked(&enforcer, silent);
    assert_eq!(s.counters.failures(), 0, "{:?}", s.counters);
    assert_eq!(s.breaker.state, State::Closed as u32);
    assert_eq!(s.breaker.pending, 1, "still waiting for a real answer");

    // The guest's own RST at its next number: abandoned, the slot back.
    let rst = segment(guest, silent, RST, flow.seq.guest_next, 0);
    net.inject(Ns::Guest, &rst.frame());
    eventually("the flow abandoned", || {
        tracked(&enforcer, silent).breaker.pending == 0
    });
    let s = tracked(&enforcer, silent);
    assert_eq!((s.counters.abandoned, s.counters.failures()), (1, 0));
    assert!(enforcer.maps().flows.all().unwrap().is_empty());
    drop(socket);
}

#[test]
fn syns_nobody_can_answer_leave_the_destination_untouched() {
    let net = Routed::new();
    let enforcer = tripwire(&net);
    let mut port = 50_000;
    let mut injected = 0;
    let (corrupt, expiring) = (
        counter(&enforcer, GlobalCounter::PacketSynsCorrupt),
        counter(&enforcer, GlobalCounter::PacketSynsTtlExpiring),
    );
    let pairs: [(IpAddr, IpAddr); 2] = [
        (net.guest_v4.into(), net.backend_v4.into()),
        (net.guest_v6.into(), net.backend_v6.into()),
    ];
    for (guest, backend) in pairs {
        for garble in [
            frames::with_bad_tcp_checksum as fn(&[u8]) -> Vec<u8>,
            frames::with_offload_checksum,
            |f| frames::with_hop_limit(f, 1),
            |f| frames::with_hop_limit(f, 0),
        ] {
            port += 1;
            let frame = garble(&Tcp::syn(guest, port, backend, SILENT_PORT).frame());
            // Sent again, as a guest faking silence would.
            for _ in 0..2 {
                net.inject(Ns::Guest, &frame);
                injected += 1;
            }
        }
    }
    eventually("every garbled SYN seen", || {
        let seen = counter(&enforcer, GlobalCounter::PacketSynsCorrupt) - corrupt
            + counter(&enforcer, GlobalCounter::PacketSynsTtlExpiring)
            - expiring;
        seen >= injected
    });
    assert_eq!(
        counter(&enforcer, GlobalCounter::PacketSynsTtlExpiring) - expiring,
        8
    );
    assert!(
        enforcer.maps().flows.all().unwrap().is_empty(),
        "nothing tracked"
    );
    for (_, backend) in pairs {
        let dest = SocketAddr::new(backend, SILENT_PORT);
        assert!(dest_state(&enforcer, dest).is_none(), "{dest} untouched");
    }

    // The same SYN intact is tracked: what was left alone was the garbling.
    port += 1;
    let intact = Tcp::syn(
        net.guest_v4.into(),
        port,
        net.backend_v4.into(),
        SILENT_PORT,
    );
    net.inject(Ns::Guest, &intact.frame());
    let (_, flow) = flow_of(&enforcer, port, false);
    assert_eq!(flow.seq.syn, intact.seq);
    // Given up by its guest at its next number: abandoned, never a failure.
    net.inject(Ns::Guest, &intact.established(RST).frame());
    let dest = SocketAddr::new(net.backend_v4.into(), SILENT_PORT);
    eventually("the intact SYN's flow ended", || {
        tracked(&enforcer, dest).breaker.pending == 0
    });
    let s = tracked(&enforcer, dest);
    assert_eq!((s.counters.attempts, s.counters.abandoned), (1, 1));
    assert_eq!(s.counters.failures(), 0);
}

#[test]
fn syns_from_a_source_not_routed_back_through_the_interface_leave_the_destination_untouched() {
    let net = Routed::new();
    let enforcer = tripwire(&net);
    let spoofed_before = counter(&enforcer, GlobalCounter::PacketSynsSpoofed);
    // Sources the router sends answers to elsewhere: the backend's own subnet
    // (out of the backend-facing interface), or nowhere (no route at all).
    let [a, b, c, _] = net.backend_v4.octets();
    let mut backend_side_v6 = net.backend_v6.segments();
    backend_side_v6[7] = 0x77;
    let v4 = IpAddr::from(net.backend_v4);
    let v6 = IpAddr::from(net.backend_v6);
    let sources: [(IpAddr, IpAddr); 4] = [
        (Ipv4Addr::new(a, b, c, 77).into(), v4),
        (Ipv4Addr::new(192, 0, 2, 77).into(), v4),
        (Ipv6Addr::from(backend_side_v6).into(), v6),
        ("2001:db8::77".parse().unwrap(), v6),
    ];
    let mut port = 51_000;
    let mut injected = 0;
    for (source, backend) in sources {
        port += 1;
        let syn = Tcp::syn(source, port, backend, SILENT_PORT).frame();
        // Sent again, as a guest faking silence would.
        for _ in 0..2 {
            net.inject(Ns::Guest, &syn);
            injected += 1;
        }
    }
    eventually("every spoofed SYN seen", || {
        counter(&enforcer, GlobalCounter::PacketSynsSpoofed) - spoofed_before >= injected
    });
    assert_eq!(
        counter(&enforcer, GlobalCounter::PacketSynsSpoofed) - spoofed_before,
        injected
    );
    assert!(
        enforcer.maps().flows.all().unwrap().is_empty(),
        "nothing tracked"
    );
    for backend in [v4, v6] {
        let dest = SocketAddr::new(backend, SILENT_PORT);
        assert!(dest_state(&enforcer, dest).is_none(), "{dest} untouched");
    }

    // The guest's own addresses are routed back through the interface: its
    // SYNs (retransmitted too) are tracked, none of them spoofed.
    for (guest, backend) in [(IpAddr::from(net.guest_v4), v4), (net.guest_v6.into(), v6)] {
        port += 1;
        let intact = Tcp::syn(guest, port, backend, SILENT_PORT);
        net.inject(Ns::Guest, &intact.frame());
        net.inject(Ns::Guest, &intact.frame());
        let (_, flow) = flow_of(&enforcer, port, false);
        assert_eq!(flow.seq.syn, intact.seq);
        eventually("the retransmission seen", || {
            flow_of(&enforcer, port, false).1.seq.syn_again()
        });
        // Given up by its guest at its next number: abandoned.
        net.inject(Ns::Guest, &intact.established(RST).frame());
        let dest = SocketAddr::new(backend, SILENT_PORT);
        eventually("the flow ended", || {
            tracked(&enforcer, dest).breaker.pending == 0
        });
        let s = tracked(&enforcer, dest);
        assert_eq!((s.counters.attempts, s.counters.abandoned), (1, 1));
        assert_eq!(s.counters.failures(), 0);
        assert_eq!(s.breaker.state, State::Closed as u32);
    }
    assert_eq!(
        counter(&enforcer, GlobalCounter::PacketSynsSpoofed) - spoofed_before,
        injected
    );
}

/// Active and pending slots of `dest` (0, 0 when not listed).
fn slots(d: &Daemon, dest: SocketAddr) -> (u64, u64) {
    let s = d.status_of(dest);
    (
        s["active"].as_u64().unwrap_or(0),
        s["pending"].as_u64().unwrap_or(0),
    )
}

#[test]
fn pausing_in_the_middle_of_live_flows_fails_nothing_and_strands_no_slot() {
    let net = Routed::new();
    let cgroup = ScratchCgroup::new();
    let bpffs = ScratchBpffs::new();
    let (open, silent) = (
        SocketAddr::new(net.backend_v4.into(), OPEN_PORT),
        SocketAddr::new(net.backend_v4.into(), SILENT_PORT),
    );
    // One failure trips either destination: any false one shows.
    let rest = format!(
        "[[policy]]\nname = \"guests\"\nmatch = [\"{open}\", \"{silent}\"]\n\
         failure_threshold = 1\nconnect_timeout = \"3s\"\nopen = \"1m\"\n"
    );
    // The default idle timeout (10 minutes): the connections that close
    // unseen must not need it to give their slots back.
    let keys = format!("interfaces = [\"{}\"]\n", net.router_guest_if);
    let d = Daemon::start_in_netns(&cgroup, &bpffs, &rest, &keys, net.path(Ns::Router));
    // The daemon's maps, read alongside it.
    let maps = Maps::open(&PinDir::new(bpffs.path().join("enforcer"))).expect("opening the pins");
    net.set_backend_port(SILENT_PORT, "drop");
    let listener = net.backend_listener(open);

    let mut established: Vec<(TcpStream, TcpStream)> = (0..3)
        .map(|_| {
            let stream = net
                .in_ns(Ns::Guest, || TcpStream::connect(open))
                .expect("connecting to the open port");
            (stream, listener.accept().expect("accepting").0)
        })
        .collect();
    let pending: Vec<OwnedFd> = (0..2)
        .map(|_| {
            let (socket, started) = net.in_ns(Ns::Guest, || net::connect_nonblocking(silent));
            assert_eq!(started, Ok(()));
            socket
        })
        .collect();
    // Both silent connects sent their SYN again, seen: past their connect
    // timeout, they would be timeouts.
    eventually("every flow tracked, the silent ones retransmitted", || {
        let flows = maps.flows.all().expect("reading FLOWS");
        let again = flows
            .iter()
            .filter(|(key, flow)| key.dest.port == SILENT_PORT && flow.seq.syn_again())
            .count();
        slots(&d, open) == (3, 0) && again == 2
    });

    d.ok(&["pause"]);
    // Unseen while paused: two connections close (their flows, left without
    // a packet, are given up a connect timeout later), and the silent
    // connects reach their connect timeout, which the sweep, still running,
    // ends.
    established.truncate(1);
    eventually("the silent flows ended while paused", || {
        slots(&d, silent) == (0, 0)
    });
    drop(pending);
    d.ok(&["resume"]);
    // Seen again: the last connection closes.
    established.clear();

    eventually("every slot back", || {
        slots(&d, open) == (0, 0) && maps.flows.all().expect("reading FLOWS").is_empty()
    });
    for dest in [open, silent] {
        let s = d.status_of(dest);
        assert_eq!(s["state"], "closed", "{dest}: {s}");
        for reason in ["refused", "timeout", "unreachable"] {
            assert_eq!(s["failures"][reason], 0, "{dest}: {s}");
        }
        assert_eq!(s["trips"], 0, "{dest}: {s}");
    }
    assert_eq!(d.status_of(silent)["abandoned"], 2);
    assert_eq!(d.status_of(open)["successes"], 3);

    // Nothing of the pause lingers: real silence after it still counts.
    let after = net.in_ns(Ns::Guest, || {
        TcpStream::connect_timeout(&silent, Duration::from_secs(4))
    });
    assert!(after.is_err(), "the silent port stays silent");
    eventually("the silence after the pause counted", || {
        d.status_of(silent)["failures"]["timeout"] == 1
    });
    assert_eq!(d.status_of(silent)["state"], "open");
    drop(listener);
}

#[test]
fn guests_behind_a_watched_bridge_port_are_routed_back_through_the_bridge() {
    let net = Routed::new();
    // The router's guest-facing interface becomes a port of a bridge that
    // holds its addresses: answers to the guest are routed out of the bridge.
    let rg = net.router_guest_if.clone();
    let bridge = "brg0";
    let (v4, v6) = (
        format!("{}/24", net.router_guest_v4),
        format!("{}/64", net.router_guest_v6),
    );
    for args in [
        &["link", "add", bridge, "type", "bridge"][..],
        &["addr", "del", &v4, "dev", &rg],
        &["-6", "addr", "del", &v6, "dev", &rg],
        &["link", "set", &rg, "master", bridge],
        &["addr", "add", &v4, "dev", bridge],
        &["-6", "addr", "add", &v6, "dev", bridge, "nodad"],
        &["link", "set", bridge, "up"],
    ] {
        net.ip(Ns::Router, args);
    }
    let enforcer = tripwire(&net);
    let spoofed_before = counter(&enforcer, GlobalCounter::PacketSynsSpoofed);
    let mut port = 52_000;
    for (guest, backend) in [
        (IpAddr::from(net.guest_v4), IpAddr::from(net.backend_v4)),
        (net.guest_v6.into(), net.backend_v6.into()),
    ] {
        port += 1;
        net.inject(
            Ns::Guest,
            &Tcp::syn(guest, port, backend, SILENT_PORT).frame(),
        );
        let dest = SocketAddr::new(backend, SILENT_PORT);
        eventually("the guest's SYN admitted", || {
            dest_state(&enforcer, dest).is_some_and(|s| s.counters.attempts == 1)
        });
    }
    assert_eq!(
        counter(&enforcer, GlobalCounter::PacketSynsSpoofed),
        spoofed_before,
        "a guest behind the bridge port is not spoofing"
    );
    // A source routed elsewhere is still spoofed behind the bridge port.
    let [a, b, c, _] = net.backend_v4.octets();
    let elsewhere = Ipv4Addr::new(a, b, c, 77);
    let backend = IpAddr::from(net.backend_v4);
    net.inject(
        Ns::Guest,
        &Tcp::syn(elsewhere.into(), port + 1, backend, SILENT_PORT).frame(),
    );
    eventually("the spoofed SYN seen", || {
        counter(&enforcer, GlobalCounter::PacketSynsSpoofed) > spoofed_before
    });
}

#[test]
fn a_retransmitted_syn_nobody_could_answer_is_no_proof_of_silence() {
    let net = Routed::new();
    let enforcer = tripwire(&net);
    let (guest, backend) = (IpAddr::from(net.guest_v4), IpAddr::from(net.backend_v4));
    let syn = Tcp::syn(guest, 53_001, backend, SILENT_PORT);
    net.inject(Ns::Guest, &syn.frame());
    let (_, flow) = flow_of(&enforcer, 53_001, false);
    assert!(!flow.seq.syn_again());
    // The "retransmissions" a guest faking silence would send: copies the
    // destination never gets (a bad checksum, a TTL that dies at the router).
    let corrupt_before = counter(&enforcer, GlobalCounter::PacketSynsCorrupt);
    net.inject(Ns::Guest, &frames::with_bad_tcp_checksum(&syn.frame()));
    net.inject(Ns::Guest, &frames::with_hop_limit(&syn.frame(), 1));
    eventually("the bad copies judged", || {
        counter(&enforcer, GlobalCounter::PacketSynsCorrupt) > corrupt_before
            && counter(&enforcer, GlobalCounter::PacketSynsTtlExpiring) > 0
    });
    assert!(
        !flow_of(&enforcer, 53_001, false).1.seq.syn_again(),
        "a copy nobody could answer marked the flow silent"
    );
    // A real retransmission does.
    net.inject(Ns::Guest, &syn.frame());
    eventually("the retransmission seen", || {
        flow_of(&enforcer, 53_001, false).1.seq.syn_again()
    });
}

//! Foundation: the gate and sock_ops count, per destination, exactly the TCP
//! connects made inside the protected cgroup, and nothing else.

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream, UdpSocket},
};

use enforcer::bpf::Enforcer;
use enforcer_common::dest::DestCounters;
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{AcceptingServer, RefusingPort},
};

const K: u64 = 7;
const J: u64 = 5;

/// K connects to `open`, J to `refusing`; asserts each one's real result.
fn connect_k_and_j(open: SocketAddr, refusing: SocketAddr) {
    for i in 0..K {
        TcpStream::connect(open).unwrap_or_else(|e| panic!("connect {i} to {open}: {e}"));
    }
    for i in 0..J {
        let err = TcpStream::connect(refusing).expect_err("the refusing port accepted");
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "connect {i}: {err}"
        );
    }
}

fn counters(enforcer: &Enforcer, addr: SocketAddr) -> DestCounters {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(addr))
        .expect("reading DESTS")
        .unwrap_or_else(|| panic!("{addr} is not tracked"))
        .counters
}

fn check(bind: &str, refusing: RefusingPort) {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    fixtures::count_everything(&mut enforcer);
    let server = AcceptingServer::bind(bind);
    let (open, refusing) = (server.addr, refusing.addr);

    Place::cgroup(&cgroup).run(|| {
        connect_k_and_j(open, refusing);
        String::new()
    });

    let expected_open = DestCounters {
        attempts: K,
        successes: K,
        ..Default::default()
    };
    let expected_refusing = DestCounters {
        attempts: J,
        failures_refused: J,
        ..Default::default()
    };
    assert_eq!(counters(&enforcer, open), expected_open, "{open}");
    assert_eq!(
        counters(&enforcer, refusing),
        expected_refusing,
        "{refusing}"
    );

    // The same connects from outside the cgroup (this test process) change nothing.
    connect_k_and_j(open, refusing);
    assert_eq!(
        counters(&enforcer, open),
        expected_open,
        "{open} after outside connects"
    );
    assert_eq!(
        counters(&enforcer, refusing),
        expected_refusing,
        "{refusing} after outside connects"
    );
    assert_eq!(enforcer.maps().dests.all().expect("reading DESTS").len(), 2);
}

#[test]
fn ipv4_outcomes_are_counted_inside_the_cgroup_only() {
    check("127.0.0.1:0", RefusingPort::loopback_v4());
}

#[test]
fn ipv6_outcomes_are_counted_inside_the_cgroup_only() {
    check("[::1]:0", RefusingPort::bind("[::1]:0".parse().unwrap()));
}

#[test]
fn udp_connect_is_left_alone() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    fixtures::count_everything(&mut enforcer);
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let peer_addr = peer.local_addr().unwrap();

    Place::cgroup(&cgroup).run(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(peer_addr).expect("udp connect");
        socket.send(b"ping").expect("send");
        String::new()
    });

    let mut buf = [0u8; 4];
    assert_eq!(peer.recv(&mut buf).expect("the datagram arrives"), 4);
    assert!(
        enforcer
            .maps()
            .dests
            .all()
            .expect("reading DESTS")
            .is_empty()
    );
    let other = enforcer
        .maps()
        .counters
        .get(enforcer_common::counters::GlobalCounter::OtherConnects)
        .expect("reading COUNTERS");
    assert_eq!(other, 1, "the gate saw the UDP connect and passed it");
}

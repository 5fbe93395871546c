//! The guest — router — backend fixture itself: traffic is routed (not NATed)
//! through the router, the backend's per-port verdicts do what they say, and
//! nothing is left behind.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use enforcer_tests::{
    net::connect_nonblocking,
    routed::{Ns, Routed},
};

/// How long a connect to a blackholed port must stay pending.
const BLACKHOLE: Duration = Duration::from_millis(300);

fn backend_addrs(routed: &Routed) -> [IpAddr; 2] {
    [routed.backend_v4.into(), routed.backend_v6.into()]
}

#[test]
fn guest_reaches_backend_through_router() {
    let routed = Routed::new();
    for (ip, guest) in [
        (
            IpAddr::from(routed.backend_v4),
            IpAddr::from(routed.guest_v4),
        ),
        (routed.backend_v6.into(), routed.guest_v6.into()),
    ] {
        let listener = routed.backend_listener(SocketAddr::new(ip, 0));
        let addr = listener.local_addr().unwrap();
        let stream = routed.in_ns(Ns::Guest, || {
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("guest connect to {addr}: {e}"))
        });
        let (_accepted, peer) = listener.accept().expect("accept in the backend");
        // Forwarded, not translated: the backend sees the guest's own address.
        assert_eq!(peer.ip(), guest);
        assert_eq!(stream.local_addr().unwrap().ip(), guest);
    }
}

#[test]
fn host_cannot_see_the_fixture() {
    let routed = Routed::new();
    let host_links = enforcer_tests::must_run("ip", &["-o", "link", "show"]);
    assert!(
        !host_links.contains(&routed.router_guest_if)
            && !host_links.contains(&routed.router_backend_if),
        "a fixture interface is in the host's namespace:\n{host_links}"
    );
    let in_router = routed.in_ns(Ns::Router, || {
        use rustix::net::{AddressFamily, SocketType, netdevice::name_to_index, socket};
        // A socket made here belongs to the router's namespace, where the
        // kernel looks the name up.
        let probe = socket(AddressFamily::INET, SocketType::DGRAM, None).expect("socket");
        name_to_index(&probe, &routed.router_guest_if)
    });
    let in_router =
        in_router.unwrap_or_else(|e| panic!("{} not in the router: {e}", routed.router_guest_if));
    assert_eq!(routed.router_guest_ifindex(), in_router);
}

#[test]
fn reset_and_icmp_reject_refuse_then_accept_restores() {
    let routed = Routed::new();
    for ip in backend_addrs(&routed) {
        // A listener on the port: refusals come from the firewall, not from
        // a missing socket.
        let listener = routed.backend_listener(SocketAddr::new(ip, 0));
        let addr = listener.local_addr().unwrap();
        for verdict in ["reject with tcp reset", "reject"] {
            routed.set_backend_port(addr.port(), verdict);
            let err = routed
                .in_ns(Ns::Guest, || TcpStream::connect(addr))
                .expect_err(&format!("{verdict}: connect to {addr} succeeded"));
            assert_eq!(
                err.kind(),
                ErrorKind::ConnectionRefused,
                "{verdict} on {addr}: {err}"
            );
        }
        routed.set_backend_port(addr.port(), "accept");
        routed
            .in_ns(Ns::Guest, || TcpStream::connect(addr))
            .unwrap_or_else(|e| panic!("connect to {addr} after accept: {e}"));
    }
}

#[test]
fn drop_blackholes_syns() {
    let routed = Routed::new();
    for ip in backend_addrs(&routed) {
        let listener = routed.backend_listener(SocketAddr::new(ip, 0));
        let addr = listener.local_addr().unwrap();
        routed.set_backend_port(addr.port(), "drop");
        let (socket, started) = routed.in_ns(Ns::Guest, || connect_nonblocking(addr));
        assert_eq!(started, Ok(()), "connect to {addr} did not start");
        let mut fds = [PollFd::new(&socket, PollFlags::OUT)];
        let timeout = Timespec::try_from(BLACKHOLE).expect("in range");
        let ready = poll(&mut fds, Some(&timeout)).expect("poll");
        assert_eq!(
            ready,
            0,
            "connect to blackholed {addr} completed (revents {:?})",
            fds[0].revents()
        );
    }
}

#[test]
fn drop_deletes_the_namespaces() {
    let routed = Routed::new();
    let names = [Ns::Guest, Ns::Router, Ns::Backend].map(|ns| routed.name(ns).to_owned());
    let listed = enforcer_tests::must_run("ip", &["netns", "list"]);
    for name in &names {
        assert!(listed.contains(name.as_str()), "{name} missing:\n{listed}");
    }
    drop(routed);
    let listed = enforcer_tests::must_run("ip", &["netns", "list"]);
    for name in &names {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{name} left behind:\n{listed}"
        );
    }
}

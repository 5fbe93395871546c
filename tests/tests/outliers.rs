//! Outlier detection across a policy's destinations, end to end: ten
//! backends of one policy on loopback addresses serving a client loop from
//! the protected cgroup; the breaker's own triggers set too high to trip.
//! A backend refusing half its connects is ejected within two intervals,
//! the healthy ones never; with four bad of ten and `max_open_percent = 20`
//! at most two are ejected at once. A backend whose handshakes wait for
//! SYN retransmissions is ejected by latency.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, Follower},
    exec::Place,
    net::{self, AcceptingServer, free_loopback_port},
    netns::NetNs,
};
use serde_json::Value;

const INTERVAL: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(60);

/// A backend that listens half the time: bound for 50 ms, closed for 50 ms
/// (connects refused), until dropped.
struct Flaky {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Flaky {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let listener = reusable_listener(addr);
                    thread::sleep(Duration::from_millis(50));
                    drop(listener);
                    thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener on `addr` that can be bound again at once: the connections
/// the last one left unaccepted (reset as it closed) may still hold the port.
fn reusable_listener(addr: SocketAddr) -> std::os::fd::OwnedFd {
    use rustix::net::sockopt;
    let socket = net::tcp_socket(true, false);
    sockopt::set_socket_reuseaddr(&socket, true).expect("SO_REUSEADDR");
    sockopt::set_socket_reuseport(&socket, true).expect("SO_REUSEPORT");
    net::bind_fd(&socket, addr).expect("bind the flaky backend");
    net::listen_fd(&socket).expect("listen");
    socket
}

/// The addresses 127.0.`net`.1..=10 at `port`.
fn addresses(net: u8, port: u16) -> Vec<SocketAddr> {
    (1..=10)
        .map(|host| SocketAddr::from((Ipv4Addr::new(127, 0, net, host), port)))
        .collect()
}

/// Healthy backends on `addrs` but those in `bad` (1-based hosts).
fn healthy(addrs: &[SocketAddr], bad: &[u8]) -> Vec<AcceptingServer> {
    addrs
        .iter()
        .zip(1u8..)
        .filter(|(_, host)| !bad.contains(host))
        .map(|(addr, _)| AcceptingServer::serve(TcpListener::bind(addr).expect("bind a backend")))
        .collect()
}

/// Flaky backends on the hosts of `addrs` in `bad`. Started once the
/// clients' process is forked: a child holding a copy of a flaky listener
/// would keep its port listening all along.
fn flaky(addrs: &[SocketAddr], bad: &[u8]) -> Vec<Flaky> {
    bad.iter()
        .map(|host| Flaky::start(addrs[usize::from(*host) - 1]))
        .collect()
}

/// A policy over 127.0.`net`.0/24 that never trips by itself, detecting
/// outliers every [`INTERVAL`] (`outlier` adds keys to its table).
fn policy(name: &str, net: u8, port: u16, max_open_percent: u32, outlier: &str) -> String {
    format!(
        "[[policy]]\nname = \"{name}\"\nmatch = [\"127.0.{net}.0/24:{port}\"]\n\
         failure_threshold = 1000000\nmin_attempts = 1000000\n\
         max_open_percent = {max_open_percent}\n\
         [policy.outlier]\ninterval = \"{}s\"\nbase_ejection = \"30s\"\n{outlier}",
        INTERVAL.as_secs()
    )
}

/// Connects to every backend in turn, every 10 ms, for `run`: each closed at
/// once (refusals and ejections are expected).
fn clients(place: &Place, addrs: Vec<SocketAddr>, run: Duration) {
    let out = place.run_as_nobody(move || {
        let start = Instant::now();
        while start.elapsed() < run {
            for addr in &addrs {
                let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
            }
            thread::sleep(Duration::from_millis(10));
        }
        "done".to_owned()
    });
    assert_eq!(out, "done");
}

fn ejected(events: &[(Duration, Value)], dest: &SocketAddr) -> Vec<Duration> {
    events
        .iter()
        .filter(|(_, e)| e["kind"] == "outlier" && e["dest"] == dest.to_string())
        .map(|(at, _)| *at)
        .collect()
}

#[test]
fn an_outlier_is_ejected_within_two_intervals_healthy_peers_never_and_the_cap_holds() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let port = free_loopback_port();
    // Policy "one": backend 127.0.1.4 refuses half its connects.
    let (one, one_bad) = (addresses(1, port), [4]);
    // Policy "four": four bad of ten, at most 20 % open.
    let (four, four_bad) = (addresses(2, port), [2, 5, 7, 9]);
    let _healthy = [healthy(&one, &one_bad), healthy(&four, &four_bad)];
    // Four of ten failing half their connects pull the peers' mean down
    // too far for the success-rate detector (mean − 1.9 σ ≈ 33 %): the
    // failure percentage finds them.
    let config =
        policy("one", 1, port, 100, "") + &policy("four", 2, port, 20, "failure_percentage = 40\n");
    let d = Daemon::start(&cgroup, &pins, &config);
    let mut follower = Follower::start(&d);
    let place = Place::cgroup(&cgroup);
    let all: Vec<SocketAddr> = one.iter().chain(&four).copied().collect();

    let start = Instant::now();
    let mut events: Vec<(Duration, Value)> = Vec::new();
    let mut most_open = 0;
    thread::scope(|s| {
        let load = s.spawn(|| clients(&place, all.clone(), RUN));
        // The load's child is forked before any CLI runs (see adaptive.rs)
        // and before any flaky listener exists.
        thread::sleep(Duration::from_millis(500));
        let _flaky = [flaky(&one, &one_bad), flaky(&four, &four_bad)];
        while !load.is_finished() {
            let at = start.elapsed();
            events.extend(follower.drain().into_iter().map(|e| (at, e)));
            let status = d.json(&["status", "--policy", "four"]);
            let open = status["destinations"]
                .as_array()
                .map_or(0, |l| l.iter().filter(|d| d["state"] != "closed").count());
            most_open = most_open.max(open);
            thread::sleep(Duration::from_millis(250));
        }
        load.join().expect("the clients");
    });
    events.extend(follower.drain().into_iter().map(|e| (start.elapsed(), e)));

    let bad = one[3];
    let first = ejected(&events, &bad);
    assert!(
        first
            .first()
            .is_some_and(|at| *at <= 2 * INTERVAL + Duration::from_secs(1)),
        "{bad} ejected within two intervals of {INTERVAL:?}: at {first:?}; its status {}; events {:?}; log {}",
        d.status_of(bad),
        events
            .iter()
            .map(|(_, e)| e["kind"].to_string())
            .collect::<Vec<_>>(),
        d.log()
    );
    let evidence = events
        .iter()
        .find(|(_, e)| e["kind"] == "outlier" && e["dest"] == bad.to_string())
        .map(|(_, e)| e["ejection"].clone())
        .expect("the ejection's evidence");
    assert_eq!(evidence["reason"], "success_rate", "{evidence}");
    for healthy in one
        .iter()
        .chain(&four)
        .filter(|a| ![one[3], four[1], four[4], four[6], four[8]].contains(a))
    {
        assert!(
            ejected(&events, healthy).is_empty(),
            "{healthy} is healthy and was ejected: {:?}",
            ejected(&events, healthy)
        );
    }
    assert!(
        most_open <= 2,
        "policy four held {most_open} destinations open at once (max_open_percent = 20 of 10)"
    );
    assert!(
        [four[1], four[4], four[6], four[8]]
            .iter()
            .any(|a| !ejected(&events, a).is_empty()),
        "policy four ejected none of its bad backends"
    );
    let metrics = d.metrics();
    let count = metrics
        .get(
            "enforcer_ejections_total",
            &[("policy", "one"), ("reason", "success_rate")],
        )
        .unwrap_or(0.0);
    assert!(count >= 1.0, "enforcer_ejections_total: {count}");
}

#[test]
fn a_backend_with_slow_handshakes_is_ejected_by_latency() {
    let (cgroup, pins, ns) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    let port = free_loopback_port();
    let addrs = addresses(3, port);
    let _servers: Vec<AcceptingServer> = addrs
        .iter()
        .map(|a| AcceptingServer::bind_in(&ns, *a))
        .collect();
    // Half the SYNs to backend 7 vanish: its handshakes wait for the
    // retransmission, a second or more, where its peers' take microseconds.
    let slow = addrs[6];
    ns.nft(&format!(
        "add table inet slow\n\
         add chain inet slow input {{ type filter hook input priority 0; policy accept; }}\n\
         add rule inet slow input ip daddr {} tcp dport {port} tcp flags syn numgen random mod 2 == 0 drop\n",
        slow.ip()
    ));
    let config = policy(
        "slow",
        3,
        port,
        100,
        "latency_factor = 10.0\nlatency_min_requests = 2\n",
    );
    let d = Daemon::start(&cgroup, &pins, &config);
    let mut follower = Follower::start(&d);
    let place = Place::cgroup(&cgroup).with_netns(&ns);

    let start = Instant::now();
    let mut events: Vec<(Duration, Value)> = Vec::new();
    thread::scope(|s| {
        // Four threads per backend, so that the slow one still completes
        // a few handshakes per interval.
        let load = s.spawn(|| {
            let out = place.run_as_nobody(|| {
                let (pause, timeout) = (Duration::from_millis(40), Duration::from_secs(5));
                net::connect_loop(&addrs, 4, pause, timeout, Duration::from_secs(30));
                "done".to_owned()
            });
            assert_eq!(out, "done");
        });
        while !load.is_finished() {
            let at = start.elapsed();
            events.extend(follower.drain().into_iter().map(|e| (at, e)));
            thread::sleep(Duration::from_millis(250));
        }
        load.join().expect("the clients");
    });
    events.extend(follower.drain().into_iter().map(|e| (start.elapsed(), e)));

    let evidence = events
        .iter()
        .find(|(_, e)| e["kind"] == "outlier" && e["dest"] == slow.to_string())
        .map(|(at, e)| (*at, e["ejection"].clone()));
    let Some((at, evidence)) = evidence else {
        panic!(
            "{slow} was never ejected; its status {}; log {}",
            d.status_of(slow),
            d.log()
        )
    };
    assert_eq!(evidence["reason"], "latency", "{evidence}");
    assert!(
        at <= 4 * INTERVAL + Duration::from_secs(2),
        "ejected at {at:?}: {evidence}"
    );
    for healthy in addrs.iter().filter(|a| **a != slow) {
        assert!(
            ejected(&events, healthy).is_empty(),
            "{healthy} is fast and was ejected: {:?}",
            ejected(&events, healthy)
        );
    }
}

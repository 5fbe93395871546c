//! The latencies adaptive policies learn from, as the kernel sums them per
//! destination (`DestState::signal`): the handshake, the response (first byte
//! the caller sends to the first byte of the answer, measured by the
//! cgroup_skb programs) and the connection's lifetime. Real servers that take
//! a known time to answer, real clients in a scratch cgroup that drop to
//! `nobody` before they act.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{dest::SignalSum, policy::Signal};
use enforcer_tests::{
    cgroup::ScratchCgroup, exec::Place, fixtures, net::AcceptingServer, netns::NetNs,
};

const MS: Duration = Duration::from_millis(1);

/// How a test server behaves on each connection.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Sends a greeting line as soon as it accepts (server-speaks-first).
    greets: bool,
    /// How long it takes to answer a request line.
    think: Duration,
}

/// Serves every connection on its own thread: greet (maybe), read a line,
/// think, answer, close.
fn server(listener: TcpListener, b: Behaviour) -> AcceptingServer {
    AcceptingServer::serve_with(
        listener,
        || {},
        move |conn| {
            thread::spawn(move || {
                let _ = answer(conn, b);
            });
        },
    )
}

fn answer(mut conn: TcpStream, b: Behaviour) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    if b.greets {
        conn.write_all(b"hello\n")?;
    }
    let mut line = String::new();
    BufReader::new(conn.try_clone()?).read_line(&mut line)?;
    thread::sleep(b.think);
    conn.write_all(b"answer\n")
}

/// `n` requests to `addr`, one connection each: connect, wait `pause` (time
/// that is neither the handshake nor the response), send a line, read lines
/// until the answer, hold the connection `hold`, close.
fn requests(place: &Place, addr: SocketAddr, n: usize, pause: Duration, hold: Duration) {
    let out = place.run_as_nobody(move || {
        for _ in 0..n {
            let Ok(mut conn) = TcpStream::connect(addr) else {
                return "connect failed".to_owned();
            };
            conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
            thread::sleep(pause);
            if conn.write_all(b"request\n").is_err() {
                return "send failed".to_owned();
            }
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            while line.trim() != "answer" {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return "no answer".to_owned();
                }
            }
            thread::sleep(hold);
        }
        "ok".to_owned()
    });
    assert_eq!(out, "ok");
}

/// The destination's signal once `n` connections have measured it (the last
/// close may reach the kernel after the client exits).
fn signal_after(enforcer: &Enforcer, key: &enforcer_common::dest::DestKey, n: u64) -> SignalSum {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let signal = enforcer
            .maps()
            .dests
            .get(key)
            .expect("DESTS")
            .map(|s| s.signal)
            .unwrap_or_default();
        if signal.count >= n || Instant::now() > deadline {
            return signal;
        }
        thread::sleep(50 * MS);
    }
}

fn mean(s: &SignalSum) -> Duration {
    Duration::from_nanos(s.sum_ns / s.count.max(1))
}

fn policy(signal: Signal) -> enforcer_common::policy::Policy {
    enforcer_common::policy::Policy {
        signal: signal as u32,
        ..fixtures::base_policy()
    }
}

fn within(what: &str, got: Duration, low: Duration, high: Duration) {
    assert!(
        got >= low && got < high,
        "{what}: {got:?}, want [{low:?}, {high:?})"
    );
}

#[test]
fn the_response_latency_runs_from_the_first_request_byte_to_the_first_answer_byte() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    // A greeting before the request is no answer, and the time the caller
    // waits before it sends is no part of the response.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _server = server(
        listener,
        Behaviour {
            greets: true,
            think: 150 * MS,
        },
    );
    let backoff = fixtures::minute_open();
    fixtures::apply_one(&mut enforcer, addr, policy(Signal::Response), backoff);
    requests(&Place::cgroup(&cgroup), addr, 4, 100 * MS, 50 * MS);
    let key = enforcer_tests::key(addr);
    let signal = signal_after(&enforcer, &key, 4);
    assert_eq!(signal.count, 4, "one measure per connection");
    within("mean response", mean(&signal), 150 * MS, 240 * MS);
}

/// Servers on the same 127.0.0.1 port on the host (`slow`) and in `x`
/// (answering at once).
fn same_address_twice(x: &NetNs, slow: Behaviour) -> (SocketAddr, [AcceptingServer; 2]) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let host = server(listener, slow);
    let ns = x.open();
    let in_x = thread::spawn(move || {
        enforcer_tests::netns::enter_raw(&ns).expect("setns");
        TcpListener::bind(addr).expect("bind in X")
    })
    .join()
    .expect("binding in X");
    let mut fast = server(
        in_x,
        Behaviour {
            greets: false,
            think: Duration::ZERO,
        },
    );
    fast.in_netns(x);
    (addr, [host, fast])
}

#[test]
fn each_signal_measures_its_own_span_and_a_namespace_reusing_the_address_keeps_its_own() {
    let (cgroup, x) = (ScratchCgroup::new(), NetNs::new());
    let mut enforcer = fixtures::attached(&cgroup);
    let host = Place::cgroup(&cgroup);
    let inside = host.clone_with_netns(&x);
    let slow = Behaviour {
        greets: false,
        think: 120 * MS,
    };
    let (pause, hold) = (50 * MS, 100 * MS);
    for (signal, slow_span, fast_span) in [
        // Handshakes on loopback: well under the think time either side.
        (
            Signal::Handshake,
            (Duration::ZERO, 50 * MS),
            (Duration::ZERO, 50 * MS),
        ),
        (
            Signal::Response,
            (120 * MS, 200 * MS),
            (Duration::ZERO, 50 * MS),
        ),
        // Admission to close: the pause, the answer and the hold.
        (Signal::Lifetime, (270 * MS, 400 * MS), (150 * MS, 260 * MS)),
    ] {
        // Another port each round: the destinations start with no signal.
        let (addr, _servers) = same_address_twice(&x, slow);
        fixtures::apply_one(&mut enforcer, addr, policy(signal), fixtures::minute_open());
        requests(&host, addr, 3, pause, hold);
        requests(&inside, addr, 3, pause, hold);
        let (on_host, in_ns) = (
            signal_after(&enforcer, &enforcer_tests::key(addr), 3),
            signal_after(&enforcer, &enforcer_tests::key_in(&x, addr), 3),
        );
        assert_eq!((on_host.count, in_ns.count), (3, 3), "{signal:?}");
        within(
            &format!("{signal:?} on the host"),
            mean(&on_host),
            slow_span.0,
            slow_span.1,
        );
        within(
            &format!("{signal:?} in X"),
            mean(&in_ns),
            fast_span.0,
            fast_span.1,
        );
    }
}

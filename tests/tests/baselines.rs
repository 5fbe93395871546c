//! Learned trip rates (`failure_rate = "auto"`), end to end: backends in a
//! scratch network namespace refuse a random 3 % of handshakes (nftables),
//! then 30 %, while unprivileged clients in the protected cgroup connect to
//! them. The learned policy does not trip over a minute of its normal and
//! trips within one window of the jump; a fixed rate low enough to catch the
//! jump trips on the normal, one high enough to spare the normal misses the
//! jump. The same address in a second namespace, failing 30 % all along,
//! keeps a normal of its own. A learned slow bound (`slow_connect = "auto"`)
//! trips a destination whose handshakes turn slow, which a policy without
//! one counts as successes.

use std::{
    net::SocketAddr,
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

/// The breaker's window, and so one learning step.
const WINDOW: Duration = Duration::from_secs(5);
/// Of the normal, then of the jump.
const NORMAL: Duration = Duration::from_secs(60);
const JUMP: Duration = Duration::from_secs(20);
/// Of fast handshakes, long enough to warm a baseline (5 windows).
const SLOW_NORMAL: Duration = Duration::from_secs(40);

/// Refuses a random `permille` ‰ of the handshakes to `port` in `ns`.
fn refuse(ns: &NetNs, port: u16, permille: u32) {
    ns.tcp_port(
        port,
        &format!("tcp flags syn numgen random mod 1000 < {permille} reject with tcp reset"),
    );
}

/// A policy over 127.0.0.1:`port` that trips on its window's failure share
/// alone (`failure_rate` as given).
fn policy(name: &str, port: u16, failure_rate: &str) -> String {
    format!(
        "[[policy]]\nname = \"{name}\"\nmatch = [\"127.0.0.1/32:{port}\"]\n\
         failure_rate = {failure_rate}\nfailure_threshold = 1000000\n\
         window = \"{}s\"\nmin_attempts = 50\nbaseline_window = \"1m\"\n",
        WINDOW.as_secs()
    )
}

/// `threads` unprivileged clients per address of `addrs`, each connecting
/// and closing at once every `pause`, for `run`.
fn clients(place: &Place, addrs: Vec<SocketAddr>, threads: usize, pause: Duration, run: Duration) {
    let out = place.run_as_nobody(move || {
        // Long enough for a SYN retransmitted twice (3 s): a slow handshake,
        // not a timeout.
        net::connect_loop(&addrs, threads, pause, Duration::from_secs(10), run);
        "done".to_owned()
    });
    assert_eq!(out, "done");
}

/// The destination `addr` of namespace `ns` in a status.
fn dest<'a>(status: &'a Value, addr: &SocketAddr, ns: &NetNs) -> Option<&'a Value> {
    status["destinations"]
        .as_array()?
        .iter()
        .find(|d| d["dest"] == addr.to_string() && d["netns"] == ns.inode())
}

fn tripped_at(events: &[(Duration, Value)], addr: &SocketAddr, ns: &NetNs) -> Vec<Duration> {
    events
        .iter()
        .filter(|(_, e)| {
            e["kind"] == "tripped" && e["dest"] == addr.to_string() && e["netns"] == ns.inode()
        })
        .map(|(at, _)| *at)
        .collect()
}

#[test]
fn a_learned_rate_spares_the_normal_and_trips_on_the_jump_where_fixed_ones_cannot() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let (ns, other) = (NetNs::new(), NetNs::new());
    let ports = [
        free_loopback_port(),
        free_loopback_port(),
        free_loopback_port(),
    ];
    let [learned, low, high] = ports.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let _servers: Vec<AcceptingServer> = [learned, low, high]
        .iter()
        .map(|a| AcceptingServer::bind_in(&ns, *a))
        .chain([AcceptingServer::bind_in(&other, learned)])
        .collect();
    for port in ports {
        refuse(&ns, port, 30);
    }
    refuse(&other, learned.port(), 300);
    let config = policy("learned", learned.port(), "\"auto\"")
        + &policy("low", low.port(), "0.02")
        + &policy("high", high.port(), "0.5");
    let d = Daemon::start(&cgroup, &pins, &config);
    let mut follower = Follower::start(&d);
    let place = Place::cgroup(&cgroup);

    let start = Instant::now();
    let mut events: Vec<(Duration, Value)> = Vec::new();
    let mut normal_status = Value::Null;
    let mut jumped_at = None;
    thread::scope(|s| {
        // Both clients' children are forked before any CLI runs (see
        // adaptive.rs).
        let here = s.spawn(|| {
            clients(
                &place.clone_with_netns(&ns),
                vec![learned, low, high],
                1,
                Duration::from_millis(2),
                NORMAL + JUMP,
            )
        });
        let there = s.spawn(|| {
            clients(
                &place.clone_with_netns(&other),
                vec![learned],
                1,
                Duration::from_millis(2),
                NORMAL + JUMP,
            )
        });
        thread::sleep(Duration::from_millis(500));
        while !(here.is_finished() && there.is_finished()) {
            let at = start.elapsed();
            events.extend(follower.drain().into_iter().map(|e| (at, e)));
            if jumped_at.is_none() && at >= NORMAL {
                normal_status = d.json(&["status"]);
                for port in ports {
                    refuse(&ns, port, 300);
                }
                jumped_at = Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(250));
        }
        here.join().expect("the clients");
        there.join().expect("the other namespace's clients");
    });
    events.extend(follower.drain().into_iter().map(|e| (start.elapsed(), e)));
    let jumped_at = jumped_at.expect("the clients ran past the normal");
    let before = |at: &Duration| *at < jumped_at;

    // The learned normal: about 3 %, warm, tripping well below the cold 50 %.
    let ours = dest(&normal_status, &learned, &ns).expect("the learned destination's status");
    let baseline = &ours["baseline"];
    let share = baseline["failure_share"].as_f64().unwrap_or(-1.0);
    let trip = baseline["trip_rate"].as_f64().unwrap_or(-1.0);
    assert!(
        baseline["warm"] == true && (0.015..0.05).contains(&share) && (0.04..0.1).contains(&trip),
        "after {NORMAL:?} of 3 %: {ours}"
    );
    // The same address in the other namespace learned its own 30 %.
    let theirs = dest(&normal_status, &learned, &other).expect("the other namespace's status");
    let their_share = theirs["baseline"]["failure_share"].as_f64().unwrap_or(-1.0);
    assert!(
        (0.25..0.35).contains(&their_share),
        "the other namespace's normal: {theirs}"
    );

    let learned_trips = tripped_at(&events, &learned, &ns);
    assert!(
        !learned_trips.iter().any(before),
        "the learned rate tripped on the normal at {learned_trips:?} (jump at {jumped_at:?}); {ours}"
    );
    let first = learned_trips.first().copied();
    assert!(
        first.is_some_and(|at| at <= jumped_at + WINDOW + Duration::from_secs(3)),
        "the learned rate tripped at {first:?}, the jump at {jumped_at:?}; status {}; log {}",
        d.status_of(learned),
        d.log()
    );
    eprintln!(
        "learned: {baseline}; first trip {:?} after the jump; a fixed 2 % tripped {} times on the normal",
        first.map(|at| at.saturating_sub(jumped_at)),
        tripped_at(&events, &low, &ns)
            .iter()
            .filter(|at| before(at))
            .count()
    );
    // What fixed rates do with the same traffic: 2 %, low enough to catch
    // the jump, trips on the normal; 50 %, high enough to spare the normal,
    // misses the jump.
    let low_trips = tripped_at(&events, &low, &ns);
    assert!(
        low_trips.iter().any(before),
        "a fixed 2 % never tripped on a 3 % normal: {low_trips:?}"
    );
    let high_trips = tripped_at(&events, &high, &ns);
    assert!(
        high_trips.is_empty(),
        "a fixed 50 % tripped at {high_trips:?} (jump at {jumped_at:?})"
    );

    let metrics = d.metrics();
    let (dest, netns) = (learned.to_string(), ns.inode().to_string());
    let labels = [
        ("dest", dest.as_str()),
        ("netns", netns.as_str()),
        ("policy", "learned"),
    ];
    let rate = metrics.get("enforcer_trip_failure_rate", &labels);
    let share = metrics.get("enforcer_baseline_failure_share", &labels);
    assert!(
        rate.is_some_and(|r| r > 0.0 && r <= 0.5) && share.is_some_and(|s| s > 0.0 && s < 0.1),
        "enforcer_trip_failure_rate {rate:?}, enforcer_baseline_failure_share {share:?}"
    );
}

#[test]
fn a_learned_slow_bound_trips_when_handshakes_turn_slow() {
    let (cgroup, pins, ns) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    let [learned, fixed] =
        [free_loopback_port(), free_loopback_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let _servers = [learned, fixed].map(|a| AcceptingServer::bind_in(&ns, a));
    // Both policies learn their trip rate; one also learns what is slow.
    let config = policy("learned", learned.port(), "\"auto\"")
        + "slow_connect = \"auto\"\n"
        + &policy("fixed", fixed.port(), "\"auto\"");
    let d = Daemon::start(&cgroup, &pins, &config);
    let mut follower = Follower::start(&d);
    let place = Place::cgroup(&cgroup).with_netns(&ns);

    let start = Instant::now();
    let mut events: Vec<(Duration, Value)> = Vec::new();
    let mut normal_status = Value::Null;
    let mut slowed_at = None;
    thread::scope(|s| {
        // Twenty clients each: when a fifth of the handshakes take a second,
        // the window still holds its min_attempts.
        let load = s.spawn(|| {
            let pause = Duration::from_millis(20);
            clients(&place, vec![learned, fixed], 20, pause, SLOW_NORMAL + JUMP)
        });
        thread::sleep(Duration::from_millis(500));
        while !load.is_finished() {
            let at = start.elapsed();
            events.extend(follower.drain().into_iter().map(|e| (at, e)));
            if slowed_at.is_none() && at >= SLOW_NORMAL {
                normal_status = d.json(&["status"]);
                // A fifth of the SYNs vanish: those handshakes wait a second
                // (or three) for the retransmission, and succeed.
                for port in [learned.port(), fixed.port()] {
                    ns.tcp_port(port, "tcp flags syn numgen random mod 5 == 0 drop");
                }
                slowed_at = Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(250));
        }
        load.join().expect("the clients");
    });
    events.extend(follower.drain().into_iter().map(|e| (start.elapsed(), e)));
    let slowed_at = slowed_at.expect("the clients ran past the normal");

    let ours = dest(&normal_status, &learned, &ns).expect("the learned destination's status");
    let bound = ours["baseline"]["slow_connect"].as_str().unwrap_or("none");
    assert!(
        ours["baseline"]["warm"] == true && bound == "1ms",
        "loopback handshakes of tens of µs: the 1 ms floor is the bound; {ours}"
    );
    let trips = tripped_at(&events, &learned, &ns);
    assert!(
        !trips.iter().any(|at| *at < slowed_at),
        "tripped on fast handshakes at {trips:?}; {ours}"
    );
    let first = trips.first().copied();
    assert!(
        first.is_some_and(|at| at <= slowed_at + 2 * WINDOW),
        "slow handshakes from {slowed_at:?}, tripped at {first:?}; status {}",
        d.status_of(learned)
    );
    // Without a slow bound, slow handshakes are successes: the same traffic
    // never trips the other policy.
    let other = tripped_at(&events, &fixed, &ns);
    assert!(
        other.is_empty(),
        "tripped at {other:?} without a slow bound"
    );
    let slow = d.status_of(learned)["slow"].as_u64().unwrap_or(0);
    assert!(slow > 0, "no handshake counted slow");
}

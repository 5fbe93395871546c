//! Abuse of the destination map and of the per-policy counts: a process that
//! creates destinations as fast as it can, destinations nobody connects to any
//! more, counts left wrong by an older daemon, and policies removed under
//! their destinations. The map stays bounded and the counts exact.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use enforcer_common::{
    control::{self, when},
    policy::PolicyStats,
};
use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::Daemon,
    exec::Place,
    fixtures,
    net::{AcceptingServer, RefusingPort},
};
use serde_json::Value;

/// Polls `check` every 100 ms until it returns `Some`; fails with `what` (and
/// the daemon's log) after a deadline far beyond any scan interval the tests
/// configure.
fn eventually<T>(d: &Daemon, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after 60 s\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every destination `status` shows, by address.
fn status(d: &Daemon) -> Vec<Value> {
    d.json(&["status"])["destinations"]
        .as_array()
        .expect("a list")
        .clone()
}

/// The destination at `addr`, if tracked.
fn find(d: &Daemon, addr: SocketAddr) -> Option<Value> {
    Some(d.status_of(addr)).filter(|v| !v.is_null())
}

/// Waits until `addr` is no longer tracked, then checks that its policy
/// counts nothing any more (`why` says why it must not).
fn forgotten(d: &Daemon, addr: SocketAddr, what: &str, why: &str) {
    eventually(d, what, || find(d, addr).is_none().then_some(()));
    let p = policy(d);
    assert_eq!(
        (p["tracked"].as_u64(), p["open_destinations"].as_u64()),
        (Some(0), Some(0)),
        "{why}"
    );
}

/// A port on 127.0.0.1 that refuses, and a daemon whose policy `name` trips
/// it on its first refusal and keeps it open for `open`.
fn refusing_daemon(
    name: &str,
    open: (&str, &str),
    daemon_keys: &str,
) -> (ScratchCgroup, PinDir, RefusingPort, Daemon) {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let (addr, (open, open_max)) = (refusing.addr, open);
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"{name}\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1\nopen = \"{open}\"\nopen_max = \"{open_max}\"\n"
        ),
        daemon_keys,
        false,
    );
    (cgroup, pins, refusing, d)
}

/// The first policy as `policy list` shows it.
fn policy(d: &Daemon) -> Value {
    d.json(&["policy", "list"])[0].clone()
}

fn evicted(d: &Daemon, reason: &str) -> f64 {
    d.metrics()
        .get("enforcer_dests_evicted_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no enforcer_dests_evicted_total{{reason={reason}}}"))
}

/// A server that keeps every connection open until dropped.
fn holding_server() -> AcceptingServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut held = Vec::new();
    AcceptingServer::serve_with(listener, || {}, move |conn| held.push(conn))
}

/// A connection to `addr` opened from inside `cgroup` (so it holds a slot of
/// its destination), kept open by a child process until dropped.
struct HeldConnection(Child);

impl HeldConnection {
    fn open(cgroup: &ScratchCgroup, addr: SocketAddr) -> Self {
        let mut command = Command::new("bash");
        command
            .args([
                "-c",
                &format!(
                    "exec 3<>/dev/tcp/{}/{} && echo connected && exec sleep 600",
                    addr.ip(),
                    addr.port()
                ),
            ])
            .stdout(Stdio::piped());
        let mut child = Place::cgroup(cgroup)
            .command(command)
            .spawn()
            .expect("spawning bash");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
            &mut line,
        )
        .expect("reading from bash");
        assert_eq!(line.trim(), "connected", "bash could not connect to {addr}");
        Self(child)
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_destination_flood_is_evicted_idle_first_and_new_destinations_are_tracked_again() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let (held, used, fresh) = (holding_server(), holding_server(), holding_server());
    // A port nothing listens on, on every address: each loopback address
    // refuses, a new destination per address, tripped at once.
    let refusing = RefusingPort::bind("0.0.0.0:0".parse().unwrap());
    let port = refusing.addr.port();
    // Capacity 64: eviction starts at 58 entries and goes down to 51.
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        "[[policy]]\nname = \"loopback\"\nmatch = [\"127.0.0.0/8:*\"]\nfailure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\n",
        "dests_capacity = 64\ndests_high_water = 0.9\ndests_low_water = 0.8\ngc_idle = \"10m\"",
        false,
    );
    let place = Place::cgroup(&cgroup);
    let _connection = HeldConnection::open(&cgroup, held.addr);
    assert_eq!(place.connects(used.addr, 3), vec![Ok(()); 3]);
    eventually(&d, "the held connection holds its slot", || {
        find(&d, held.addr).filter(|v| v["active"] == 1)
    });

    let flood = place.run_as_nobody(|| {
        let refused = (0..256u32)
            .filter(|i| {
                let ip = Ipv4Addr::from(0x7f01_0000 + i);
                std::net::TcpStream::connect(SocketAddr::new(ip.into(), port)).is_err()
            })
            .count();
        refused.to_string()
    });
    assert_eq!(flood, "256", "every flooded destination refuses");
    // The one in real use goes on being used.
    assert_eq!(place.connects(used.addr, 2), vec![Ok(()); 2]);

    // A new destination is tracked again once the scan has made room.
    eventually(&d, "a new destination is tracked again", || {
        assert_eq!(place.connects(fresh.addr, 1), vec![Ok(())]);
        find(&d, fresh.addr)
    });
    assert!(
        evicted(&d, "map_pressure") >= 13.0,
        "64 entries down to 51: {}",
        d.log()
    );
    assert!(
        d.log().contains("destination map at its high-water mark"),
        "the eviction is logged: {}",
        d.log()
    );
    // The busy destinations were never evicted: same entries, counters intact.
    let h = find(&d, held.addr).expect("the destination with a connection stays");
    assert_eq!(
        (h["active"].as_u64(), h["attempts"].as_u64()),
        (Some(1), Some(1))
    );
    let u = find(&d, used.addr).expect("the destination in use stays");
    assert_eq!(u["attempts"], 5, "never evicted and re-created");
    // What left were flooded destinations (one connect each, tripped).
    let flooded = status(&d)
        .iter()
        .filter(|v| v["dest"].as_str().is_some_and(|a| a.starts_with("127.1.")))
        .count();
    assert!(flooded < 62, "{flooded} flooded destinations left");
    let p = policy(&d);
    assert_eq!(
        p["tracked"].as_u64(),
        Some(status(&d).len() as u64),
        "the policy's count follows the evictions"
    );
}

#[test]
fn open_destinations_nobody_connects_to_are_forgotten_after_open_max_and_gc_idle() {
    let (cgroup, _pins, refusing, d) = refusing_daemon("p", ("1s", "2s"), "gc_idle = \"10s\"");
    let addr = refusing.addr;
    let refused = Place::cgroup(&cgroup).run_as_nobody(|| {
        std::net::TcpStream::connect(addr)
            .map_or_else(|e| e.raw_os_error().unwrap_or(0), |_| 0)
            .to_string()
    });
    assert_eq!(refused, libc::ECONNREFUSED.to_string());
    let tripped = find(&d, addr).expect("tracked");
    assert_eq!(tripped["state"], "open");
    assert_eq!(policy(&d)["open_destinations"], 1);
    // Idle for open_max + gc_idle = 12 s (its open period long over): gone.
    forgotten(
        &d,
        addr,
        "the idle open destination is forgotten",
        "its open count given back with it",
    );
    assert_eq!(evicted(&d, "idle_open"), 1.0);
    assert_eq!(evicted(&d, "idle_closed"), 0.0);
}

#[test]
fn the_scan_corrects_policy_counts_a_stale_daemon_left_wrong() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let server = holding_server();
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        &format!("[[policy]]\nname = \"p\"\nmatch = [\"{}\"]\n", server.addr),
        "gc_idle = \"10s\"",
        false,
    );
    // A connection held open: the destination stays tracked (and CLOSED)
    // whatever the scans decide.
    let _connection = HeldConnection::open(&cgroup, server.addr);
    eventually(&d, "the destination is tracked", || find(&d, server.addr));
    let p = policy(&d);
    assert_eq!(
        (p["tracked"].as_u64(), p["open_destinations"].as_u64()),
        (Some(1), Some(0))
    );
    // What a daemon that lost count would leave: one destination too few
    // tracked, two open that are not.
    let id = p["id"].as_u64().expect("an id") as u32;
    d.write_policy_stats(
        id,
        PolicyStats {
            tracked: 0,
            open: 2,
            guard_refusals: 0,
        },
    );
    assert_eq!(policy(&d)["open_destinations"], 2, "the drift is real");
    eventually(&d, "the counts are corrected", || {
        let p = policy(&d);
        (p["tracked"] == 1 && p["open_destinations"] == 0).then_some(())
    });
    let corrections = d
        .metrics()
        .get(
            "enforcer_policy_count_corrections_total",
            &[("policy", "p")],
        )
        .expect("the corrections metric");
    assert_eq!(corrections, 1.0, "one correction: {}", d.log());
    assert!(
        d.log().contains("tracked 0 -> 1, open 2 -> 0"),
        "the correction is logged: {}",
        d.log()
    );
}

#[test]
fn a_destination_of_a_removed_policy_does_not_stay_open_under_its_reused_id() {
    let (cgroup, _pins, refusing, d) = refusing_daemon("old", ("1h", "1h"), "gc_idle = \"10m\"");
    let other = AcceptingServer::bind("127.0.0.1:0");
    let addr = refusing.addr;
    assert_eq!(
        Place::cgroup(&cgroup).connects(addr, 1),
        vec![Err(libc::ECONNREFUSED)]
    );
    assert_eq!(find(&d, addr).expect("tracked")["state"], "open");
    let old_id = policy(&d)["id"].clone();
    // The whole policy set replaced: the new policy takes the freed id.
    let file = std::env::temp_dir().join(enforcer_tests::unique_name("policies-"));
    std::fs::write(
        &file,
        format!("[[policy]]\nname = \"new\"\nmatch = [\"{}\"]\n", other.addr),
    )
    .expect("writing the policy file");
    let applied = d.cli(&["policy", "apply", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(applied.status.success(), "{applied:?}");
    assert_eq!(policy(&d)["id"], old_id, "the id is reused");
    // The next scan (the policy set changed: at once) forgets it; until then
    // the kernel would reset it at its next connect.
    forgotten(
        &d,
        addr,
        "the removed policy's destination is forgotten",
        "the new policy inherits none of its counts",
    );
    assert_eq!(evicted(&d, "policy_gone"), 1.0);
    assert!(
        d.log().contains("removed or replaced policies"),
        "{}",
        d.log()
    );
}

#[test]
fn policy_counts_stop_at_zero_instead_of_wrapping() {
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let server = AcceptingServer::bind("127.0.0.1:0");
    fixtures::apply_one(
        &mut enforcer,
        server.addr,
        fixtures::base_policy(),
        fixtures::minute_open(),
    );
    assert_eq!(
        Place::cgroup(&cgroup).connects(server.addr, 1),
        vec![Ok(())]
    );
    let id = fixtures::POLICY_ID;
    let counts = |e: &enforcer::bpf::Enforcer| {
        let s = e.maps().policy_stats.get(id).unwrap();
        (s.tracked, s.open)
    };
    let run = |e: &enforcer::bpf::Enforcer, command| e.control().run(&command).unwrap();
    assert_eq!(counts(&enforcer), (1, 0));
    // A correction larger than the count: 0, not 2^64 - 4.
    run(&enforcer, control::Command::adjust_policy_stats(id, -5, -1));
    assert_eq!(counts(&enforcer), (0, 0));
    let key = enforcer_tests::key(server.addr);
    let last = eventually_idle(&enforcer, &key);
    // Forgetting a destination its policy no longer counts leaves 0.
    assert_eq!(
        run(&enforcer, control::Command::forget(key, last - 1, 0)),
        enforcer::bpf::Applied::NotApplicable,
        "connected to after the cut-off: it stays"
    );
    assert_eq!(
        run(
            &enforcer,
            control::Command::forget(key, last, when::OPEN_TOO)
        ),
        enforcer::bpf::Applied::Applied
    );
    assert!(enforcer.maps().dests.get(&key).unwrap().is_none());
    assert_eq!(counts(&enforcer), (0, 0), "no wrap below zero");
    run(&enforcer, control::Command::adjust_policy_stats(id, 2, 1));
    assert_eq!(counts(&enforcer), (2, 1), "raised by the deltas");
}

/// The destination's last connect, once its connection is closed and its
/// slot released (sockets close asynchronously).
fn eventually_idle(
    enforcer: &enforcer::bpf::Enforcer,
    key: &enforcer_common::dest::DestKey,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = enforcer.maps().dests.get(key).unwrap().expect("tracked");
        if s.breaker.active == 0 && s.breaker.pending == 0 {
            return s.last_attempt_ns;
        }
        assert!(
            Instant::now() < deadline,
            "slot still held: {:?}",
            s.breaker
        );
        thread::sleep(Duration::from_millis(50));
    }
}

//! Destinations per network namespace, through the daemon: `status`, metrics
//! and `--netns` name the namespace next to the address, and healing probes a
//! destination from inside its own namespace (never from the host's for
//! someone else's `127.0.0.1`), at most `max_healers` at once.

use std::{net::SocketAddr, thread};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, Follower},
    exec::Place,
    fixtures::ECONNREFUSED,
    net::{RefusingPort, free_loopback_port},
    netns::{CountingServer, NetNs, own_inode},
    wait,
};
use serde_json::Value;

const EHOSTUNREACH: i32 = 113;

/// A policy for `addrs` that trips on the first refusal, stays open (1 h)
/// unless healed, and heals every 200 ms with one successful probe.
fn healing_policy(addrs: &[SocketAddr]) -> String {
    let matches: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[policy]]\nname = \"healed\"\nmatch = [{}]\nfailure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\nclose_after = 1\nerrno = \"EHOSTUNREACH\"\nheal = true\nheal_interval = \"200ms\"\n",
        matches.join(", ")
    )
}

/// The status entries of `addr`, one per namespace it is tracked in.
fn entries(d: &Daemon, addr: SocketAddr) -> Vec<Value> {
    d.json(&["status", &addr.to_string()])["destinations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The entry of `addr` in the namespace with `inode`.
fn entry(d: &Daemon, addr: SocketAddr, inode: u64) -> Option<Value> {
    entries(d, addr)
        .into_iter()
        .find(|e| e["netns"].as_u64() == Some(inode))
}

fn metric(d: &Daemon, name: &str, labels: &[(&str, &str)]) -> f64 {
    d.metrics().get(name, labels).unwrap_or(0.0)
}

#[test]
fn a_trip_inside_a_namespace_shows_its_inode_and_heals_only_from_inside_it() {
    let (cgroup, pins, x) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    // Nothing listens on this port, on the host or in X.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
    let d = Daemon::start(&cgroup, &pins, &healing_policy(&[addr]));
    let in_x = Place::cgroup(&cgroup).with_netns(&x);
    assert_eq!(
        in_x.connects(addr, 2),
        [Err(ECONNREFUSED as i32), Err(EHOSTUNREACH)],
        "X's own 127.0.0.1 refuses, then the circuit does"
    );

    // Named by X's inode (as `stat -L -c %i /run/netns/X` prints it), once the
    // daemon has found X.
    wait::until_true("the destination shows X's inode", || {
        entry(&d, addr, x.inode()).is_some()
    });
    let e = entry(&d, addr, x.inode()).unwrap();
    assert_eq!(e["netns_name"], x.name.as_str());
    assert_eq!(e["netns_status"], "present");
    assert_eq!(e["state"], "open");
    assert_eq!(entries(&d, addr).len(), 1, "tracked in X only");
    let table = d.ok(&["status"]);
    assert!(
        table.contains(&format!("{} ({})", x.inode(), x.name)),
        "{table}"
    );
    let inode = x.inode().to_string();
    let labels = [
        ("dest", addr.to_string()),
        ("netns", inode.clone()),
        ("policy", "healed".into()),
    ];
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(metric(&d, "enforcer_destination_state", &labels), 1.0);

    // The host's 127.0.0.1:P comes up: a different service. Probes keep
    // failing (made from X) and never touch it.
    let host = CountingServer::bind(None, addr);
    let failed = |d: &Daemon| metric(d, "enforcer_healing_probes_total", &[("result", "failed")]);
    let before = failed(&d);
    wait::until_true("three more failed probes", || failed(&d) >= before + 3.0);
    assert_eq!(host.accepted(), 0, "a probe came from the host's namespace");
    assert_eq!(entry(&d, addr, x.inode()).unwrap()["state"], "open");
    // The host's own destination of that name is its own, and shown as the host's.
    assert_eq!(Place::cgroup(&cgroup).connects(addr, 1), [Ok(())]);
    let here = entry(&d, addr, own_inode()).expect("tracked in the host's namespace");
    assert_eq!(
        (here["state"].as_str(), here["netns_status"].as_str()),
        (Some("closed"), Some("host"))
    );
    drop(host);

    // X's own service comes up: healed from inside X, with no client traffic.
    let attempts = entry(&d, addr, x.inode()).unwrap()["attempts"].clone();
    let service = CountingServer::bind(Some(&x), addr);
    wait::until_true("healed from inside X", || {
        entry(&d, addr, x.inode()).is_some_and(|e| e["state"] == "closed")
    });
    assert!(service.accepted() >= 1);
    assert!(
        metric(
            &d,
            "enforcer_healing_probes_total",
            &[("result", "reached")]
        ) >= 1.0
    );
    assert_eq!(entry(&d, addr, x.inode()).unwrap()["attempts"], attempts);
    assert_eq!(in_x.connects(addr, 1), [Ok(())]);
}

#[test]
fn healing_skips_and_counts_destinations_whose_namespace_is_gone_or_unknown() {
    let (cgroup, pins, x) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    let addr = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
    let d = Daemon::start(&cgroup, &pins, &healing_policy(&[addr]));
    let skipped = |why: &str| metric(&d, "enforcer_healing_skipped_total", &[("reason", why)]);
    let healers = || metric(&d, "enforcer_healers", &[]);
    let here = Place::cgroup(&cgroup);
    assert_eq!(
        here.clone_with_netns(&x).connects(addr, 1),
        [Err(ECONNREFUSED as i32)]
    );
    wait::until_true("X's destination is probed", || healers() == 1.0);
    let (x_inode, x_name) = (x.inode(), x.name.clone());
    drop(x);

    // A namespace only a thread of this test holds: no /proc/PID/ns/net and
    // no name lead to it, so the daemon cannot find it. A trip there makes
    // the daemon look again, and that look also finds X gone.
    let (tripped_tx, tripped) = std::sync::mpsc::channel();
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    thread::scope(|scope| {
        let here = &here;
        scope.spawn(move || {
            // SAFETY: a new network namespace for this thread alone, which ends
            // with the scope; the descriptor table is not unshared.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("unshare");
            enforcer_tests::must_run("ip", &["link", "set", "lo", "up"]);
            tripped_tx.send(here.connects(addr, 1)).unwrap();
            let _ = stop_rx.recv();
        });
        assert_eq!(tripped.recv().unwrap(), [Err(ECONNREFUSED as i32)]);
        wait::until_true("skips counted", || {
            skipped("netns_unknown") == 1.0 && skipped("netns_gone") == 1.0
        });
        assert_eq!(healers(), 0.0, "neither is probed");
        let all = entries(&d, addr);
        let gone = all.iter().find(|e| e["netns"].as_u64() == Some(x_inode));
        let gone = gone.expect("X's destination is still shown, with X's inode");
        assert_eq!(
            (gone["netns_status"].as_str(), gone["netns_name"].as_str()),
            (Some("gone"), Some(x_name.as_str()))
        );
        let unknown = all
            .iter()
            .find(|e| e["netns"].is_null())
            .expect("the hidden one");
        assert_eq!(unknown["netns_status"], "unknown");
        let dest = addr.to_string();
        let labels = [
            ("dest", dest.as_str()),
            ("netns", "unknown"),
            ("policy", "healed"),
        ];
        assert_eq!(metric(&d, "enforcer_destination_state", &labels), 1.0);
        stop.send(()).unwrap();
    });
}

#[test]
fn status_and_reset_take_a_namespace_and_refuse_a_bad_one() {
    let (cgroup, pins, x) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let policy = format!(
        "[[policy]]\nname = \"p\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\nerrno = \"EHOSTUNREACH\"\n"
    );
    let d = Daemon::start(&cgroup, &pins, &policy);
    let (here, in_x) = (
        Place::cgroup(&cgroup),
        Place::cgroup(&cgroup).with_netns(&x),
    );
    assert_eq!(here.connects(addr, 2)[1], Err(EHOSTUNREACH));
    assert_eq!(in_x.connects(addr, 2)[1], Err(EHOSTUNREACH));
    wait::until_true("both namespaces shown", || {
        entry(&d, addr, x.inode()).is_some() && entry(&d, addr, own_inode()).is_some()
    });
    let only = |netns: &str| -> Vec<Value> {
        d.json(&["status", "--netns", netns])["destinations"]
            .as_array()
            .cloned()
            .unwrap()
    };
    let xs = only(&x.name);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0]["netns"], x.inode());
    let hosts = only(&own_inode().to_string());
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["netns_status"], "host");

    let a = addr.to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["status", "--netns", "a/b"], "netns: `a/b`"),
        (&["status", "--netns", ""], "netns"),
        (&["reset", &a, "--netns", "0"], "netns: `0`"),
        (
            &["reset", &a, "--netns", "1"],
            "netns: no network namespace with inode 1",
        ),
        (
            &["reset", &a, "--netns", "nosuchns"],
            "netns: no network namespace named `nosuchns`",
        ),
        (&["trip", &a, "--netns", &x.name], "--netns"),
    ];
    for (args, want) in cases {
        let out = d.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want `{want}` in: {err}");
    }
    for inode in [x.inode(), own_inode()] {
        assert_eq!(
            entry(&d, addr, inode).unwrap()["state"],
            "open",
            "nothing changed"
        );
    }

    // One namespace: X's is closed, the host's stays open.
    d.ok(&["reset", &a, "--netns", &x.name]);
    assert_eq!(entry(&d, addr, x.inode()).unwrap()["state"], "closed");
    assert_eq!(entry(&d, addr, own_inode()).unwrap()["state"], "open");
    assert_eq!(
        in_x.connects(addr, 1),
        [Err(ECONNREFUSED as i32)],
        "X's own answer"
    );
    assert_eq!(
        here.connects(addr, 1),
        [Err(EHOSTUNREACH)],
        "still open here"
    );
    // Every namespace.
    assert_eq!(in_x.connects(addr, 1), [Err(EHOSTUNREACH)], "X open again");
    d.ok(&["reset", &a]);
    for inode in [x.inode(), own_inode()] {
        assert_eq!(entry(&d, addr, inode).unwrap()["state"], "closed");
    }
}

#[test]
fn healers_are_bounded_most_recent_trips_first_and_the_rest_counted() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let ports: Vec<RefusingPort> = (0..4).map(|_| RefusingPort::loopback_v4()).collect();
    let addrs: Vec<SocketAddr> = ports.iter().map(|p| p.addr).collect();
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        &healing_policy(&addrs),
        "max_healers = 2",
        false,
    );
    let here = Place::cgroup(&cgroup);
    // Tripped in this order: 0 is the oldest, 3 the most recent.
    for addr in &addrs {
        assert_eq!(here.connects(*addr, 1), [Err(ECONNREFUSED as i32)]);
        wait::until_true("the trip is seen", || d.dest(*addr)["state"] == "open");
    }
    let skipped = |d: &Daemon| {
        metric(
            d,
            "enforcer_healing_skipped_total",
            &[("reason", "max_healers")],
        )
    };
    let healers = |d: &Daemon| metric(d, "enforcer_healers", &[]);
    wait::until_true("two skipped", || skipped(&d) == 2.0);

    // The two oldest come back but are not probed: the two most recent hold
    // both healers, failing.
    let mut ports = ports;
    let (newest, oldest): (Vec<RefusingPort>, Vec<RefusingPort>) = {
        let newest = ports.split_off(2);
        (newest, ports)
    };
    let back: Vec<CountingServer> = oldest
        .into_iter()
        .map(|p| {
            let addr = p.addr;
            drop(p);
            CountingServer::bind(None, addr)
        })
        .collect();
    let failed = |d: &Daemon| metric(d, "enforcer_healing_probes_total", &[("result", "failed")]);
    let before = failed(&d);
    wait::until_true("ten more failed probes", || {
        assert!(healers(&d) <= 2.0, "more than max_healers");
        failed(&d) >= before + 10.0
    });
    for (server, addr) in back.iter().zip(&addrs) {
        assert_eq!(server.accepted(), 0, "{addr} was probed");
        assert_eq!(d.dest(*addr)["state"], "open");
    }
    assert_eq!(healers(&d), 2.0);

    // The most recent comes back: healed; its healer goes to the next most
    // recent (1, back already), then to the oldest.
    let mut events = Follower::start(&d);
    let mut newest = newest;
    let most_recent = newest.pop().unwrap().addr;
    let _up = CountingServer::bind(None, most_recent);
    let closed: Vec<String> = (0..3)
        .map(|_| {
            events.next_where(|e| e["kind"] == "closed")["dest"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        closed,
        [
            addrs[3].to_string(),
            addrs[1].to_string(),
            addrs[0].to_string()
        ],
        "healed in the order of their trips, newest first"
    );
    assert_eq!(d.dest(addrs[2])["state"], "open", "still down");
    assert_eq!(skipped(&d), 2.0, "each counted once");
    drop(newest);
}

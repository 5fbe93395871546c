//! The daemon and its CLI, driven as an operator would: the real binary, a
//! scratch cgroup, a private bpffs, real connects.

use std::{
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, enforcer},
    exec::Place,
    fixtures::ECONNREFUSED,
    net::{AcceptingServer, RefusingPort},
    netns::own_inode,
    wait,
};

const EHOSTUNREACH: i32 = 113;

/// No policies: tests add theirs through the CLI.
const NO_POLICIES: &str = "policy = []";

/// Results of `n` connects from a child in the cgroup: `Ok` or the errno.
fn connects(cgroup: &ScratchCgroup, addr: SocketAddr, n: usize) -> Vec<Result<(), i32>> {
    Place::cgroup(cgroup).connects(addr, n)
}

fn policy_set(d: &Daemon, name: &str, addr: SocketAddr, extra: &[&str]) {
    let m = format!("match={addr}");
    let mut args = vec!["policy", "set", name, &m];
    args.extend_from_slice(extra);
    d.ok(&args);
}

#[test]
fn a_policy_set_with_the_cli_trips_and_shows_in_status_and_metrics() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    // The programs' run counts are opt-in (host-wide statistics).
    let mut d = Daemon::start_with(&cgroup, &pins, NO_POLICIES, "bpf_run_stats = true", false);
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    policy_set(
        &d,
        "local",
        addr,
        // Open long enough to outlast the restart below, however slow the
        // machine (the 6.1 run is emulated).
        &[
            "failure_threshold=2",
            "errno=EHOSTUNREACH",
            "open=1h",
            "open_max=1h",
        ],
    );
    let list = d.json(&["policy", "list"]);
    assert_eq!(list[0]["name"], "local");
    assert_eq!(list[0]["failure_threshold"], 2);

    assert_eq!(
        connects(&cgroup, addr, 3),
        [
            Err(ECONNREFUSED as i32),
            Err(ECONNREFUSED as i32),
            Err(EHOSTUNREACH)
        ]
    );
    let dest = d.dest(addr);
    assert_eq!(dest["state"], "open");
    assert_eq!(dest["policy"], "local");
    assert_eq!(dest["failures"]["refused"], 2);
    assert_eq!(dest["rejections"]["circuit"], 1);
    let table = d.ok(&["status"]);
    assert!(
        table.contains(&addr.to_string()) && table.contains("open"),
        "{table}"
    );

    let m = d.metrics();
    // The daemon's namespace is the test's: its destinations are named by its inode.
    let labels = [
        ("dest", addr.to_string()),
        ("netns", own_inode().to_string()),
        ("policy", "local".into()),
    ];
    let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(m.get("enforcer_destination_state", &l), Some(1.0));
    assert_eq!(m.get("enforcer_connect_attempts_total", &l), Some(2.0));
    let mut refused = l.clone();
    refused.push(("reason", "refused"));
    assert_eq!(
        m.get("enforcer_connect_failures_total", &refused),
        Some(2.0)
    );
    let mut circuit = l.clone();
    circuit.push(("cause", "circuit"));
    assert_eq!(m.get("enforcer_rejections_total", &circuit), Some(1.0));
    // The latency histograms are encoded on a thread of their own and
    // written after the other families, before the end marker.
    assert!(
        m.get("enforcer_connect_latency_seconds_count", &l)
            .is_some(),
        "the destination's latency histogram: {:?}",
        m.names()
    );
    assert_eq!(m.get("enforcer_tracked_destinations", &[]), Some(1.0));
    assert_eq!(
        m.get("enforcer_policy_open_destinations", &[("policy", "local")]),
        Some(1.0)
    );
    assert!(
        m.get(
            "enforcer_bpf_program_runs_total",
            &[("program", "gate_connect4")]
        )
        .is_some_and(|n| n >= 3.0)
    );
    // The same through the CLI.
    let text = d.ok(&["metrics"]);
    assert!(text.contains("enforcer_destination_state"), "{text}");
    assert!(
        text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1,
        "one end marker, last: {text}"
    );

    // A policy set at runtime survives a restart on the same configuration file.
    d.kill9();
    d.spawn();
    assert!(d.log().contains("restored 1 policies"), "{}", d.log());
    assert_eq!(d.json(&["policy", "list"])[0]["name"], "local");
    assert_eq!(
        connects(&cgroup, addr, 1),
        [Err(EHOSTUNREACH)],
        "still enforced"
    );
}

#[test]
fn trip_reset_disable_pause_and_resume_change_what_connect_sees() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::start(&cgroup, &pins, NO_POLICIES);
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let a = addr.to_string();
    policy_set(&d, "local", addr, &["errno=EHOSTUNREACH"]);
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())]);

    d.ok(&["trip", &a]);
    assert_eq!(connects(&cgroup, addr, 1), [Err(EHOSTUNREACH)], "tripped");
    TcpStream::connect(addr).expect("outside the cgroup nothing changes");
    d.ok(&["reset", &a]);
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())], "reset");

    d.ok(&["trip", &a, "--for", "1s"]);
    assert_eq!(connects(&cgroup, addr, 1), [Err(EHOSTUNREACH)]);
    thread::sleep(Duration::from_millis(1_200));
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())], "the trip expired");

    d.ok(&["trip", &a]);
    d.ok(&["disable", &a]);
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())], "disabled wins");
    assert_eq!(d.dest(addr)["override"], "disabled");
    d.ok(&["reset", &a]);

    d.ok(&["trip", &a]);
    d.ok(&["pause"]);
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())], "paused");
    assert_eq!(d.json(&["status"])["paused"], true);
    d.ok(&["resume"]);
    assert_eq!(connects(&cgroup, addr, 1), [Err(EHOSTUNREACH)], "resumed");
}

#[test]
fn kill_9_keeps_enforcing_the_restart_adopts_and_uninstall_removes_everything() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let policy = format!(
        "[[policy]]\nname = \"local\"\nmatch = [\"{addr}\"]\nfailure_threshold = 2\nopen = \"1h\"\nopen_max = \"1h\"\nerrno = \"EHOSTUNREACH\"\n"
    );
    let mut d = Daemon::start(&cgroup, &pins, &policy);
    assert_eq!(connects(&cgroup, addr, 3)[2], Err(EHOSTUNREACH));
    let before = d.dest(addr);

    d.kill9();
    // The destination is back, but the circuit is open and the kernel still says so.
    let server = AcceptingServer::serve(refusing.listen());
    assert_eq!(
        connects(&cgroup, addr, 1),
        [Err(EHOSTUNREACH)],
        "enforced with the daemon dead"
    );

    d.spawn();
    assert!(d.log().contains("adopted"), "{}", d.log());
    let after = d.dest(addr);
    assert_eq!(after["state"], "open");
    assert_eq!(after["failures"], before["failures"], "no counter lost");
    assert_eq!(after["rejections"]["circuit"], 2);
    // Adopted, not attached twice: one rejection counted per connect.
    assert_eq!(connects(&cgroup, addr, 1), [Err(EHOSTUNREACH)]);
    assert_eq!(d.dest(addr)["rejections"]["circuit"], 3);

    // A second daemon on the same pins refuses to start.
    let second = enforcer(&["run", "--config", d.config.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another enforcer daemon"));

    d.uninstall();
    assert!(d.wait_exit().success());
    assert!(!d.pin_dir.exists(), "pins left in {}", d.pin_dir.display());
    // Nothing attached any more: the destination answers for itself.
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())]);
    drop(server);
    let attached = cgroup.attached_programs();
    assert!(attached.is_empty(), "still attached");
}

#[test]
fn detach_on_exit_leaves_nothing_behind() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let mut d = Daemon::start(&cgroup, &pins, NO_POLICIES);
    d.kill9();
    // Restart with --detach-on-exit, then SIGTERM.
    let child = std::process::Command::new(enforcer_tests::daemon::binary())
        .args(["run", "--detach-on-exit", "--config"])
        .arg(&d.config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while enforcer_tests::daemon::http_get(d.metrics, "/readyz").is_none() {
        assert!(Instant::now() < deadline, "not ready");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = kill_process(Pid::from_child(&child), Signal::TERM);
    let status = {
        let mut c = child;
        c.wait().unwrap()
    };
    assert!(status.success());
    assert!(!d.pin_dir.exists());
    let attached = cgroup.attached_programs();
    assert!(attached.is_empty(), "still attached: {attached}");
}

#[test]
fn uninstall_without_a_daemon_removes_the_pins_it_left() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let policy = format!(
        "[[policy]]\nname = \"p\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1\nerrno = \"EHOSTUNREACH\"\n"
    );
    let mut d = Daemon::start(&cgroup, &pins, &policy);
    assert_eq!(connects(&cgroup, addr, 2)[1], Err(EHOSTUNREACH));
    d.kill9();
    assert!(d.pin_dir.exists());
    let config = d.config.to_str().unwrap().to_owned();
    let socket = d.socket.to_str().unwrap().to_owned();
    let out = enforcer(&["uninstall", "--config", &config, "--socket", &socket]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.pin_dir.exists());
    let attached = cgroup.attached_programs();
    assert!(attached.is_empty(), "still attached: {attached}");
    assert_eq!(
        connects(&cgroup, addr, 1),
        [Err(ECONNREFUSED as i32)],
        "the destination answers itself"
    );
}

#[test]
fn healing_closes_a_destination_that_comes_back_without_client_traffic() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let policy = format!(
        "[[policy]]\nname = \"healed\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\nclose_after = 1\nheal = true\nheal_interval = \"500ms\"\n"
    );
    // The daemon runs inside the cgroup it protects: its probes must bypass its
    // own gate, or an open circuit would reject them and never heal.
    let d = Daemon::start_with(&cgroup, &pins, &policy, "", true);
    assert_eq!(connects(&cgroup, addr, 1), [Err(ECONNREFUSED as i32)]);
    assert_eq!(d.dest(addr)["state"], "open");
    // Failed probes leave it open.
    thread::sleep(Duration::from_millis(1_300));
    assert_eq!(d.dest(addr)["state"], "open");

    let _server = AcceptingServer::serve(refusing.listen());
    let back = Instant::now();
    while d.dest(addr)["state"] != "closed" {
        // Probe interval (500 ms, +20% jitter) plus a margin.
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "not healed: {}",
            d.dest(addr)
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "healed {:?} after the destination came back",
        back.elapsed()
    );
    let dest = d.dest(addr);
    assert_eq!(dest["attempts"], 1, "no client traffic was needed");
    assert!(
        d.metrics()
            .get("enforcer_kernel_bypassed_total", &[])
            .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(connects(&cgroup, addr, 1), [Ok(())]);
}

#[test]
fn events_follow_transitions_live() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let d = Daemon::start(
        &cgroup,
        &pins,
        &format!("[[policy]]\nname = \"p\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1\n"),
    );
    let mut follower = std::process::Command::new(enforcer_tests::daemon::binary())
        .args(["events", "--socket", d.socket.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("enforcer events");
    // Lines arrive on a channel, so a missing one fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = follower.stdout.take().unwrap();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx
                .send(serde_json::from_str(&line).expect("a JSON line"))
                .is_err()
            {
                return;
            }
        }
    });
    // Subscribed once a switch flip of ours shows up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        d.ok(&["pause"]);
        d.ok(&["resume"]);
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "enforcer events shows nothing");
    }
    connects(&cgroup, addr, 1);
    d.ok(&["trip", "10.99.0.1:80"]);
    // The kernel's transition and the daemon's own event, in either order (the
    // ring buffer is read every 100 ms), among the switch flips.
    let mut seen: Vec<(String, String, String)> = Vec::new();
    while seen.len() < 2 {
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the events arrive");
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        if s("kind") == "tripped" {
            // Named with its namespace: the daemon's own, the test's.
            assert_eq!(e["netns"], own_inode(), "{e}");
            assert_eq!(e["netns_status"], "host", "{e}");
        }
        if !matches!(s("kind").as_str(), "paused" | "resumed") {
            seen.push((s("kind"), s("dest"), s("policy")));
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("forced_open".into(), "10.99.0.1:80".into(), String::new()),
            ("tripped".into(), addr.to_string(), "p".into()),
        ]
    );
}

#[test]
fn reload_show_completions_and_the_series_limit() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let (a, b) = (
        AcceptingServer::bind("127.0.0.1:0"),
        AcceptingServer::bind("127.0.0.1:0"),
    );
    let mut d = Daemon::start_with(
        &cgroup,
        &pins,
        "[[policy]]\nname = \"one\"\nmatch = [\"127.0.0.0/8:*\"]\n",
        "max_series = 1",
        false,
    );
    connects(&cgroup, a.addr, 2);
    connects(&cgroup, b.addr, 1);
    // One destination gets its own series, the other folds into "other".
    let m = d.metrics();
    let a_labels = [
        ("dest", a.addr.to_string()),
        ("netns", own_inode().to_string()),
        ("policy", "one".to_owned()),
    ];
    let a_labels: Vec<(&str, &str)> = a_labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        m.get("enforcer_connect_attempts_total", &a_labels),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "enforcer_connect_attempts_total",
            &[("dest", "other"), ("netns", "other"), ("policy", "other")]
        ),
        Some(1.0)
    );
    assert_eq!(m.get("enforcer_tracked_destinations", &[]), Some(2.0));

    let show = d.ok(&["policy", "show", "one"]);
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["match"][0], "127.0.0.0/8:*");
    assert_eq!(show["failure_threshold"], 5, "the embedded default");

    // A good reload (SIGHUP) applies the file's new policy set.
    d.edit_config(|text| {
        text.replace(
            "name = \"one\"",
            "name = \"renamed\"\nfailure_threshold = 9",
        )
    });
    d.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.json(&["policy", "list"])[0]["name"] != "renamed" {
        assert!(Instant::now() < deadline, "not reloaded: {}", d.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.json(&["policy", "list"])[0]["failure_threshold"], 9);

    let out = enforcer(&["completions", "bash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("enforcer"));
    d.kill9();
}

/// The tables that fill with traffic show against their sizes, so that an
/// alert can fire before one is full: the connections held (by `nobody`, one
/// destination folded past the series limit) count in the connection
/// table's records until their holders are gone.
#[test]
fn the_tables_show_how_full_they_are() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let (a, b) = (
        AcceptingServer::bind("127.0.0.1:0"),
        AcceptingServer::bind("127.0.0.1:0"),
    );
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        "[[policy]]\nname = \"held\"\nmatch = [\"127.0.0.0/8:*\"]\n",
        "max_series = 1\ndests_capacity = 3000\nconns_capacity = 2048\nflows_capacity = 5000",
        false,
    );
    let m = d.metrics();
    for (table, size) in [("dests", 3000.0), ("conns", 2048.0), ("flows", 5000.0)] {
        assert_eq!(
            m.get("enforcer_table_capacity", &[("table", table)]),
            Some(size),
            "{table}"
        );
    }
    assert_eq!(m.get("enforcer_tracked_connections", &[]), Some(0.0));
    assert_eq!(m.get("enforcer_tracked_flows", &[]), Some(0.0));

    let place = Place::cgroup(&cgroup);
    let mut holders = [
        place.spawn_nobody_holding(a.addr, 2),
        place.spawn_nobody_holding(b.addr, 1),
    ];
    let connections = |want: f64| {
        wait::until("the connections tracked", || {
            let m = d.metrics();
            match m.get("enforcer_tracked_connections", &[]) {
                Some(held) if held == want => Ok(m),
                held => Err(format!("{held:?}, want {want}")),
            }
        })
    };
    let m = connections(3.0);
    // One destination has its own series, the other is in "other": both count.
    assert_eq!(m.get("enforcer_tracked_destinations", &[]), Some(2.0));
    for holder in &mut holders {
        holder.kill().expect("killing a holder");
        holder.wait().expect("reaping a holder");
    }
    connections(0.0);
}

#[test]
fn idle_closed_destinations_are_forgotten() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let server = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start_with(
        &cgroup,
        &pins,
        &format!("[[policy]]\nname = \"p\"\nmatch = [\"{}\"]\n", server.addr),
        "gc_idle = \"10s\"",
        false,
    );
    connects(&cgroup, server.addr, 1);
    assert_eq!(d.json(&["policy", "list"])[0]["tracked"], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.json(&["status"])["destinations"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "not collected");
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        d.json(&["policy", "list"])[0]["tracked"],
        0,
        "the guard's count follows"
    );
}

#[test]
fn bad_input_exits_2_names_the_field_and_changes_nothing() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let mut d = Daemon::start(
        &cgroup,
        &pins,
        "[[policy]]\nname = \"base\"\nmatch = [\"10.1.0.0/16:80\"]\n",
    );
    let before = d.json(&["policy", "list"]);

    let cli_cases: &[(&[&str], &str)] = &[
        (&["policy", "set", "p", "match=10.0.0.1/8:80"], "host bits"),
        (&["policy", "set", "p", "match=10.1.0.0/16:80"], "overlaps"),
        (
            &["policy", "set", "p", "match=10.2.0.0/16:70000"],
            "port must be",
        ),
        (
            &[
                "policy",
                "set",
                "p",
                "match=10.2.0.0/16:80",
                "failure_threshold=0",
            ],
            "failure_threshold",
        ),
        (
            &[
                "policy",
                "set",
                "p",
                "match=10.2.0.0/16:80",
                "failure_threshold=-3",
            ],
            "failure_threshold",
        ),
        (
            &[
                "policy",
                "set",
                "p",
                "match=10.2.0.0/16:80",
                "failure_rate=1.5",
            ],
            "failure_rate",
        ),
        (
            &["policy", "set", "p", "match=10.2.0.0/16:80", "window=10h"],
            "window",
        ),
        (
            &[
                "policy",
                "set",
                "p",
                "match=10.2.0.0/16:80",
                "max_connections=0",
            ],
            "max_connections",
        ),
        (
            &["policy", "set", "p", "match=10.2.0.0/16:80", "bogus=1"],
            "bogus",
        ),
        (&["policy", "set", "p", "nonsense"], "KEY=VALUE"),
        (&["policy", "rm", "nope"], "no policy named"),
        (&["trip", "not-an-address"], "dest"),
        (&["trip", "10.0.0.1:80", "--for", "5parsecs"], "for"),
        (&["disable", "10.0.0.1:0"], "port"),
        (&["status", "--policy", "nope"], "no policy named"),
    ];
    for (args, want) in cli_cases {
        let out = d.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want `{want}` in: {err}");
    }
    assert_eq!(d.json(&["policy", "list"]), before, "nothing changed");

    // Files: `config check`, `policy apply`, and a SIGHUP reload.
    let dir = std::env::temp_dir().join(enforcer_tests::unique_name("enforcer-bad-"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut too_many = String::new();
    for i in 0..256 {
        too_many += &format!(
            "[[policy]]\nname = \"p{i}\"\nmatch = [\"10.9.{}.0/24:80\"]\n",
            i
        );
    }
    let file_cases: Vec<(String, &str)> = vec![
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/40:80\"]\n".into(),
            "line 3",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\", \"10.0.0.0/8:80\"]\n".into(),
            "overlaps",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\"]\nfailure_rate = 0\n".into(),
            "line 4",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\"]\nopen = \"0ms\"\n".into(),
            "open",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\"]\nmax_pending = 0\n".into(),
            "max_pending",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\"]\ncolour = \"red\"\n".into(),
            "colour",
        ),
        (too_many, "at most 255 policies"),
    ];
    for (i, (text, want)) in file_cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let f = file.to_str().unwrap();
        let out = enforcer(&["config", "check", f]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "config check {i}: {err}");
        assert!(
            err.contains(want),
            "config check {i}: want `{want}` in: {err}"
        );
        let out = d.cli(&["policy", "apply", f]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "policy apply {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let daemon_cases = [
        ("[daemon]\npin_dir = \"/tmp/elsewhere\"\n", "daemon.pin_dir"),
        ("[daemon]\ndests_capacity = 0\n", "daemon.dests_capacity"),
        ("[daemon]\nwhat = 1\n", "what"),
        ("[daemon]\ninterfaces = [\"a/b\"]\n", "daemon.interfaces"),
        // Checked before anything is created or attached.
        (
            "[daemon]\ninterfaces = [\"nosuch0\"]\n",
            "daemon.interfaces",
        ),
        ("[daemon]\npacket_hook = \"ebpf\"\n", "daemon.packet_hook"),
        (
            "[daemon]\nflow_syn_timeout = \"1ms\"\n",
            "daemon.flow_syn_timeout",
        ),
        ("[daemon]\nmax_healers = 0\n", "daemon.max_healers"),
    ];
    for (i, (text, want)) in daemon_cases.iter().enumerate() {
        let file = dir.join(format!("daemon{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = enforcer(&["run", "--config", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "run {i}: {err}");
        assert!(err.contains(want), "run {i}: want `{want}` in: {err}");
    }
    // The flag names an interface that is not there: refused before the pin
    // directory (which the running daemon holds) is even looked at.
    let config = d.config.to_str().unwrap();
    let out = enforcer(&["run", "--config", config, "--interface", "nosuch0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "--interface: {err}");
    assert!(
        err.contains("daemon.interfaces") && err.contains("nosuch0"),
        "{err}"
    );
    let out = enforcer(&["run", "--config", config, "--max-healers", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "--max-healers: {err}");
    assert!(err.contains("daemon.max_healers"), "{err}");
    // A bad file reloaded with SIGHUP: rejected, the running policies stay.
    let good = d.edit_config(|good| format!("{good}\n[defaults]\nfailure_threshold = 0\n"));
    d.hangup();
    thread::sleep(Duration::from_millis(300));
    assert!(d.log().contains("reload rejected"), "{}", d.log());
    assert_eq!(d.json(&["policy", "list"]), before, "nothing changed");
    std::fs::write(&d.config, good).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    d.kill9();
}

/// Whether the cgroup's packet programs (egress, ingress) are attached.
fn packet_programs(cgroup: &ScratchCgroup) -> (bool, bool) {
    let attached = cgroup.attached_program_names();
    let has = |name: &str| attached.iter().any(|n| n == name);
    (has("sock_out"), has("sock_in"))
}

#[test]
fn the_packet_programs_run_only_while_a_policy_learns_from_responses() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let server = AcceptingServer::bind("127.0.0.1:0");
    let mut d = Daemon::start_with(
        &cgroup,
        &pins,
        &format!("[[policy]]\nname = \"p\"\nmatch = [\"{}\"]\n", server.addr),
        "",
        false,
    );
    // Every packet of every socket in the cgroup would pass them: nothing
    // reads them yet.
    assert_eq!(packet_programs(&cgroup), (false, false));
    assert_eq!(connects(&cgroup, server.addr, 1), [Ok(())]);

    let answers = AcceptingServer::bind("127.0.0.1:0");
    policy_set(
        &d,
        "answers",
        answers.addr,
        &["max_connections=auto", "adaptive.signal=response"],
    );
    assert_eq!(packet_programs(&cgroup), (true, true), "attached for it");

    // Pinned: a daemon killed and started again finds them as they were.
    d.kill9();
    assert_eq!(
        packet_programs(&cgroup),
        (true, true),
        "kept without a daemon"
    );
    d.spawn();
    assert_eq!(packet_programs(&cgroup), (true, true), "adopted");

    d.ok(&["policy", "rm", "answers"]);
    assert_eq!(
        packet_programs(&cgroup),
        (false, false),
        "detached after it"
    );
    assert_eq!(
        connects(&cgroup, server.addr, 1),
        [Ok(())],
        "still enforcing"
    );
    assert_eq!(d.dest(server.addr)["successes"], 2);
}

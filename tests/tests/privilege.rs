//! Least privilege: started with only the capabilities the systemd unit grants
//! (`CAP_BPF`, `CAP_NET_ADMIN`, `CAP_PERFMON`, `CAP_SETPCAP`), the real daemon
//! trips, caps, heals, reloads, attaches the cgroup's packet programs when a
//! policy comes to need them and uninstalls, keeping after the start only
//! `CAP_NET_ADMIN` (for those programs and its packet plane); started as full
//! root it keeps, once
//! attached, exactly what its configuration needs, in every thread; it
//! refuses directories other users own or may write to, before changing
//! anything; and nobody else can reach its socket or read its state.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use aya::programs::tc::TcAttachType;
use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, enforcer},
    exec::Place,
    fixtures::ECONNREFUSED,
    net::{self, AcceptingServer, RefusingPort, free_loopback_port},
    netns::NetNs,
    wait,
};

const EHOSTUNREACH: i32 = 113;
const EAGAIN: i32 = 11;
const EACCES: i32 = 13;

/// Capability bits, as `/proc/PID/status` shows them.
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// Runs the daemon as the systemd unit does: with only what the start needs,
/// none to inherit or to pass on.
const AS_THE_UNIT: [&str; 5] = [
    "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all,+bpf,+net_admin,+perfmon,+setpcap",
    "--",
];

/// Every thread's capability sets (`CapInh`, `CapPrm`, `CapEff`, `CapBnd`,
/// `CapAmb`), by thread id.
fn capabilities(pid: u32) -> HashMap<String, HashMap<String, u64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    let mut all = HashMap::new();
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // a thread that just ended
        };
        let sets = status
            .lines()
            .filter(|l| l.starts_with("Cap"))
            .filter_map(|l| {
                let (name, value) = l.split_once(':')?;
                Some((name.to_owned(), u64::from_str_radix(value.trim(), 16).ok()?))
            })
            .collect();
        all.insert(task.file_name().to_string_lossy().into_owned(), sets);
    }
    all
}

/// The daemon, in every thread, holds exactly `keep` in its effective,
/// permitted and bounding sets, and nothing to inherit.
fn assert_holds_exactly(d: &Daemon, keep: u64) {
    let all = capabilities(d.pid());
    assert!(!all.is_empty());
    for (tid, sets) in all {
        let want: HashMap<String, u64> = [
            ("CapInh", 0),
            ("CapPrm", keep),
            ("CapEff", keep),
            ("CapBnd", keep),
            ("CapAmb", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            sets,
            want,
            "thread {tid} of the daemon (want {keep:#x}):\n{}",
            d.log()
        );
    }
}

/// How many TC programs are attached to `interface` (ingress and egress),
/// through whichever interface the running kernel has.
fn programs_on(interface: &str) -> usize {
    [TcAttachType::Ingress, TcAttachType::Egress]
        .into_iter()
        .map(|direction| enforcer_tests::tc::programs_on(interface, direction))
        .sum()
}

fn metric(d: &Daemon, name: &str, labels: &[(&str, &str)]) -> f64 {
    d.metrics().get(name, labels).unwrap_or(0.0)
}

#[test]
fn with_only_the_units_capabilities_it_trips_caps_heals_reloads_and_uninstalls() {
    let (cgroup, pins, x) = (ScratchCgroup::new(), PinDir::new(), NetNs::new());
    let refusing = RefusingPort::loopback_v4();
    let tripped = refusing.addr;
    // Accepts into its backlog and holds every connection: a real server.
    let holding = TcpListener::bind("127.0.0.1:0").expect("bind");
    let capped = holding.local_addr().unwrap();
    // Nothing listens on it inside X.
    let in_x = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
    let policies = format!(
        "[[policy]]\nname = \"healed\"\nmatch = [\"{tripped}\", \"{in_x}\"]\nfailure_threshold = 1\nopen = \"1h\"\nopen_max = \"1h\"\nclose_after = 1\nerrno = \"EHOSTUNREACH\"\nheal = true\nheal_interval = \"200ms\"\n\n[[policy]]\nname = \"capped\"\nmatch = [\"{capped}\"]\nmax_connections = 1\nerrno = \"EAGAIN\"\n"
    );
    // The packet plane on X's veth: what keeps CAP_NET_ADMIN.
    let mut d = Daemon::start_launched(
        &cgroup,
        &pins,
        &policies,
        &format!("interfaces = [\"{}\"]", x.host_if),
        &AS_THE_UNIT,
    );
    assert_holds_exactly(&d, CAP_NET_ADMIN);
    assert_eq!(
        programs_on(&x.host_if),
        3,
        "the packet plane, in and out, and the guest faults in"
    );
    let log = d.log();
    assert!(
        log.contains(
            "capabilities kept: CAP_NET_ADMIN; dropped: CAP_SETPCAP, CAP_PERFMON, CAP_BPF"
        ),
        "{log}"
    );
    assert!(
        log.contains("daemon.enter_namespaces is set, but CAP_SYS_ADMIN is missing"),
        "the feature that is off says so: {log}"
    );
    let here = Place::cgroup(&cgroup);

    // A trip.
    assert_eq!(
        here.connects(tripped, 2),
        [Err(ECONNREFUSED as i32), Err(EHOSTUNREACH)]
    );
    assert_eq!(d.dest(tripped)["state"], "open");

    // A cap: the second connection while the first is held is refused.
    let both = here.run(|| {
        let first = net::connect(capped).expect("the first connection");
        let second = net::connect(capped).err();
        drop(first);
        format!("{second:?}")
    });
    assert_eq!(both, format!("{:?}", Some(EAGAIN)));
    assert_eq!(d.dest(capped)["rejections"]["bulkhead"], 1);
    wait::until_true("the slot is released", || d.dest(capped)["active"] == 0);

    // Healing from the daemon's own namespace: the destination comes back and
    // is closed with no client traffic.
    let _server = AcceptingServer::serve(refusing.listen());
    wait::until_true("healed", || d.dest(tripped)["state"] == "closed");

    // In another namespace: not probed (the daemon cannot enter it), counted.
    let from_x = Place::cgroup(&cgroup).with_netns(&x);
    assert_eq!(from_x.connects(in_x, 1), [Err(ECONNREFUSED as i32)]);
    wait::until_true("the skip is counted", || {
        metric(
            &d,
            "enforcer_healing_skipped_total",
            &[("reason", "netns_not_permitted")],
        ) >= 1.0
    });

    // A reload: the cap goes to 2, in the kernel.
    d.edit_config(|text| text.replace("max_connections = 1", "max_connections = 2"));
    d.hangup();
    wait::until_true("reloaded", || d.log().contains("reloaded: 2 policies"));
    let shown: serde_json::Value =
        serde_json::from_str(&d.ok(&["policy", "show", "capped"])).expect("JSON");
    assert_eq!(shown["max_connections"], 2);
    let three = here.run(|| {
        let held: Vec<_> = (0..2)
            .map(|_| net::connect(capped).expect("within the cap"))
            .collect();
        let third = net::connect(capped).err();
        drop(held);
        format!("{third:?}")
    });
    assert_eq!(three, format!("{:?}", Some(EAGAIN)));

    // A policy that learns from response latency, set at runtime: the
    // capability kept is what attaches the packet programs it needs.
    let attached = || cgroup.attached_program_names();
    assert!(
        !attached().iter().any(|n| n == "sock_out"),
        "{:?}",
        attached()
    );
    let answers = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
    d.ok(&[
        "policy",
        "set",
        "answers",
        &format!("match={answers}"),
        "max_connections=auto",
        "adaptive.signal=response",
    ]);
    let now = attached();
    assert!(
        ["sock_out", "sock_in"]
            .iter()
            .all(|p| now.iter().any(|n| n == p)),
        "{now:?}"
    );

    // Threads started since (healers, namespace discovery, the runtime's)
    // hold no more than the first.
    assert_holds_exactly(&d, CAP_NET_ADMIN);

    // Uninstall, through the daemon: nothing left attached or pinned.
    d.uninstall();
    assert!(d.wait_exit().success(), "{}", d.log());
    assert!(!d.pin_dir.exists(), "pins left in {}", d.pin_dir.display());
    assert_eq!(cgroup.attached_programs(), "", "still attached");
    // The kernel frees an unpinned link asynchronously.
    wait::until_true("detached from the interface", || {
        programs_on(&x.host_if) == 0
    });
    drop(holding);
}

#[test]
fn once_attached_root_keeps_exactly_what_its_configuration_needs() {
    // CAP_NET_ADMIN in every case: attaching the cgroup's packet programs
    // when a policy or a chaos fault starts to need them.
    for (keys, keep, stats) in [
        ("", CAP_SYS_ADMIN | CAP_SYS_PTRACE | CAP_NET_ADMIN, false),
        ("enter_namespaces = false", CAP_NET_ADMIN, false),
        (
            "enter_namespaces = false\nbpf_run_stats = true",
            CAP_SYS_ADMIN | CAP_NET_ADMIN,
            true,
        ),
    ] {
        let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
        let refusing = RefusingPort::loopback_v4();
        let policy = format!(
            "[[policy]]\nname = \"p\"\nmatch = [\"{}\"]\n",
            refusing.addr
        );
        let d = Daemon::start_with(&cgroup, &pins, &policy, keys, false);
        assert_holds_exactly(&d, keep);
        // It still enforces and reports.
        assert_eq!(
            Place::cgroup(&cgroup).connects(refusing.addr, 1),
            [Err(ECONNREFUSED as i32)]
        );
        assert_eq!(d.dest(refusing.addr)["failures"]["refused"], 1, "{keys}");
        // The programs' run counts are there only when asked for, and real.
        let runs = d.metrics().get(
            "enforcer_bpf_program_runs_total",
            &[("program", "gate_connect4")],
        );
        if stats {
            assert!(runs.is_some_and(|n| n >= 1.0), "{keys}: {runs:?}");
        } else {
            assert_eq!(runs, None, "{keys}: no statistics, no series");
        }
    }
}

/// A configuration for `cgroup` and `pins` whose socket and state go where
/// the test says.
fn config_file(
    dir: &Path,
    cgroup: &ScratchCgroup,
    pins: &PinDir,
    socket: &Path,
    state: &Path,
) -> std::path::PathBuf {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
    let file = dir.join("enforcer.toml");
    std::fs::write(
        &file,
        format!(
            "policy = []\n\n[daemon]\ncgroup = \"{}\"\npin_root = \"{}\"\npin_dir = \"{}\"\nsocket = \"{}\"\nmetrics = \"{metrics}\"\nstate_dir = \"{}\"\n",
            cgroup.path().display(),
            pins.path().display(),
            pins.path().join("enforcer").display(),
            socket.display(),
            state.display(),
        ),
    )
    .unwrap();
    file
}

#[test]
fn directories_other_users_own_or_may_write_to_are_refused_before_anything_changes() {
    const NOBODY: u32 = 65534;
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let dir = std::env::temp_dir().join(enforcer_tests::unique_name("enforcer-dirs-"));
    std::fs::create_dir(&dir).unwrap();
    let (open, foreign, own) = (dir.join("open"), dir.join("foreign"), dir.join("own"));
    for d in [&open, &foreign, &own] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(NOBODY), Some(NOBODY)).unwrap();
    let cases = [
        (
            own.join("enforcer.sock"),
            open.clone(),
            "daemon.state_dir",
            "writable by every user (mode 0777)",
        ),
        (
            foreign.join("enforcer.sock"),
            own.join("state"),
            "daemon.socket",
            "owned by uid 65534",
        ),
    ];
    for (socket, state, field, why) in cases {
        let config = config_file(&dir, &cgroup, &pins, &socket, &state);
        let out = enforcer(&["run", "--config", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(
            err.contains(&format!("{field}: ")) && err.contains(why),
            "want `{field}` and `{why}` in: {err}"
        );
        assert!(
            !pins.path().join("enforcer").exists(),
            "{field}: the pin directory was created"
        );
        assert_eq!(
            cgroup.attached_programs(),
            "",
            "{field}: something was attached"
        );
        assert!(!socket.exists(), "{field}: a socket was bound");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nobody_else_can_reach_the_socket_or_read_the_state_even_under_umask_0() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    // The loosest umask there is: whatever the daemon creates is as private
    // as it makes it, not as its parent's umask happens to.
    let d = Daemon::start_launched(
        &cgroup,
        &pins,
        "policy = []",
        "",
        &["sh", "-c", "umask 000 && exec \"$@\"", "sh"],
    );
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&d.socket), 0o600, "the socket");
    let socket = d.socket.clone();
    let seen =
        Place::cgroup(&cgroup).run_as_nobody(
            move || match std::os::unix::net::UnixStream::connect(&socket) {
                Ok(_) => "connected".to_owned(),
                Err(e) => e.raw_os_error().unwrap_or(0).to_string(),
            },
        );
    assert_eq!(seen, EACCES.to_string(), "nobody reached the socket");

    // The runtime policies it saves.
    d.ok(&["policy", "set", "p", "match=192.0.2.1:80"]);
    let state = d.state_dir();
    assert_eq!(mode(&state), 0o700, "the state directory");
    assert_eq!(
        mode(&state.join("policies.toml")),
        0o600,
        "the saved policies"
    );
}

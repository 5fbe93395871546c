//! The daemon's edges under abuse from any local user: a stream that never
//! ends a header line, thousands of idle connections, answers of 100 000
//! destinations, addresses already taken at start, a cgroup another
//! installation already enforces.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::unix::net::{UnixListener, UnixStream},
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, Metrics, enforcer, http_get},
    exec::Place,
    require_root,
};

/// The daemon's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon runs");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Writes up to `total` bytes without a newline until the peer stops
/// reading or closes; how many it took.
fn flood(mut stream: impl Write, total: usize) -> usize {
    let chunk = [b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match stream.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

const HALF_GIB: usize = 512 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

#[test]
fn a_stream_without_a_newline_costs_the_daemon_nothing() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::start(&cgroup, &pins, "policy = []");
    let before = rss_bytes(d.pid());
    let metrics = d.metrics;
    let socket = d.socket.clone();
    // Both at once: the metrics port (anyone on the host) and the control
    // socket. A write timeout bounds a peer that stops reading.
    let tcp = std::thread::spawn(move || {
        let s = TcpStream::connect(metrics).expect("connecting to the metrics port");
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        flood(s, HALF_GIB)
    });
    let unix = std::thread::spawn(move || {
        let s = UnixStream::connect(socket).expect("connecting to the control socket");
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        flood(s, HALF_GIB)
    });
    let (sent_tcp, sent_unix) = (tcp.join().unwrap(), unix.join().unwrap());
    let after = rss_bytes(d.pid());
    eprintln!(
        "sent {} MiB to the metrics port, {} MiB to the socket; RSS {} -> {} MiB",
        sent_tcp as u64 / MIB,
        sent_unix as u64 / MIB,
        before / MIB,
        after / MIB
    );
    assert!(
        after <= before + 16 * MIB,
        "RSS grew from {before} to {after} bytes"
    );
    assert!(d.cli(&["status"]).status.success(), "{}", d.log());
    assert_eq!(http_get(d.metrics, "/healthz").map(|(s, _)| s), Some(200));
}

/// Raises this process's open-file limit to its hard limit.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    let raised = Rlimit {
        current: hard,
        maximum: hard,
    };
    setrlimit(Resource::Nofile, raised).expect("setrlimit");
    // `None`: no limit at all.
    hard.unwrap_or(u64::MAX)
}

#[test]
fn idle_connections_to_the_metrics_port_do_not_stop_the_api() {
    require_root();
    const IDLE: usize = 2_000;
    assert!(raise_nofile() > IDLE as u64 + 100, "too few descriptors");
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::start(&cgroup, &pins, "policy = []");
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", d.pid())).map_or(0, |f| f.count());
    let before = fds();
    let idle: Vec<TcpStream> = (0..IDLE)
        .map_while(|_| TcpStream::connect(d.metrics).ok())
        .collect();
    eprintln!("{} idle connections open", idle.len());
    assert!(idle.len() >= IDLE / 2, "only {} connected", idle.len());
    // The daemon holds at most its limit of them (32) and closes the rest
    // as they come: its descriptors stay bounded whatever a client opens.
    let held = fds();
    eprintln!("daemon descriptors: {before} before, {held} with the idle connections");
    assert!(held <= before + 40, "{held} descriptors, {before} before");
    let start = Instant::now();
    let status = d.cli(&["status"]);
    let took = start.elapsed();
    eprintln!("`enforcer status` answered in {took:?}");
    assert!(status.status.success(), "{}", d.log());
    // The daemon cuts idle clients off (no request head within its
    // deadline), after which the port serves scrapes again.
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(d.metrics, "/healthz").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "the metrics port stays blocked");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
}

#[test]
fn status_and_metrics_answer_with_100_000_destinations() {
    require_root();
    const DESTS: usize = 100_000;
    // Refusals that never trip: every destination stays, CLOSED.
    let (cgroup, _pins, refusing, d) = Daemon::never_tripping(
        "many",
        "127.64.0.0/10",
        "dests_capacity = 131072\nmax_series = 1000\n",
    );
    let port = refusing.addr.port();
    Place::cgroup(&cgroup).run(|| {
        for i in 0..DESTS {
            let (block, lo) = (i / 254, 1 + i % 254);
            let ip = Ipv4Addr::new(127, 64 + (block / 256) as u8, (block % 256) as u8, lo as u8);
            let _ = TcpStream::connect(SocketAddrV4::new(ip, port));
        }
        String::new()
    });
    let status = d.cli(&["status", "-o", "json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let tracked = json["destinations"].as_array().map_or(0, Vec::len);
    assert!(
        tracked >= DESTS * 9 / 10,
        "{tracked} destinations in status"
    );
    let metrics = d.cli(&["metrics"]);
    assert!(metrics.status.success(), "{}", d.log());
    let text = String::from_utf8_lossy(&metrics.stdout);
    let m = Metrics::parse(&text);
    assert_eq!(
        m.get("enforcer_tracked_destinations", &[]),
        Some(tracked as f64)
    );
    let (code, _) = http_get(d.metrics, "/metrics").expect("a scrape");
    assert_eq!(code, 200);
}

#[test]
fn a_busy_metrics_address_or_socket_is_bad_input_and_attaches_nothing() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::configure(&cgroup, &pins, "policy = []", "", false);
    let config = d.config.to_str().unwrap().to_owned();
    let check = |taken: &str| {
        let out = enforcer(&["run", "--config", &config]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{taken}: {err}");
        assert!(err.contains(taken), "want `{taken}` in: {err}");
        let attached = cgroup.attached_programs();
        assert!(
            !attached.contains("gate_connect") && !attached.contains("track_sock"),
            "{taken}: programs attached: {attached}"
        );
        assert!(
            !d.pin_dir.exists(),
            "{taken}: pins in {}",
            d.pin_dir.display()
        );
    };
    {
        let _taken = TcpListener::bind(d.metrics).expect("taking the metrics port");
        check("daemon.metrics");
    }
    {
        let _taken = UnixListener::bind(&d.socket).expect("taking the socket path");
        check("daemon.socket");
        std::fs::remove_file(&d.socket).unwrap();
    }
}

/// Files under `dir` (pins), directories left out.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_below(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn a_second_installation_where_one_enforces_is_refused() {
    require_root();
    let outer = ScratchCgroup::new();
    let middle = outer.child();
    let inner = middle.child();
    let first_pins = PinDir::new();
    let first = Daemon::start(&middle, &first_pins, "policy = []");
    let ours = middle.attached_programs();
    assert!(ours.contains("gate_connect4"), "{ours}");
    let none_of_ours = |cgroup: &ScratchCgroup| {
        let attached = cgroup.attached_programs();
        !attached.contains("gate_connect") && !attached.contains("track_sock")
    };
    for (cgroup, place) in [
        (&middle, "the same cgroup"),
        (&inner, "a cgroup below"),
        (&outer, "the parent"),
    ] {
        let pins = PinDir::new();
        let second = Daemon::configure(cgroup, &pins, "policy = []", "", false);
        // `timeout`: a daemon that does not refuse would run until killed.
        let out = std::process::Command::new("timeout")
            .arg("60")
            .arg(enforcer_tests::daemon::binary())
            .args(["run", "--config", second.config.to_str().unwrap()])
            .output()
            .expect("timeout");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{place}: {err}");
        assert!(
            err.contains("another enforcer's program")
                && err.contains(&middle.path().display().to_string()),
            "{place}: {err}"
        );
        assert_eq!(middle.attached_programs(), ours, "{place}");
        assert!(none_of_ours(&outer) && none_of_ours(&inner), "{place}");
        assert_eq!(
            files_below(&second.pin_dir),
            Vec::<std::path::PathBuf>::new(),
            "{place}: pinned"
        );
    }
    // The first installation is untouched, and its own restart adopts it.
    first.ok(&["status"]);
    first.terminate();
    let mut first = first;
    assert!(first.wait_exit().success(), "{}", first.log());
    first.spawn();
    first.ok(&["status"]);
    assert_eq!(middle.attached_programs(), ours);
    first.uninstall();
}

#[test]
fn a_stopped_daemon_leaves_no_bypass_behind() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let mut d = Daemon::start(&cgroup, &pins, "policy = []");
    assert_eq!(
        d.kernel_config().bypass_tgid,
        d.pid(),
        "the running daemon's"
    );
    d.terminate();
    assert!(d.wait_exit().success(), "{}", d.log());
    // Enforcement stays (no --detach-on-exit), but no process passes it.
    assert_eq!(d.kernel_config().bypass_tgid, 0, "{}", d.log());
}

#[test]
fn the_daemon_refuses_a_pid_namespace_of_its_own() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::configure(&cgroup, &pins, "policy = []", "", false);
    // `timeout`: a daemon that does not refuse would run until killed.
    let out = std::process::Command::new("timeout")
        .args(["60", "unshare", "--pid", "--fork", "--mount-proc"])
        .arg(enforcer_tests::daemon::binary())
        .args(["run", "--config", d.config.to_str().unwrap()])
        .output()
        .expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PID namespace"), "{err}");
    assert!(!d.pin_dir.exists(), "pins in {}", d.pin_dir.display());
}

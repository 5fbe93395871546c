//! Chaos experiments end to end: the real daemon arms faults in the kernel,
//! real clients in scratch cgroups (unprivileged, as `nobody`) connect to real
//! loopback servers, and the CLI reads the report.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::Daemon,
    exec::Place,
    frames::Tcp,
    net::{AcceptingServer, HoldingServer, RefusingPort},
    require_root,
    routed::{Ns, Routed},
};
use serde_json::Value;

const ECONNREFUSED: i32 = 111;
const ECONNRESET: i32 = 104;
const ETIMEDOUT: i32 = 110;

/// `CLOCK_MONOTONIC` in ns: the clock the kernel's fault expiries are on.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The experiment `text` in a file of its own (removed on drop).
struct ExperimentFile(PathBuf);

impl ExperimentFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(enforcer_tests::unique_name("chaos-") + ".toml");
        std::fs::write(&path, text).expect("writing the experiment");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ExperimentFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn status(d: &Daemon, name: &str) -> Value {
    d.json(&["chaos", "status", name])
}

/// Polls the experiment until `want` holds of its view (generous deadline).
fn wait_for(d: &Daemon, name: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = status(d, name);
        if want(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after 60 s: {v:#}\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn stage_is(stage: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["stage"] == stage
}

/// One connect attempt: when it started (`CLOCK_MONOTONIC` ns), to which of
/// the addresses, and `Ok` or its errno.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    at_ns: u64,
    to: usize,
    result: Result<(), i32>,
}

impl Attempt {
    /// One line of a child's report.
    fn line(&self) -> String {
        let result = self.result.map_or_else(|e| e.to_string(), |()| "ok".into());
        format!("{},{},{result}", self.at_ns, self.to)
    }

    fn parse(line: &str) -> Self {
        let mut f = line.split(',');
        let at_ns = f.next().unwrap().parse().unwrap();
        let to = f.next().unwrap().parse().unwrap();
        let result = match f.next().unwrap() {
            "ok" => Ok(()),
            e => Err(e.parse().unwrap()),
        };
        Self { at_ns, to, result }
    }
}

/// Connects to each of `addrs` in turn, every `every`, for `for_`, each
/// with `timeout`, from where it runs.
fn connects(
    addrs: &[SocketAddr],
    for_: Duration,
    every: Duration,
    timeout: Duration,
) -> Vec<Attempt> {
    let end = Instant::now() + for_;
    let mut out = Vec::new();
    while Instant::now() < end {
        for (to, a) in addrs.iter().enumerate() {
            let at_ns = monotonic_ns();
            let result = TcpStream::connect_timeout(a, timeout)
                .map(drop)
                .map_err(|e| e.raw_os_error().unwrap_or(-1));
            out.push(Attempt { at_ns, to, result });
        }
        thread::sleep(every);
    }
    out
}

/// [`connects`] from a child in `place` that dropped to `nobody`.
fn attempts(
    place: &Place,
    addrs: &[SocketAddr],
    for_: Duration,
    every: Duration,
    timeout: Duration,
) -> Vec<Attempt> {
    let addrs = addrs.to_vec();
    let out = place.run_as_nobody(move || {
        let lines: Vec<String> = connects(&addrs, for_, every, timeout)
            .iter()
            .map(Attempt::line)
            .collect();
        lines.join("\n")
    });
    out.lines().map(Attempt::parse).collect()
}

/// A running experiment's first fault, as the kernel holds it.
struct Armed {
    slot: u32,
    /// `CLOCK_MONOTONIC` ns by which the fault was surely armed (the daemon
    /// computes its deadline a moment before the kernel gets it).
    since_ns: u64,
    /// The kernel's expiry.
    until_ns: u64,
}

impl Armed {
    /// Slack at the deadline, for an attempt that started just before it.
    const MARGIN_NS: u64 = 50_000_000;

    /// Whether the attempt ran while the fault was surely on.
    fn during(&self, t: &Attempt) -> bool {
        t.at_ns > self.since_ns && t.at_ns + Self::MARGIN_NS < self.until_ns
    }

    /// Whether the attempt ran after the fault's deadline.
    fn after(&self, t: &Attempt) -> bool {
        t.at_ns > self.until_ns + Self::MARGIN_NS
    }
}

/// The running experiment's first fault, once its status says injecting.
fn armed(d: &Daemon, name: &str) -> Armed {
    let v = wait_for(d, name, "injecting", stage_is("injecting"));
    let since_ns = monotonic_ns();
    let slot = v["faults"][0]["slot"]
        .as_u64()
        .expect("a running fault's slot") as u32;
    let fault = d.kernel_fault(slot);
    assert!(fault.until_ns > 0, "{fault:?}");
    Armed {
        slot,
        since_ns,
        until_ns: fault.until_ns,
    }
}

#[test]
fn refuse_fails_the_target_cgroups_connects_to_the_target_only_until_its_deadline() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let (target, bystander) = (root.child(), root.child());
    let (a, b) = (
        AcceptingServer::bind("127.0.0.1:0"),
        AcceptingServer::bind("127.0.0.1:0"),
    );
    // A breaker that trips at the first failure: the fault's refusals are
    // not the destination's, and must not trip it for everyone.
    let d = Daemon::start(
        &root,
        &pins,
        "[[policy]]\nname = \"local\"\nmatch = [\"127.0.0.0/8:*\"]\nfailure_threshold = 1\n",
    );
    let file = ExperimentFile::new(&format!(
        "name = \"refuse-a\"\nduration = \"2s\"\nbaseline = \"0s\"\n\
         [targets]\ndestinations = [\"{}\"]\ncgroups = [\"{}\"]\n\
         [[fault]]\nkind = \"refuse\"\nerrno = \"ECONNRESET\"\n",
        a.addr,
        target.path().display()
    ));
    let (inside, outside) = (Place::cgroup(&target), Place::cgroup(&bystander));
    let every = Duration::from_millis(10);
    let timeout = Duration::from_secs(5);
    // The clients start first (an unprivileged child takes a while to start
    // under emulation), the experiment a second later, inside their run.
    let (mine, theirs, fault) = thread::scope(|s| {
        let mine = s.spawn(|| {
            attempts(
                &inside,
                &[a.addr, b.addr],
                Duration::from_secs(6),
                every,
                timeout,
            )
        });
        let theirs =
            s.spawn(|| attempts(&outside, &[a.addr], Duration::from_secs(6), every, timeout));
        thread::sleep(Duration::from_secs(1));
        d.ok(&["chaos", "start", file.path()]);
        let fault = armed(&d, "refuse-a");
        (mine.join().unwrap(), theirs.join().unwrap(), fault)
    });
    let during: Vec<&Attempt> = mine
        .iter()
        .filter(|t| t.to == 0 && fault.during(t))
        .collect();
    assert!(during.len() >= 10, "too few attempts while armed: {mine:?}");
    assert!(
        during.iter().all(|t| t.result == Err(ECONNRESET)),
        "the target cgroup's connects to the target fail with the fault's errno: {during:?}"
    );
    let after: Vec<&Attempt> = mine
        .iter()
        .filter(|t| t.to == 0 && fault.after(t))
        .collect();
    assert!(!after.is_empty(), "no attempt after the deadline: {mine:?}");
    assert!(
        after.iter().all(|t| t.result.is_ok()),
        "after its deadline the target succeeds again: {after:?}"
    );
    assert!(
        mine.iter().filter(|t| t.to == 1).all(|t| t.result.is_ok()),
        "another destination succeeds throughout: {mine:?}"
    );
    assert!(
        theirs.iter().all(|t| t.result.is_ok()),
        "a process outside the target cgroup succeeds throughout: {theirs:?}"
    );
    let v = wait_for(&d, "refuse-a", "completed", stage_is("completed"));
    let refused = mine.iter().filter(|t| t.result.is_err()).count() as u64;
    assert_eq!(
        v["faults"][0]["affected"], refused,
        "the kernel counted each refusal: {v:#}"
    );
    let state = d.status_of(a.addr);
    assert_eq!(
        state["state"], "closed",
        "the fault tripped the breaker: {state:#}"
    );
    assert_eq!(state["failures"]["refused"], 0, "{state:#}");
    let metrics = d.metrics();
    assert_eq!(
        metrics.get(
            "enforcer_chaos_affected_connects_total",
            &[("kind", "refuse")]
        ),
        Some(refused as f64)
    );
    assert_eq!(
        metrics.get("enforcer_kernel_refused_before_total", &[]),
        Some(refused as f64),
        "the gate saw each refusal and left it alone"
    );
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

#[test]
fn a_cap_stops_the_fault_after_its_connects_the_rest_are_spared() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"capped\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\nmax_connects = 5\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    armed(&d, "capped");
    // An unprivileged caller cannot get past the cap by racing it.
    let results = Place::cgroup(&root).run_as_nobody(move || {
        (0..20)
            .map(|_| match TcpStream::connect(a.addr) {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    let results: Vec<&str> = results.split(',').collect();
    let refused = ECONNREFUSED.to_string();
    assert_eq!(results[..5], [refused.as_str(); 5], "{results:?}");
    assert!(results[5..].iter().all(|r| *r == "ok"), "{results:?}");
    let v = wait_for(&d, "capped", "counted", |v| v["faults"][0]["spared"] == 15);
    assert_eq!(v["faults"][0]["affected"], 5, "{v:#}");
    d.ok(&["chaos", "abort", "capped"]);
}

#[test]
fn a_percentage_of_the_connects_lands_within_the_binomial_interval() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(
        &root,
        &pins,
        &format!(
            "[[policy]]\nname = \"a\"\nmatch = [\"{}\"]\nfailure_threshold = 1000000\n\
             min_attempts = 1000000\n",
            a.addr
        ),
    );
    let file = ExperimentFile::new(&format!(
        "name = \"thirty\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\npercentage = 30\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    armed(&d, "thirty");
    let n = 2000;
    let results = Place::cgroup(&root).run_as_nobody(move || {
        (0..n)
            .filter(|_| TcpStream::connect(a.addr).is_err())
            .count()
            .to_string()
    });
    let refused: u64 = results.parse().unwrap();
    let within = enforcer_tests::draws_within(n, 0.3);
    assert!(
        within.contains(&refused),
        "{refused} of {n} refused, outside {within:?}"
    );
    // The view is refreshed every 100 ms.
    let v = wait_for(&d, "thirty", "counted", |v| {
        v["faults"][0]["affected"] == refused
    });
    assert_eq!(v["faults"][0]["spared"], n - refused, "{v:#}");
    let state = d.status_of(a.addr);
    assert_eq!(state["chaos"], serde_json::json!(["thirty"]), "{state:#}");
    assert_eq!(
        state["successes"],
        n - refused,
        "the breaker saw the spared connects only: {state:#}"
    );
    // The operator's abort: the fault is off at once.
    let out = d.ok(&["chaos", "abort", "thirty"]);
    assert!(out.contains("aborted"), "{out}");
    assert_eq!(d.kernel_config().chaos_armed, 0);
    let after = Place::cgroup(&root).connects(a.addr, 50);
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    let v = wait_for(&d, "thirty", "aborted", stage_is("aborted"));
    assert_eq!(v["abort"]["reason"], "operator", "{v:#}");
}

#[test]
fn a_blackhole_times_clients_out_trips_the_breaker_and_the_report_shows_recovery() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let target = root.child();
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(
        &root,
        &pins,
        &format!(
            "[[policy]]\nname = \"a\"\nmatch = [\"{}\"]\nfailure_threshold = 2\n\
             min_attempts = 1000000\nconnect_timeout = \"1s\"\nopen = \"1s\"\njitter = 0.0\n\
             close_after = 1\n",
            a.addr
        ),
    );
    let file = ExperimentFile::new(&format!(
        "name = \"hole\"\nduration = \"4s\"\nbaseline = \"2s\"\nrecovery = \"30s\"\n\
         [targets]\ndestinations = [\"{}\"]\ncgroups = [\"{}\"]\n\
         [[fault]]\nkind = \"blackhole\"\n\
         [[steady_state]]\nsuccess_ratio = \"{}\"\nwindow = \"1s\"\ntolerance = 0.1\n",
        a.addr,
        target.path().display(),
        a.addr
    ));
    let inside = Place::cgroup(&target);
    // The egress packet program drops the SYNs: attached for the fault only.
    // (Asked of the kernel in-process: the load's children are forks that
    // would hold a pipe to a bpftool child open.)
    let attached = |name: &str| root.attached_program_names().iter().any(|n| n == name);
    let egress = || attached("sock_out");
    let ingress = || attached("sock_in");
    assert!(!egress() && !ingress(), "nothing needs them before");
    let running = std::sync::atomic::AtomicBool::new(true);
    let (load, report, seen) = thread::scope(|s| {
        let load = s.spawn(|| {
            attempts(
                &inside,
                &[a.addr],
                Duration::from_secs(16),
                Duration::from_millis(50),
                Duration::from_secs(3),
            )
        });
        let seen = s.spawn(|| {
            let mut seen = (false, false);
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                seen = (seen.0 || egress(), seen.1 || ingress());
                thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        let out = d.cli(&["chaos", "run", file.path(), "-o", "json"]);
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        (load.join().unwrap(), out, seen.join().unwrap())
    });
    let first = load[0].at_ns;
    let timeline: Vec<String> = load
        .iter()
        .map(|t| format!("{}ms:{:?}", (t.at_ns - first) / 1_000_000, t.result))
        .collect();
    eprintln!("load: {}", timeline.join(" "));
    // The hypothesis (the success ratio stays within 0.1) does not hold:
    // exit 1, and the report on stdout.
    assert_eq!(
        report.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let v: Value = serde_json::from_slice(&report.stdout).expect("the report");
    assert_eq!(v["stage"], "completed", "{v:#}");
    assert_eq!(v["hypothesis_held"], false, "{v:#}");
    assert_eq!(
        seen,
        (true, false),
        "the egress program, while the fault ran"
    );
    assert!(!egress(), "detached once the fault is disarmed");
    let check = &v["checks"][0];
    assert!(check["baseline"].as_f64().unwrap() > 0.95, "{v:#}");
    assert!(check["worst"].as_f64().unwrap() < 0.5, "{v:#}");
    assert!(v["recovery_ms"].as_u64().is_some(), "recovered: {v:#}");
    let fault = &v["faults"][0];
    assert!(fault["affected"].as_u64().unwrap() >= 2, "{v:#}");
    assert!(
        fault["syns_dropped"].as_u64() >= fault["affected"].as_u64(),
        "{v:#}"
    );
    assert!(
        load.iter().any(|t| t.result == Err(ETIMEDOUT)),
        "the clients timed out: {load:?}"
    );
    assert!(
        load.iter().any(|t| t.result == Err(ECONNREFUSED)),
        "the tripped breaker refused fast: {load:?}"
    );
    assert!(load.last().unwrap().result.is_ok(), "{load:?}");
    let state = d.status_of(a.addr);
    assert!(state["trips"].as_u64().unwrap() >= 1, "{state:#}");
}

#[test]
fn a_fault_ends_at_its_deadline_without_a_daemon_and_a_restart_reports_it_interrupted() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let mut d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"orphan\"\nduration = \"3s\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    let fault = armed(&d, "orphan");
    thread::sleep(Duration::from_secs(1));
    d.kill9();
    let seen = attempts(
        &Place::cgroup(&root),
        &[a.addr],
        Duration::from_secs(4),
        Duration::from_millis(20),
        Duration::from_secs(5),
    );
    let before: Vec<&Attempt> = seen.iter().filter(|t| fault.during(t)).collect();
    assert!(
        !before.is_empty(),
        "no attempt before the deadline: {seen:?}"
    );
    assert!(
        before.iter().all(|t| t.result == Err(ECONNREFUSED)),
        "the fault holds without its daemon: {before:?}"
    );
    let after: Vec<&Attempt> = seen.iter().filter(|t| fault.after(t)).collect();
    assert!(!after.is_empty(), "no attempt after the deadline: {seen:?}");
    assert!(
        after.iter().all(|t| t.result.is_ok()),
        "the kernel ended it at its deadline: {after:?}"
    );
    d.spawn();
    let v = status(&d, "orphan");
    assert_eq!(v["stage"], "interrupted", "{v:#}");
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

#[test]
fn a_trip_outside_the_targets_aborts_at_once_and_every_fault_is_gone() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let b = RefusingPort::loopback_v4();
    let d = Daemon::start(
        &root,
        &pins,
        &format!(
            "[[policy]]\nname = \"b\"\nmatch = [\"{}\"]\nfailure_threshold = 1\nopen = \"1m\"\n",
            b.addr
        ),
    );
    let file = ExperimentFile::new(&format!(
        "name = \"guarded\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\n\
         [[abort]]\ntrip = \"non_target\"\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    armed(&d, "guarded");
    let refused = Place::cgroup(&root).connects(a.addr, 3);
    assert!(
        refused.iter().all(|r| *r == Err(ECONNREFUSED)),
        "{refused:?}"
    );
    // The non-target destination fails once: its breaker trips.
    let tripped = Place::cgroup(&root).connects(b.addr, 1);
    assert_eq!(tripped, vec![Err(ECONNREFUSED)]);
    let v = wait_for(&d, "guarded", "aborted", stage_is("aborted"));
    let abort = &v["abort"];
    assert_eq!(abort["reason"], "trip", "{v:#}");
    assert_eq!(abort["dest"], b.addr.to_string(), "{v:#}");
    let reaction = abort["reaction_ms"].as_f64().expect("the reaction time");
    assert!(
        reaction <= 200.0,
        "the faults were disarmed {reaction} ms after the trip: {v:#}"
    );
    assert_eq!(d.kernel_config().chaos_armed, 0, "every fault is gone");
    let after = Place::cgroup(&root).connects(a.addr, 20);
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    assert_eq!(
        d.metrics()
            .get("enforcer_chaos_aborts_total", &[("reason", "trip")]),
        Some(1.0)
    );
}

#[test]
fn a_delay_drops_the_first_syn_and_the_connect_succeeds_one_retransmission_later() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"slow\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"delay\"\nsyns = 1\ndestinations = [\"{}\"]\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    armed(&d, "slow");
    let took = Place::cgroup(&root).run_as_nobody(move || {
        let begun = Instant::now();
        TcpStream::connect(a.addr).expect("the delayed connect");
        begun.elapsed().as_millis().to_string()
    });
    let took: u64 = took.parse().unwrap();
    // The kernel's first SYN retransmission timeout is 1 s.
    assert!(took >= 900, "the connect took {took} ms");
    let v = wait_for(&d, "slow", "counted", |v| v["faults"][0]["affected"] == 1);
    assert_eq!(v["faults"][0]["syns_dropped"], 1, "{v:#}");
    d.ok(&["chaos", "abort", "--all"]);
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

#[test]
fn a_bad_experiment_is_refused_whole_naming_the_field_and_nothing_is_armed() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::start(&root, &pins, "");
    for (text, field) in [
        (
            "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"delay\"\nsyns = 9\ndestinations = [\"127.0.0.1:1\"]\n",
            "fault[0].syns",
        ),
        (
            "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\ncgroups = [\"/sys/fs/cgroup/no-such-enforcer-cgroup\"]\n",
            "fault[0].cgroups",
        ),
        (
            "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\n[[abort]]\nmetric = \"enforcer_kernel_nothing\"\nabove = 1\n",
            "abort[0].metric",
        ),
        (
            "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"guest_refuse\"\ndestinations = [\"10.0.0.1:80\"]\ncgroups = [\"/sys/fs/cgroup\"]\n",
            "fault[0].cgroups",
        ),
        // This daemon watches no interface: a guest fault would act on nothing.
        (
            "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"guest_loss\"\ndestinations = [\"10.0.0.1:80\"]\npercentage = 5\n",
            "fault[0].kind",
        ),
    ] {
        let file = ExperimentFile::new(text);
        let out = d.cli(&["chaos", "start", file.path()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
    assert_eq!(d.kernel_config().chaos_armed, 0);
    let list = d.json(&["chaos", "list"]);
    assert_eq!(list, serde_json::json!([]), "nothing started");
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

/// `bpf_sock_destroy` came with Linux 6.5: an older kernel refuses an
/// experiment that resets connections at its start, naming the fault, and
/// arms nothing. Whether the running kernel is one (that was checked).
fn refused_before_6_5(d: &Daemon, file: &ExperimentFile) -> bool {
    if kernel_version() >= (6, 5) {
        return false;
    }
    let out = d.cli(&["chaos", "start", file.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fault[0].kind") && stderr.contains("bpf_sock_destroy"),
        "{stderr}"
    );
    assert_eq!(d.kernel_config().chaos_armed, 0);
    assert_eq!(d.json(&["chaos", "list"]), serde_json::json!([]));
    true
}

#[test]
fn reset_aborts_the_established_connections_to_the_target_only() {
    require_root();
    const ECONNABORTED: i32 = 103;
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let (a, b) = (HoldingServer::start(), HoldingServer::start());
    let d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"reset-a\"\nduration = \"1s\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"reset\"\ndestinations = [\"{}\"]\n",
        a.addr
    ));
    if refused_before_6_5(&d, &file) {
        return;
    }
    let mut long_lived = TcpStream::connect(a.addr).expect("to a");
    let mut other = TcpStream::connect(b.addr).expect("to b");
    d.ok(&["chaos", "start", file.path()]);
    let v = wait_for(&d, "reset-a", "one reset", |v| {
        v["faults"][0]["affected"] == 1
    });
    assert_eq!(v["faults"][0]["kind"], "reset", "{v:#}");
    let mut buf = [0u8; 8];
    let read = long_lived.read(&mut buf).map_err(|e| e.raw_os_error());
    assert_eq!(
        read,
        Err(Some(ECONNABORTED)),
        "the connection to the target"
    );
    other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    other
        .write_all(b"still here")
        .expect("the other connection writes");
    let kind = other.read(&mut buf).map_err(|e| e.kind());
    assert!(
        matches!(
            kind,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "the other connection is untouched: {kind:?}"
    );
    let v = wait_for(&d, "reset-a", "completed", stage_is("completed"));
    assert_eq!(v["faults"][0]["affected"], 1, "{v:#}");
}

#[test]
fn abort_after_bytes_ends_a_connection_past_its_bytes_and_spares_one_below() {
    require_root();
    const ECONNABORTED: i32 = 103;
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = HoldingServer::start();
    let d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"limit\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"abort_after_bytes\"\nbytes = 10000\ndestinations = [\"{}\"]\n",
        a.addr
    ));
    if refused_before_6_5(&d, &file) {
        return;
    }
    let mut heavy = TcpStream::connect(a.addr).expect("to a");
    let mut light = TcpStream::connect(a.addr).expect("to a");
    for s in [&heavy, &light] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    d.ok(&["chaos", "start", file.path()]);
    wait_for(&d, "limit", "injecting", stage_is("injecting"));
    light.write_all(&[0; 100]).expect("below the limit");
    heavy.write_all(&[0; 20_000]).expect("past the limit");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 8];
    let ended = loop {
        match heavy.read(&mut buf) {
            Err(e) if e.raw_os_error() == Some(ECONNABORTED) => break true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the heavy connection: {other:?}"),
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(
        ended,
        "the connection past its bytes was not aborted:\n{}",
        d.log()
    );
    light
        .write_all(&[0; 10])
        .expect("the light connection writes on");
    let kind = light.read(&mut buf).map_err(|e| e.kind());
    assert!(
        matches!(
            kind,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "the light connection is untouched: {kind:?}"
    );
    let v = wait_for(&d, "limit", "counted", |v| v["faults"][0]["affected"] == 1);
    assert_eq!(v["faults"][0]["kind"], "abort_after_bytes", "{v:#}");
    d.ok(&["chaos", "abort", "limit"]);
}

/// An HTTP server answering every request `200 ok`, until stopped (then its
/// port refuses).
struct HealthServer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HealthServer {
    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering: the listener is closed, its port refuses.
    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the health server");
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn an_http_check_that_stops_answering_aborts_the_experiment() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let mut health = HealthServer::start();
    let quiet = RefusingPort::loopback_v4();
    let d = Daemon::start(&root, &pins, "");
    let file = ExperimentFile::new(&format!(
        "name = \"watched\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\n\
         [[abort]]\nhttp = \"http://{}/health\"\ntimeout = \"500ms\"\n",
        quiet.addr, health.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    wait_for(&d, "watched", "injecting", stage_is("injecting"));
    // Answering, it holds: well past the check's timeout.
    thread::sleep(Duration::from_secs(2));
    let v = status(&d, "watched");
    assert_eq!(v["stage"], "injecting", "{v:#}");
    health.stop();
    let v = wait_for(&d, "watched", "aborted", stage_is("aborted"));
    let abort = &v["abort"];
    assert_eq!(abort["reason"], "http", "{v:#}");
    assert_eq!(
        (abort["figure"].as_f64(), abort["bound"].as_f64()),
        (Some(0.0), Some(1.0))
    );
    assert!(
        abort["condition"]
            .as_str()
            .is_some_and(|c| c.contains(&health.addr.to_string())),
        "{v:#}"
    );
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

#[test]
fn a_policys_success_ratio_below_its_bound_aborts_and_an_unknown_policy_is_refused() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let quiet = RefusingPort::loopback_v4();
    let failing = RefusingPort::loopback_v4();
    let d = Daemon::start(
        &root,
        &pins,
        &format!(
            "[[policy]]\nname = \"backends\"\nmatch = [\"{}\"]\nfailure_threshold = 1000000\n\
             min_attempts = 1000000\n",
            failing.addr
        ),
    );
    let experiment = |policy: &str| {
        ExperimentFile::new(&format!(
            "name = \"ratio\"\nduration = \"10m\"\nbaseline = \"0s\"\n\
             [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\n\
             [[abort]]\nsuccess_ratio = \"policy:{policy}\"\nwindow = \"1s\"\nbelow = 0.5\n",
            quiet.addr
        ))
    };
    let unknown = experiment("nobody-has-it");
    let out = d.cli(&["chaos", "start", unknown.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("abort[0].success_ratio"), "{stderr}");
    let file = experiment("backends");
    d.ok(&["chaos", "start", file.path()]);
    wait_for(&d, "ratio", "injecting", stage_is("injecting"));
    // The policy's destination fails every connect: its ratio drops to 0.
    let refused = Place::cgroup(&root).connects(failing.addr, 20);
    assert!(
        refused.iter().all(|r| *r == Err(ECONNREFUSED)),
        "{refused:?}"
    );
    let v = wait_for(&d, "ratio", "aborted", stage_is("aborted"));
    assert_eq!(v["abort"]["reason"], "success_ratio", "{v:#}");
    assert_eq!(v["abort"]["figure"].as_f64(), Some(0.0), "{v:#}");
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

/// A guest behind the router's watched interface (the daemon runs in the
/// router, its packet plane in `hook`) connects to a target and to another
/// backend port while a `guest_refuse` runs for 3 s, after a connection of
/// its own to the target was established. A hostile guest forges a SYN on
/// that connection's ports.
///
/// With XDP on a veth, the guest's SYNs arrive with offloaded (partial)
/// checksums, which XDP cannot tell from corrupt ones: its packet plane
/// leaves them untracked, so the flows' accounting is checked in TC only.
/// The fault acts in TC after either.
fn a_guest_is_refused_during_a_packet_plane_experiment_only(hook: &str) {
    require_root();
    let net = Routed::new();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    // The victim's connection is held open by the server.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let target = {
        let held = held.clone();
        let listener = net.backend_listener(SocketAddr::new(net.backend_v4.into(), 0));
        let mut server = AcceptingServer::serve_with(
            listener,
            || {},
            move |c| {
                let mut held = held.lock().unwrap();
                if held.is_empty() {
                    held.push(c);
                }
            },
        );
        server.listens_in(net.open(Ns::Backend));
        server
    };
    let other = net.backend_server(SocketAddr::new(net.backend_v4.into(), 0));
    // A breaker that trips at the first failure: the fault's refusals are
    // not the destination's.
    let d = Daemon::start_in_netns(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"guests\"\nmatch = [\"{}\", \"{}\"]\nfailure_threshold = 1\n",
            target.addr, other.addr
        ),
        &format!(
            "interfaces = [\"{}\"]\npacket_hook = \"{hook}\"\n",
            net.router_guest_if
        ),
        net.path(Ns::Router),
    );
    let victim = net
        .in_ns(Ns::Guest, || TcpStream::connect(target.addr))
        .expect("the guest's own connection");
    let victim_port = victim.local_addr().unwrap().port();
    // Where the guest's own connection stands, should a wait fail.
    let context = || {
        format!(
            "flows: {:?}\nthe guest's connection (port {victim_port}): {:?}\nguest: {}\nbackend: {}",
            d.pinned_maps().flows.all(),
            victim.take_error(),
            net.exec(Ns::Guest, "ss", &["-tnio"]),
            net.exec(Ns::Backend, "ss", &["-tnio"]),
        )
    };
    // Its flow holds a slot, which nothing the guest does after may give
    // back: watched from here on.
    let watch = (hook == "tc").then(|| {
        let tracked = wait_until(&d, target.addr, |s| s["active"] == 1, context);
        assert_eq!(tracked["successes"], 1, "{tracked:#}");
        let flows = d.pinned_maps().flows.all().expect("reading FLOWS");
        let (key, _) = flows
            .iter()
            .find(|(k, _)| k.client_port == victim_port)
            .expect("the victim's flow");
        SlotWatch::start(&d, key.dest)
    });
    let file = ExperimentFile::new(&format!(
        "name = \"guests-refused\"\nduration = \"3s\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"guest_refuse\"\ndestinations = [\"{}\"]\n",
        target.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    let fault = armed(&d, "guests-refused");

    // Forged: a SYN on the victim's ports with a number of its own. It is
    // refused (counted), and must not end the victim's flow.
    let forged = Tcp::syn(
        net.guest_v4.into(),
        victim_port,
        target.addr.ip(),
        target.addr.port(),
    );
    net.inject(Ns::Guest, &forged.frame());

    let mine = net.in_ns(Ns::Guest, || {
        connects(
            &[target.addr, other.addr],
            Duration::from_secs(5),
            Duration::from_millis(20),
            Duration::from_secs(2),
        )
    });
    let to_target = |t: &&Attempt| t.to == 0;
    let during: Vec<&Attempt> = mine
        .iter()
        .filter(to_target)
        .filter(|t| fault.during(t))
        .collect();
    assert!(during.len() >= 10, "too few attempts while armed: {mine:?}");
    assert!(
        during.iter().all(|t| t.result == Err(ECONNREFUSED)),
        "the guest's SYNs to the target are answered with RSTs: {during:?}"
    );
    let after: Vec<&Attempt> = mine
        .iter()
        .filter(to_target)
        .filter(|t| fault.after(t))
        .collect();
    assert!(
        after.len() >= 10,
        "too few attempts after the deadline: {mine:?}"
    );
    assert!(
        after.iter().all(|t| t.result.is_ok()),
        "after its deadline the guest reaches the target again: {after:?}"
    );
    assert!(
        mine.iter().filter(|t| t.to == 1).all(|t| t.result.is_ok()),
        "another destination is reached throughout: {mine:?}"
    );

    let v = wait_for(&d, "guests-refused", "completed", stage_is("completed"));
    let refused = mine.iter().filter(|t| t.result.is_err()).count() as u64;
    assert_eq!(
        v["faults"][0]["affected"],
        refused + 1,
        "the kernel counted each refusal, the forged SYN's too: {v:#}"
    );
    // The refusals are the experiment's: no failure, no trip; each flow the
    // packet plane opened for a refused SYN was abandoned, its slot given
    // back. The victim's flow lives on, its connection too.
    if let Some(watch) = watch {
        let changes = watch.finish();
        if let Some(at) = changes.iter().position(|s| s.active == 0) {
            let near = |t: &&Attempt| t.at_ns.abs_diff(changes[at].at_ns) < 200_000_000;
            panic!(
                "the victim's slot was given back at {} ns ({} ns after the fault was armed, \
                 its deadline {} ns): changes {:#?}\nattempts within 200 ms: {:?}\n{}",
                changes[at].at_ns,
                changes[at].at_ns as i128 - fault.since_ns as i128,
                fault.until_ns,
                &changes[at.saturating_sub(8)..(at + 4).min(changes.len())],
                mine.iter().filter(near).collect::<Vec<_>>(),
                context(),
            );
        }
        let settled = |s: &Value| s["active"] == 1 && s["pending"] == 0;
        let state = wait_until(&d, target.addr, settled, context);
        let flows = d.pinned_maps().flows.all().expect("reading FLOWS");
        assert_eq!(state["state"], "closed", "{state:#}");
        assert_eq!(state["trips"], 0, "{state:#}");
        assert_eq!(state["failures"]["refused"], 0, "{state:#}");
        assert_eq!(state["abandoned"], refused, "{state:#}");
        assert!(
            flows.iter().any(|(k, _)| k.client_port == victim_port),
            "the victim's flow: {flows:?}"
        );
    }
    assert_eq!(
        (&victim).write(b"still here").ok(),
        Some(10),
        "the victim's connection survived the forged SYN"
    );
    assert!(victim.take_error().unwrap().is_none());
    assert_eq!(
        d.metrics().get(
            "enforcer_chaos_affected_packets_total",
            &[("kind", "guest_refuse")]
        ),
        Some((refused + 1) as f64)
    );
    assert_eq!(d.kernel_config().chaos_armed, 0);
    drop(held.lock().unwrap().drain(..));
}

/// A destination's slot counts as the kernel holds them, sampled on a thread
/// of its own every millisecond while a test runs, each change kept with its
/// time: an invariant of the counts ("the victim's slot is held throughout")
/// is checked on every change, and a breach is placed on the test's timeline.
struct SlotWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<Slots>>>,
}

/// One change [`SlotWatch`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slots {
    at_ns: u64,
    active: u32,
    pending: u32,
    attempts: u64,
}

impl SlotWatch {
    /// At most this many changes are kept (a bound, not an expectation).
    const MAX_CHANGES: usize = 100_000;

    fn start(d: &Daemon, dest: enforcer_common::dest::DestKey) -> Self {
        use std::sync::{Arc, atomic::AtomicBool};
        let dests = d.pinned_maps().dests;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut seen: Vec<Slots> = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed)
                && seen.len() < Self::MAX_CHANGES
            {
                if let Ok(Some(s)) = dests.get(&dest) {
                    let now = Slots {
                        at_ns: monotonic_ns(),
                        active: s.breaker.active,
                        pending: s.breaker.pending,
                        attempts: s.counters.attempts,
                    };
                    let same = |l: &Slots| Slots { at_ns: 0, ..*l } == Slots { at_ns: 0, ..now };
                    if !seen.last().is_some_and(same) {
                        seen.push(now);
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Every change seen until now.
    fn finish(mut self) -> Vec<Slots> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("the slot watch")
    }
}

impl Drop for SlotWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls the daemon's view of `dest` until `want` holds (generous
/// deadline); failing, says what `context` and the kernel's counters do.
fn wait_until(
    d: &Daemon,
    dest: SocketAddr,
    want: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.status_of(dest);
        if want(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            let metrics = d.ok(&["metrics"]);
            let kernel: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("enforcer_kernel_"))
                .collect();
            panic!(
                "{dest}: {s:#}\n{}\n{}\n{}",
                context(),
                kernel.join("\n"),
                d.log()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guest_behind_a_tc_watched_interface_is_refused_during_the_experiment_only() {
    a_guest_is_refused_during_a_packet_plane_experiment_only("tc");
}

#[test]
fn a_guest_behind_an_xdp_watched_interface_is_refused_during_the_experiment_only() {
    a_guest_is_refused_during_a_packet_plane_experiment_only("xdp");
}

#[test]
fn a_guest_blackhole_drops_every_syn_of_a_connection_and_the_breaker_counts_the_timeout() {
    require_root();
    let net = Routed::new();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let target = net.backend_server(SocketAddr::new(net.backend_v4.into(), 0));
    // The sweep ends a flow whose SYN came again as a timeout after 1 s.
    let d = Daemon::start_in_netns(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"guests\"\nmatch = [\"{}\"]\nfailure_threshold = 1\n\
             connect_timeout = \"1s\"\n",
            target.addr
        ),
        &format!("interfaces = [\"{}\"]\n", net.router_guest_if),
        net.path(Ns::Router),
    );
    let file = ExperimentFile::new(&format!(
        "name = \"guests-blackholed\"\nduration = \"20s\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"guest_blackhole\"\ndestinations = [\"{}\"]\n\
         [[abort]]\ntrip = \"{}\"\n",
        target.addr, target.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    let slot = armed(&d, "guests-blackholed").slot;
    // The first SYN and the kernel's retransmission one second later.
    let attempt = net.in_ns(Ns::Guest, || {
        TcpStream::connect_timeout(&target.addr, Duration::from_millis(2_500))
    });
    assert!(attempt.is_err(), "the guest's connect timed out");
    // Silence after a SYN sent again: the breaker's timeout, and its trip
    // aborts the experiment.
    let v = wait_for(&d, "guests-blackholed", "aborted by the trip", |v| {
        v["stage"] == "aborted"
    });
    assert_eq!(v["abort"]["reason"], "trip", "{v:#}");
    let state = d.status_of(target.addr);
    assert_eq!(state["failures"]["timeout"], 1, "{state:#}");
    assert_eq!(state["trips"], 1, "{state:#}");
    let fault = d.kernel_fault(slot);
    assert!(
        fault.syns_dropped >= 2 && fault.syns_dropped == fault.affected,
        "every SYN of the connection dropped: {fault:?}"
    );
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

#[test]
fn a_fault_on_a_priority_class_refuses_its_callers_only_and_an_unknown_class_is_refused() {
    require_root();
    let (root, pins) = (ScratchCgroup::new(), PinDir::new());
    let (web, batch) = (root.child(), root.child());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(
        &root,
        &pins,
        &format!(
            "[[class]]\nname = \"web\"\npriority = \"critical\"\ncgroups = [\"{}\"]\n\n\
             [[class]]\nname = \"batch\"\npriority = \"sheddable\"\ncgroups = [\"{}\"]\n",
            web.path().display(),
            batch.path().display()
        ),
    );
    let unknown = ExperimentFile::new(&format!(
        "name = \"x\"\nduration = \"1s\"\n[[fault]]\nkind = \"refuse\"\n\
         destinations = [\"{}\"]\nclasses = [\"nightly\"]\n",
        a.addr
    ));
    let out = d.cli(&["chaos", "start", unknown.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fault[0].classes"), "{stderr}");

    let file = ExperimentFile::new(&format!(
        "name = \"batch-refused\"\nduration = \"3s\"\nbaseline = \"0s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"{}\"]\nclasses = [\"batch\"]\n",
        a.addr
    ));
    d.ok(&["chaos", "start", file.path()]);
    let fault = armed(&d, "batch-refused");
    let every = Duration::from_millis(10);
    let (theirs, ours) = thread::scope(|s| {
        let run = |cgroup| {
            let place = Place::cgroup(cgroup);
            move || {
                attempts(
                    &place,
                    &[a.addr],
                    Duration::from_secs(2),
                    every,
                    every * 100,
                )
            }
        };
        let theirs = s.spawn(run(&batch));
        let ours = s.spawn(run(&web));
        (theirs.join().unwrap(), ours.join().unwrap())
    });
    let during = |all: &[Attempt]| -> Vec<Attempt> {
        all.iter().filter(|t| fault.during(t)).copied().collect()
    };
    let (theirs, ours) = (during(&theirs), during(&ours));
    assert!(
        theirs.len() >= 10 && ours.len() >= 10,
        "{theirs:?} {ours:?}"
    );
    assert!(
        theirs.iter().all(|t| t.result == Err(ECONNREFUSED)),
        "the class's callers are refused: {theirs:?}"
    );
    assert!(
        ours.iter().all(|t| t.result.is_ok()),
        "another class's callers are not: {ours:?}"
    );
    d.ok(&["chaos", "abort", "batch-refused"]);
    assert_eq!(d.kernel_config().chaos_armed, 0);
}

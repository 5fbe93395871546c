//! The real `enforcer` binary, run as a daemon against a scratch cgroup and a
//! private bpffs, and driven through its CLI.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};

use crate::{bpffs::PinDir, cgroup::ScratchCgroup};

/// The `enforcer` binary under test: `ENFORCER_BIN` (set by `cargo xtask test`),
/// or the workspace's debug build.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("ENFORCER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/enforcer"));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p enforcer` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Runs `enforcer ARGS` to completion.
pub fn enforcer(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("ENFORCER_CONFIG")
        .output()
        .expect("running enforcer")
}

/// A daemon process with its own socket, metrics port, config file and pins.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub metrics: SocketAddr,
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    dir: PathBuf,
    /// The cgroup the daemon runs in, when not the test's own.
    procs: Option<std::ffi::CString>,
    /// The network namespace (`/run/netns/…`) the daemon runs in, when not the
    /// test's own; its metrics address is then out of reach, and readiness is
    /// asked through the control socket.
    netns: Option<PathBuf>,
    /// A program (and its arguments) that runs the daemon: `setpriv …`.
    launcher: Vec<String>,
}

impl Daemon {
    /// Writes a configuration of `rest` (`[defaults]`, `[[policy]]` tables) and a
    /// `[daemon]` table pointing at `cgroup` and `pins`, and starts the
    /// daemon on it; waits until it is ready.
    pub fn start(cgroup: &ScratchCgroup, pins: &PinDir, rest: &str) -> Self {
        Self::start_with(cgroup, pins, rest, "", false)
    }

    /// As [`Self::start`], with more `[daemon]` keys, and optionally with the
    /// daemon itself inside the protected cgroup (as on a host where it protects
    /// everything, itself included).
    pub fn start_with(
        cgroup: &ScratchCgroup,
        pins: &PinDir,
        rest: &str,
        daemon_keys: &str,
        inside: bool,
    ) -> Self {
        let mut daemon = Self::configure(cgroup, pins, rest, daemon_keys, inside);
        daemon.spawn();
        daemon
    }

    /// A daemon with more `[daemon]` keys on a scratch cgroup and pin
    /// directory, whose one policy `name` covers `cidr` on a port that
    /// refuses on every address and never trips: each refused destination
    /// stays tracked, CLOSED, holding its entry of the destination map.
    pub fn never_tripping(
        name: &str,
        cidr: &str,
        daemon_keys: &str,
    ) -> (
        ScratchCgroup,
        crate::bpffs::PinDir,
        crate::net::RefusingPort,
        Self,
    ) {
        let (cgroup, pins) = (ScratchCgroup::new(), crate::bpffs::PinDir::new());
        let refusing = crate::net::RefusingPort::bind("0.0.0.0:0".parse().unwrap());
        let port = refusing.addr.port();
        let policy = format!(
            "[[policy]]\nname = \"{name}\"\nmatch = [\"{cidr}:{port}\"]\n\
             failure_threshold = 1000000\nmin_attempts = 1000000\n"
        );
        let d = Self::start_with(&cgroup, &pins, &policy, daemon_keys, false);
        (cgroup, pins, refusing, d)
    }

    /// As [`Self::start_with`], with the daemon run by `launcher` (a program
    /// and its arguments, the daemon's command line appended), which must
    /// exec it so that the child's pid is the daemon's: `setpriv
    /// --bounding-set=… --`, `sh -c 'umask 0; exec "$@"' sh`.
    pub fn start_launched(
        cgroup: &ScratchCgroup,
        pins: &PinDir,
        rest: &str,
        daemon_keys: &str,
        launcher: &[&str],
    ) -> Self {
        let mut daemon = Self::configure(cgroup, pins, rest, daemon_keys, false);
        daemon.launcher = launcher.iter().map(|s| (*s).to_owned()).collect();
        daemon.spawn();
        daemon
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `daemon.state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// As [`Self::start_with`], with the daemon inside the network namespace
    /// at `netns` (where the interfaces it watches are).
    pub fn start_in_netns(
        cgroup: &ScratchCgroup,
        pins: &PinDir,
        rest: &str,
        daemon_keys: &str,
        netns: PathBuf,
    ) -> Self {
        let mut daemon = Self::configure(cgroup, pins, rest, daemon_keys, false);
        daemon.netns = Some(netns);
        daemon.spawn();
        daemon
    }

    /// Writes the configuration as [`Self::start_with`] does, without
    /// starting the daemon (for starts that must fail).
    pub fn configure(
        cgroup: &ScratchCgroup,
        pins: &PinDir,
        rest: &str,
        daemon_keys: &str,
        inside: bool,
    ) -> Self {
        let dir = std::env::temp_dir().join(crate::unique_name("enforcer-daemon-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let metrics = SocketAddr::from(([127, 0, 0, 1], crate::net::free_loopback_port()));
        let pin_dir = pins.path().join("enforcer");
        let config = dir.join("enforcer.toml");
        // `rest` first: it may hold top-level keys (`policy = []`).
        let text = format!(
            "{rest}\n\n[daemon]\ncgroup = \"{}\"\npin_root = \"{}\"\npin_dir = \"{}\"\nsocket = \"{}\"\nmetrics = \"{metrics}\"\nstate_dir = \"{}\"\n{daemon_keys}\n",
            cgroup.path().display(),
            pins.path().display(),
            pin_dir.display(),
            dir.join("enforcer.sock").display(),
            dir.join("state").display(),
        );
        std::fs::write(&config, text).expect("writing the config");
        Self {
            child: None,
            socket: dir.join("enforcer.sock"),
            metrics,
            config,
            pin_dir,
            dir,
            procs: inside.then(|| cgroup.procs_path()),
            netns: None,
            launcher: Vec::new(),
        }
    }

    /// Rewrites the configuration file with `edit` (for a reload or the next
    /// start); returns the text it held.
    pub fn edit_config(&self, edit: impl FnOnce(&str) -> String) -> String {
        let text = std::fs::read_to_string(&self.config).expect("reading the config");
        std::fs::write(&self.config, edit(&text)).expect("writing the config");
        text
    }

    /// (Re)starts the process on the same configuration and waits for readiness.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("daemon.log")).expect("log file");
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(procs) = self.procs.clone() {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: the hook only writes to cgroup.procs (async-signal-safe).
            unsafe {
                command.pre_exec(move || ScratchCgroup::join_raw(&procs));
            }
        }
        if let Some(path) = &self.netns {
            use std::os::unix::process::CommandExt as _;
            let ns = std::fs::File::open(path).expect("opening the network namespace");
            let ns = std::os::fd::OwnedFd::from(ns);
            // SAFETY: the hook only calls setns (async-signal-safe).
            unsafe {
                command.pre_exec(move || crate::netns::enter_raw(&ns));
            }
        }
        let child = command.spawn().expect("starting the daemon");
        self.child = Some(child);
        // Generous: under full emulation (the 6.1 run) the verifier alone
        // takes tens of seconds for the packet programs.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.ready() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon is not ready after 120 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self) -> bool {
        if self.netns.is_some() {
            return self.socket.exists() && self.cli(&["status"]).status.success();
        }
        http_get(self.metrics, "/readyz").is_some_and(|(status, _)| status == 200)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// `enforcer uninstall` on this daemon's configuration and socket (through
    /// the daemon when it runs, on the pins directly when not).
    pub fn run_uninstall(&self) -> Output {
        enforcer(&[
            "uninstall",
            "--config",
            self.config.to_str().unwrap(),
            "--socket",
            self.socket.to_str().unwrap(),
        ])
    }

    /// [`Self::run_uninstall`], which must succeed.
    pub fn uninstall(&self) {
        let out = self.run_uninstall();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `enforcer ARGS --socket <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let socket = self.socket.to_str().unwrap();
        full.extend(["--socket", socket]);
        enforcer(&full)
    }

    /// As [`Self::cli`], asserting success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "enforcer {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The status of `dest` (in whichever namespace), picked from the whole
    /// list; `Null` when it is not tracked.
    pub fn status_of(&self, dest: std::net::SocketAddr) -> serde_json::Value {
        let all = self.json(&["status"]);
        all["destinations"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["dest"] == dest.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until no connection holds a slot of `dest`: the kernel records
    /// a close as the socket finishes it, after the process has let go.
    pub fn wait_no_slot_held(&self, dest: SocketAddr) {
        crate::wait::until("no slot held", || {
            let status = self.status_of(dest);
            if status["active"].as_u64().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(format!("slots still held: {status}"))
            }
        });
    }

    /// `enforcer ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&full)).expect("JSON output")
    }

    /// The status of one destination.
    pub fn dest(&self, dest: SocketAddr) -> serde_json::Value {
        let status = self.json(&["status", &dest.to_string()]);
        status["destinations"][0].clone()
    }

    /// `/metrics`, parsed: scraped from the daemon's network namespace,
    /// where its listener is.
    pub fn metrics(&self) -> Metrics {
        let addr = self.metrics;
        let scraped = match &self.netns {
            None => http_get(addr, "/metrics"),
            Some(path) => {
                let ns: std::os::fd::OwnedFd = std::fs::File::open(path)
                    .expect("opening the daemon's namespace")
                    .into();
                thread::spawn(move || {
                    crate::netns::enter_raw(&ns).expect("setns");
                    http_get(addr, "/metrics")
                })
                .join()
                .expect("scraping from the daemon's namespace")
            }
        };
        let (status, body) = scraped.expect("scraping /metrics");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    /// Overwrites policy `id`'s shared counts (`POLICY_STATS`) through the
    /// pinned map, as a daemon of an older version (or anything else holding
    /// the pins) could have left them.
    pub fn write_policy_stats(&self, id: u32, stats: enforcer_common::policy::PolicyStats) {
        let mut array: aya::maps::Array<_, enforcer_common::policy::PolicyStats> =
            aya::maps::Array::try_from(self.pinned_map(enforcer_common::maps::POLICY_STATS))
                .expect("POLICY_STATS is an array");
        array.set(id, stats, 0).expect("writing POLICY_STATS");
    }

    /// The configuration every program reads, from the pinned map.
    pub fn kernel_config(&self) -> enforcer_common::config::Config {
        self.pinned_maps().config.get().expect("reading CONFIG")
    }

    /// Chaos slot `slot` as the kernel holds it (with what it counted), from
    /// the pinned map.
    pub fn kernel_fault(&self, slot: u32) -> enforcer_common::chaos::Fault {
        self.pinned_maps().chaos.get(slot).expect("reading CHAOS")
    }

    /// The priority classes the programs read, from the pinned maps: the
    /// table and every listed cgroup's id and class, sorted by id.
    pub fn kernel_classes(
        &self,
    ) -> (
        enforcer_common::class::ClassTable,
        Vec<(u64, enforcer_common::class::Priority)>,
    ) {
        let maps = self.pinned_maps();
        let table = maps.classes.table().expect("reading CLASS_TABLE");
        let mut cgroups = maps.classes.cgroups().expect("reading CLASS_CGROUPS");
        cgroups.sort_by_key(|(id, _)| *id);
        (table, cgroups)
    }

    /// The daemon's maps, opened from their pins (whether the daemon runs or
    /// not).
    pub fn pinned_maps(&self) -> enforcer::bpf::Maps {
        let pins = enforcer::bpf::pins::PinDir::new(&self.pin_dir);
        enforcer::bpf::Maps::open(&pins).unwrap_or_else(|e| {
            panic!("opening the maps pinned in {}: {e}", self.pin_dir.display())
        })
    }

    /// The daemon's map `name`, opened from its pin as aya's untyped map:
    /// to write what the daemon's own types never would.
    fn pinned_map(&self, name: &str) -> aya::maps::Map {
        let path = self.pin_dir.join("maps").join(name);
        let data = aya::maps::MapData::from_pin(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        aya::maps::Map::from_map_data(data).expect("a map")
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// The rules the programs read now, as `(rule, policy id)`, sorted: the
    /// trie of the bank the pinned configuration names, read from its pin
    /// (whether the daemon runs or not).
    pub fn kernel_rules(&self) -> Vec<(String, u32)> {
        let maps = self.pinned_maps();
        let rules = maps.policies.rules(&maps.config);
        let mut rules: Vec<(String, u32)> = rules
            .expect("reading the rules")
            .into_iter()
            .map(|(rule, id)| (rule.to_string(), id))
            .collect();
        rules.sort();
        rules
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping");
        }
    }

    /// SIGHUP: reload the configuration file.
    pub fn hangup(&self) {
        self.signal(Signal::HUP);
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_child(self.child.as_ref().expect("running"));
        let _ = kill_process(pid, signal);
    }

    /// Waits for the process to exit (after an uninstall or a signal).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not exit:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `enforcer events`, followed: its JSON lines as they come, on a channel so
/// that a missing line fails the test instead of hanging it.
pub struct Follower {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Follower {
    /// Follows `daemon`'s events; returns once the stream is live (an
    /// override of a documentation address, set and removed, shows up).
    pub fn start(daemon: &Daemon) -> Self {
        let mut child = Command::new(binary())
            .args(["events", "--socket", daemon.socket.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("enforcer events");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let follower = Self { child, lines };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            daemon.ok(&["trip", "192.0.2.1:9"]);
            daemon.ok(&["reset", "192.0.2.1:9"]);
            if follower
                .lines
                .recv_timeout(Duration::from_millis(200))
                .is_ok()
            {
                return follower;
            }
            assert!(Instant::now() < deadline, "enforcer events shows nothing");
        }
    }

    /// Every event received so far (without waiting).
    pub fn drain(&mut self) -> Vec<serde_json::Value> {
        self.lines.try_iter().collect()
    }

    /// The next event for which `want` holds (others are passed over); fails
    /// the test when none comes within 30 s.
    pub fn next_where(&mut self, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .lines
                .recv_timeout(left)
                .expect("the awaited event did not come");
            if want(&event) {
                return event;
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP GET on loopback with curl (a real client: the daemon's answers
/// may be chunked): status and body; `None` when nothing answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n')?;
    match status.trim().parse() {
        Ok(0) | Err(_) => None,
        Ok(status) => Some((status, body.to_owned())),
    }
}

/// Prometheus text, parsed into `name{labels}` → value.
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("malformed sample: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("malformed value: {line}")),
            };
            map.insert(canonical(series), value);
        }
        Self(map)
    }

    /// The names of every sample (`_bucket`, `_sum`, `_count` of a
    /// histogram apart).
    pub fn names(&self) -> std::collections::BTreeSet<&str> {
        self.0
            .keys()
            .map(|series| series.split_once('{').map_or(series.as_str(), |(n, _)| n))
            .collect()
    }

    /// The value of `name` with exactly these labels (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        l.sort();
        let key = if l.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", l.join(","))
        };
        self.0.get(&key).copied()
    }
}

/// `name{b="2",a="1"}` → `name{a="1",b="2"}`.
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_owned();
    };
    let inner = rest.trim_end_matches('}');
    let mut labels: Vec<&str> = inner
        .split("\",")
        .map(|l| l.trim_end_matches('"'))
        .collect();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|l| format!("{l}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

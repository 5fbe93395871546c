//! `cargo xtask demo [--quick]`: what the enforcer does, in two minutes, on
//! nothing but what the demo makes and removes again: a network namespace
//! holding a real backend (a Python TCP server), a client looping connects
//! to it from a scratch cgroup, and a daemon of its own (its own pins,
//! socket and state) protecting that cgroup. The backend is stopped: the
//! breaker trips, connects are refused in microseconds without leaving the
//! host, a half-open probe finds the backend still down; the backend comes
//! back: the next probe closes the circuit. `--quick` runs the same story
//! on a short schedule, and `cargo xtask test` runs it so, checking the
//! story and that nothing is left behind.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{build, cmd, toolchain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The short schedule (a few seconds a step), as the tests run it.
    #[arg(long)]
    quick: bool,
}

/// How long each act lasts.
struct Schedule {
    /// The backend up, before it is stopped.
    healthy: Duration,
    /// The backend down: the trip, the rejections, a failed probe.
    down: Duration,
    /// The policy's open period and its ceiling.
    open: &'static str,
    open_max: &'static str,
    /// The longest any expected change may take to show.
    deadline: Duration,
}

const FULL: Schedule = Schedule {
    healthy: Duration::from_secs(10),
    down: Duration::from_secs(25),
    open: "5s",
    open_max: "15s",
    deadline: Duration::from_secs(60),
};

const QUICK: Schedule = Schedule {
    healthy: Duration::from_secs(2),
    down: Duration::from_secs(4),
    open: "1s",
    open_max: "2s",
    deadline: Duration::from_secs(30),
};

pub fn execute(Args { quick }: Args) -> anyhow::Result<()> {
    toolchain::ensure()?;
    build::build_daemon()?;
    run(if quick { &QUICK } else { &FULL })
}

/// The quick demo, for `cargo xtask test` (the daemon built already).
pub fn quick() -> anyhow::Result<()> {
    run(&QUICK)
}

/// The demo, on the daemon `build_daemon` built; fails if the story did not
/// happen as told or anything it made is left.
fn run(schedule: &Schedule) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!(
            "the demo loads BPF programs and makes a cgroup and a network namespace: run as root"
        );
    }
    let mut scratch = Scratch::new()?;
    let made = scratch.made();
    let told = tell(&mut scratch, schedule);
    drop(scratch);
    left_behind(&made)?;
    told
}

/// The story, on `scratch`.
fn tell(s: &mut Scratch, schedule: &Schedule) -> anyhow::Result<()> {
    let port = free_port()?;
    println!(
        "demo: a backend in network namespace {}, on 127.0.0.1:{port}",
        s.netns
    );
    let backend = s.backend(port)?;
    let backend = s.track(backend);
    s.start_daemon(port, schedule)?;
    println!(
        "demo: the enforcer protects cgroup {}, where a client connects every 20 ms: \
         policy `demo` trips after 3 failures and refuses with EHOSTUNREACH while open",
        s.cgroup.display()
    );
    let client = s.client(port)?;
    let lines = follow(client.stdout);
    s.track(client.child);

    act(&format!(
        "The backend is up ({} s).",
        schedule.healthy.as_secs()
    ));
    show_for(&lines, schedule.healthy);
    s.status()?;

    act("The backend stops. Its port refuses; the breaker counts the failures and trips.");
    s.stop(backend);
    s.wait_for_state("open", schedule.deadline)?;
    s.status()?;
    act(&format!(
        "Open: connects fail at once, inside connect(), without a packet leaving ({} s). \
         When the open period ends, one half-open probe goes through: the backend is still \
         down, so the circuit opens again, for longer.",
        schedule.down.as_secs()
    ));
    let down = show_for(&lines, schedule.down);
    s.status()?;
    // A half-open probe went through and failed: more refusals than the
    // three that tripped it.
    let d = s.destination()?;
    if d["probes"].as_u64() < Some(1) || d["failures"]["refused"].as_u64() <= Some(3) {
        bail!("no half-open probe found the backend down: {d}");
    }

    act("The backend comes back. The next probe succeeds and the circuit closes.");
    let back = s.backend(port)?;
    s.track(back);
    s.wait_for_state("closed", schedule.deadline)?;
    let after = show_for(&lines, schedule.healthy);
    s.status()?;

    let rejected = down.rejected + after.rejected;
    if rejected == 0 {
        bail!("no connect was rejected while the backend was down");
    }
    if after.ok == 0 {
        bail!("no connect succeeded once the backend was back");
    }
    act(&format!(
        "Done: {rejected} connects rejected by the enforcer, in {} µs at the median as \
         the client times connect() (Python's exception included; a connect to the live \
         backend took {} µs), none of them reaching the backend; the probes found it back \
         and the circuit closed.",
        down.rejected_us.max(after.rejected_us),
        after.ok_us
    ));
    Ok(())
}

fn act(text: &str) {
    println!("\n== {text}");
}

/// A port no one listens on now, for the backend.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the client reports each second (its JSON line), and over a stretch
/// of them.
#[derive(Default, serde::Deserialize)]
struct Tally {
    ok: u64,
    ok_us: u64,
    refused: u64,
    rejected: u64,
    rejected_us: u64,
}

/// Prints the client's reports for `length`, and tallies them (the medians
/// are the last second's that had any).
fn show_for(lines: &mpsc::Receiver<String>, length: Duration) -> Tally {
    let end = Instant::now() + length;
    let mut tally = Tally::default();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            continue;
        };
        let Ok(second) = serde_json::from_str::<Tally>(&line) else {
            println!("   client: {line}");
            continue;
        };
        println!(
            "   client: ok {} (median {} µs), refused by the backend {}, rejected by the \
             enforcer {} (median {} µs)",
            second.ok, second.ok_us, second.refused, second.rejected, second.rejected_us
        );
        tally.ok += second.ok;
        tally.refused += second.refused;
        tally.rejected += second.rejected;
        if second.ok > 0 {
            tally.ok_us = second.ok_us;
        }
        if second.rejected > 0 {
            tally.rejected_us = second.rejected_us;
        }
    }
    tally
}

/// The lines of `out`, as they come.
fn follow(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The client: a connect every 20 ms, a summary line each second.
const CLIENT: &str = r#"
import errno, json, socket, statistics, sys, time
port = int(sys.argv[1])
ok, refused, rejected = [], 0, []
last = time.monotonic()
while True:
    s = socket.socket()
    t = time.perf_counter_ns()
    try:
        s.connect(("127.0.0.1", port))
        ok.append((time.perf_counter_ns() - t) // 1000)
    except OSError as e:
        took = (time.perf_counter_ns() - t) // 1000
        if e.errno == errno.EHOSTUNREACH:
            rejected.append(took)
        else:
            refused += 1
    finally:
        s.close()
    if time.monotonic() - last >= 1:
        med = lambda xs: int(statistics.median(xs)) if xs else 0
        print(json.dumps({"ok": len(ok), "ok_us": med(ok), "refused": refused,
                          "rejected": len(rejected), "rejected_us": med(rejected)}),
              flush=True)
        ok, refused, rejected = [], 0, []
        last = time.monotonic()
    time.sleep(0.02)
"#;

/// The backend: accepts and closes.
const BACKEND: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(128)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// A started process and its output.
struct Started {
    child: Child,
    stdout: std::process::ChildStdout,
}

/// Everything the demo makes, removed on drop (processes by PID first).
struct Scratch {
    dir: PathBuf,
    cgroup: PathBuf,
    netns: String,
    pin_dir: PathBuf,
    socket: PathBuf,
    binary: PathBuf,
    children: Vec<Child>,
    daemon: Option<Child>,
}

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("enforcer-demo-{id}"));
        fs::create_dir_all(&dir)?;
        let scratch = Self {
            socket: dir.join("enforcer.sock"),
            dir,
            cgroup: cgroup2_root()?.join(format!("enforcer-demo-{id}")),
            netns: format!("enforcer-demo-{id}"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/enforcer-demo-{id}")),
            binary: cmd::workspace_root().join("target/debug/enforcer"),
            children: Vec::new(),
            daemon: None,
        };
        fs::create_dir(&scratch.cgroup)
            .with_context(|| format!("making cgroup {}", scratch.cgroup.display()))?;
        run_quiet(Command::new("ip").args(["netns", "add", &scratch.netns]))?;
        run_quiet(Command::new("ip").args(["-n", &scratch.netns, "link", "set", "lo", "up"]))?;
        Ok(scratch)
    }

    /// Every path the demo makes: its cgroup, namespace, pins and files.
    fn made(&self) -> Vec<PathBuf> {
        vec![
            self.cgroup.clone(),
            PathBuf::from("/run/netns").join(&self.netns),
            self.pin_dir.clone(),
            self.dir.clone(),
        ]
    }

    fn track(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    /// Stops the tracked child `at` (by its PID) and waits for it.
    fn stop(&mut self, at: usize) {
        if let Some(child) = self.children.get_mut(at) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn backend(&self, port: u16) -> anyhow::Result<Child> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "python3", "-c", BACKEND])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the backend")?;
        // Listening before anyone connects.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let listening = Command::new("ip")
                .args(["netns", "exec", &self.netns, "ss", "-Htln"])
                .arg(format!("sport = :{port}"))
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if listening {
                return Ok(child);
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("the backend did not listen on port {port}")
    }

    /// The client, in the cgroup and the namespace.
    fn client(&self, port: u16) -> anyhow::Result<Started> {
        let procs = self.cgroup.join("cgroup.procs");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1" && exec ip netns exec "$2" python3 -u -c "$3" "$4""#)
            .args(["sh", &procs.to_string_lossy(), &self.netns, CLIENT])
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the client")?;
        let stdout = child.stdout.take().context("the client's output")?;
        Ok(Started { child, stdout })
    }

    fn config(&self) -> PathBuf {
        self.dir.join("enforcer.toml")
    }

    fn start_daemon(&mut self, port: u16, schedule: &Schedule) -> anyhow::Result<()> {
        let config = self.config();
        fs::write(
            &config,
            format!(
                "[daemon]\ncgroup = \"{}\"\npin_dir = \"{}\"\nsocket = \"{}\"\n\
                 state_dir = \"{}\"\nmetrics = \"127.0.0.1:{}\"\n\n\
                 [[policy]]\nname = \"demo\"\nmatch = [\"127.0.0.1:{port}\"]\n\
                 failure_threshold = 3\nopen = \"{}\"\nopen_max = \"{}\"\n\
                 close_after = 1\nerrno = \"EHOSTUNREACH\"\n",
                self.cgroup.display(),
                self.pin_dir.display(),
                self.socket.display(),
                self.dir.join("state").display(),
                free_port()?,
                schedule.open,
                schedule.open_max,
            ),
        )?;
        let log = fs::File::create(self.dir.join("daemon.log"))?;
        let daemon = Command::new(&self.binary)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the daemon")?;
        self.daemon = Some(daemon);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.enforcer(&["status"]).is_ok() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the daemon did not answer: {}",
            fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
        )
    }

    /// `enforcer ARGS --socket …`: its output, or why it failed.
    fn enforcer(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.binary)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()?;
        if !out.status.success() {
            bail!(
                "enforcer {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn status(&self) -> anyhow::Result<()> {
        for line in self.enforcer(&["status"])?.lines() {
            println!("   {line}");
        }
        Ok(())
    }

    /// The demo's one destination, as `enforcer status -o json` shows it.
    fn destination(&self) -> anyhow::Result<serde_json::Value> {
        let status: serde_json::Value =
            serde_json::from_str(&self.enforcer(&["status", "-o", "json"])?)?;
        Ok(status["destinations"][0].clone())
    }

    /// Waits until the demo's destination is in `state` (as the status
    /// names it).
    fn wait_for_state(&self, state: &str, deadline: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.destination()?["state"] == state {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("the destination did not become {state} within {deadline:?}")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Through the daemon: it detaches, unpins and exits.
        let config = self.config();
        let _ = self.enforcer(&["uninstall", "--config", &config.to_string_lossy()]);
        if let Some(mut daemon) = self.daemon.take() {
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && matches!(daemon.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = fs::remove_dir(&self.cgroup);
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Fails naming whatever of `made` is still there.
fn left_behind(made: &[PathBuf]) -> anyhow::Result<()> {
    let left: Vec<String> = made
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !left.is_empty() {
        bail!("the demo left behind: {}", left.join(", "));
    }
    Ok(())
}

/// Where cgroup v2 is mounted.
fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            let (_, at, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(at))
        })
        .context("no cgroup v2 mount")
}

fn run_quiet(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

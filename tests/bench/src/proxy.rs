//! Scenario 6, against a proxy: a small request/response workload direct to a
//! backend with enforcer attached versus through HAProxy in TCP mode, and what a
//! client sees when the backend is down in each case.
//!
//! The backend is an echo server (a thread on a loopback port, pinned away from
//! the client): per connection it reads a request of `REQUEST` bytes, writes
//! them back, and waits for the client to close. The client, in a scratch
//! cgroup with enforcer attached, does one request per short-lived connection
//! (connect, write, read the response, close with a RST), as a breaker protects
//! it. Both variants run from that cgroup, interleaved in one client process:
//!
//! - (a) direct to the backend, which a policy tracks (the breaker's programs
//!   run and count every connection);
//! - (b) through HAProxy (`mode tcp`, one server with health checks): the
//!   client's connect goes to HAProxy's port, which no policy tracks, and
//!   HAProxy (outside the cgroup) connects to the backend: enforcer's policy
//!   is not on this path.
//!
//! Backend down: the echo server drops its listener (connects are refused).
//! (a) after the breaker trips, `connect()` fails with the policy's errno;
//! (b) with health checks, once HAProxy marks the server DOWN, it accepts the
//! client's connection and closes it; (c) without health checks, HAProxy tries
//! the backend, retries, then closes. The figure is the time from the start of
//! the client's `connect()` to the moment it knows the request failed.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    breaker::State,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{self, AcceptingServer, RefusingPort},
};
use serde::Serialize;

use crate::{
    client::{self, wire},
    compare::Check,
    fail_fast::EHOSTUNREACH,
    interleave::{self, Round},
    report::{self, Goal, Table},
    stats::{self, Summary},
};

/// Request and response size, bytes.
const REQUEST: usize = 64;
const HOUR_NS: u64 = 3_600_000_000_000;
/// Failures that trip the breaker of (a).
const THRESHOLD: u32 = 5;
/// HAProxy's `timeout connect` (also its turn-around delay before a retry).
const HAPROXY_CONNECT_MS: u64 = 100;
const HAPROXY_RETRIES: u32 = 3;
/// Health checks of (b): every 100 ms, DOWN after 2 failures.
const CHECK_INTER_MS: u64 = 100;
const CHECK_FALL: u64 = 2;
/// How long a client waits for a response before it gives up (bounds the run).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub rounds: usize,
    pub round: Round,
    /// Attempts per variant with the backend down (a and b).
    pub down: usize,
    /// Attempts through HAProxy without health checks (c): each waits for its retries.
    pub down_unchecked: usize,
}

pub const FULL: Size = Size {
    rounds: 10,
    round: Round {
        per_variant: 1_000,
        slice: 100,
    },
    down: 200,
    down_unchecked: 20,
};
pub const QUICK: Size = Size {
    rounds: 2,
    round: Round {
        per_variant: 150,
        slice: 50,
    },
    down: 50,
    down_unchecked: 3,
};

const VARIANTS: [&str; 2] = [
    "(a) direct, enforcer attached and tracking the backend",
    "(b) through HAProxy (mode tcp, health checks)",
];

#[derive(Clone, Debug, Serialize)]
pub struct Healthy {
    pub name: &'static str,
    /// connect + request + response + close, per request.
    pub request: Summary,
    /// One client, requests back to back: requests / the sum of their times.
    pub requests_per_s: f64,
    pub ratio_p50_vs_direct: f64,
    pub ratio_p99_vs_direct: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Down {
    pub name: &'static str,
    /// Start of connect() → the client knows the request failed.
    pub time_to_failure: Summary,
    /// What the client saw, and how often.
    pub seen: Vec<(String, usize)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub request_bytes: usize,
    pub haproxy_version: String,
    pub healthy: Vec<Healthy>,
    /// Connects refused before the breaker of (a) tripped.
    pub refused_before_trip: usize,
    pub down: Vec<Down>,
    pub checks: Vec<Check>,
}

/// The echo backend: one connection at a time (the client is sequential).
struct Echo {
    addr: SocketAddrV4,
    server: Option<AcceptingServer>,
}

impl Echo {
    fn start(cpu: Option<usize>) -> Self {
        let listener: TcpListener = RefusingPort::loopback_v4().listen();
        let SocketAddr::V4(addr) = listener.local_addr().expect("local_addr") else {
            unreachable!("bound on 127.0.0.1")
        };
        let pin = move || {
            if let Some(cpu) = cpu {
                client::pin_to_cpu(cpu);
            }
        };
        let echo = |mut conn: TcpStream| {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; REQUEST];
            if conn.read_exact(&mut buf).is_ok() && conn.write_all(&buf).is_ok() {
                // Until the client closes (HAProxy's health checks send nothing).
                let mut sink = [0u8; 64];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            }
        };
        Self {
            addr,
            server: Some(AcceptingServer::serve_with(listener, pin, echo)),
        }
    }

    /// Drops the listener: from now on connects to it are refused.
    fn stop(&mut self) {
        self.server = None;
    }
}

/// Our HAProxy process: its config in a temp dir, killed by PID on drop.
struct HaProxy {
    child: Child,
    dir: PathBuf,
    checked: SocketAddrV4,
    unchecked: SocketAddrV4,
}

fn free_port() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, net::free_loopback_port())
}

impl HaProxy {
    fn start(backend: SocketAddrV4, cpu: Option<usize>) -> Self {
        let (checked, unchecked) = (free_port(), free_port());
        let dir =
            std::env::temp_dir().join(format!("enforcer-bench-haproxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the HAProxy dir");
        let config = format!(
            "global\n    nbthread 1\n    maxconn 4096\n\
             defaults\n    mode tcp\n    timeout connect {HAPROXY_CONNECT_MS}ms\n    \
             timeout client 5s\n    timeout server 5s\n    retries {HAPROXY_RETRIES}\n    \
             option nolinger\n\
             frontend fe_checked\n    bind {checked}\n    default_backend be_checked\n\
             backend be_checked\n    server echo {backend} check inter {CHECK_INTER_MS}ms \
             fall {CHECK_FALL} rise 1\n\
             frontend fe_unchecked\n    bind {unchecked}\n    default_backend be_unchecked\n\
             backend be_unchecked\n    server echo {backend}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("writing the HAProxy config");
        let mut command = Command::new("haproxy");
        command
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cpu) = cpu {
            use std::os::unix::process::CommandExt;
            // SAFETY: sched_setaffinity is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || {
                    client::pin_to_cpu(cpu);
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .expect("starting haproxy (is it installed? `cargo xtask bench` installs it)");
        let proxy = Self {
            child,
            dir,
            checked,
            unchecked,
        };
        // Ready when both frontends accept (bounded).
        let end = Instant::now() + Duration::from_secs(5);
        for addr in [checked, unchecked] {
            loop {
                if let Ok(s) = TcpStream::connect(addr) {
                    net::close_with_rst(OwnedFd::from(s));
                    break;
                }
                assert!(Instant::now() < end, "haproxy does not listen on {addr}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        proxy
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What one request ended with.
const OK: u64 = 0;
const EOF: u64 = 1;
const RESET: u64 = 2;
const TIMEOUT: u64 = 3;
/// connect() failed with errno `n`: `CONNECT_ERRNO + n`.
const CONNECT_ERRNO: u64 = 1_000;
/// Another I/O error `n`: `IO_ERRNO + n`.
const IO_ERRNO: u64 = 2_000;

fn outcome_name(code: u64) -> String {
    match code {
        OK => "response".to_owned(),
        EOF => "connected, then EOF".to_owned(),
        RESET => "connected, then RST (ECONNRESET)".to_owned(),
        TIMEOUT => "connected, then no answer (timeout)".to_owned(),
        c if c >= IO_ERRNO => format!("connected, then errno {}", c - IO_ERRNO),
        c => {
            let errno = (c - CONNECT_ERRNO) as i32;
            let name = match errno {
                EHOSTUNREACH => " (EHOSTUNREACH)",
                libc::ECONNREFUSED => " (ECONNREFUSED)",
                _ => "",
            };
            format!("connect() failed: errno {errno}{name}")
        }
    }
}

/// One request on a fresh connection: its outcome and its time, from before
/// `connect()` to the end (response read and socket closed, or the failure).
fn request(addr: SocketAddrV4) -> (u64, u64) {
    let start = Instant::now();
    let stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            let code = CONNECT_ERRNO + e.raw_os_error().unwrap_or(0) as u64;
            return (code, client::nanos(start.elapsed()));
        }
    };
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut s = &stream;
    let buf = [7u8; REQUEST];
    let mut back = [0u8; REQUEST];
    let io = s.write_all(&buf).and_then(|()| s.read_exact(&mut back));
    let code = match io {
        Ok(()) => OK,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => EOF,
        Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => RESET,
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => RESET,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            TIMEOUT
        }
        Err(e) => IO_ERRNO + e.raw_os_error().unwrap_or(0) as u64,
    };
    net::close_with_rst(OwnedFd::from(stream));
    (code, client::nanos(start.elapsed()))
}

/// `n` requests to `addr` from a child in `cgroup`: per request (time, outcome).
fn requests(cgroup: &ScratchCgroup, addr: SocketAddrV4, n: usize) -> Vec<(u64, u64)> {
    let out = Place::cgroup(cgroup).run(|| {
        client::pin_to_cpu(0);
        let (mut times, mut codes) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let (code, ns) = request(addr);
            times.push(ns);
            codes.push(code);
        }
        wire::encode(&[&times, &codes])
    });
    let series = wire::decode(&out, 2);
    series[0]
        .iter()
        .copied()
        .zip(series[1].iter().copied())
        .collect()
}

fn down(name: &'static str, samples: &[(u64, u64)]) -> Down {
    let times: Vec<u64> = samples.iter().map(|s| s.0).collect();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for &(_, code) in samples {
        let label = outcome_name(code);
        match seen.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => seen.push((label, 1)),
        }
    }
    Down {
        name,
        time_to_failure: Summary::of(&times),
        seen,
    }
}

fn dest_state(enforcer: &Enforcer, addr: SocketAddrV4) -> Option<(u32, u64)> {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(addr)))
        .expect("reading DESTS")
        .map(|s| (s.breaker.state, s.counters.rejected_circuit))
}

pub fn run(size: Size) -> Results {
    let other_cpu = (std::thread::available_parallelism().map_or(1, usize::from) > 1).then_some(1);
    let mut backend = Echo::start(other_cpu);
    let proxy = HaProxy::start(backend.addr, other_cpu);
    let protected = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&protected);
    let policy = Policy {
        failure_threshold: THRESHOLD,
        errno: EHOSTUNREACH as u32,
        ..fixtures::base_policy()
    };
    fixtures::apply_one(
        &mut enforcer,
        SocketAddr::V4(backend.addr),
        policy,
        BackoffRow::exponential(HOUR_NS, HOUR_NS),
    );
    let mut checks = Vec::new();

    // Healthy: interleaved, one client process.
    let addrs = [backend.addr, proxy.checked];
    let cgroups = [&protected, &protected];
    let rounds: Vec<_> = (0..size.rounds)
        .map(|r| {
            eprintln!("bench: against a proxy: round {}/{}", r + 1, size.rounds);
            interleave::round(&cgroups, size.round, 0, |v| {
                let (code, ns) = request(addrs[v]);
                assert_eq!(code, OK, "{}: {}", VARIANTS[v], outcome_name(code));
                (ns, ns)
            })
        })
        .collect();
    let m = interleave::by_variant(&rounds);
    let tracked = enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(backend.addr)))
        .expect("reading DESTS");
    let proxied = enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(proxy.checked)))
        .expect("reading DESTS");
    checks.push(Check::expect(
        tracked.is_some_and(|s| s.breaker.state == State::Closed as u32) && proxied.is_none(),
        "the backend is tracked (CLOSED) in the kernel's map and HAProxy's port is not".to_owned(),
    ));
    let all: Vec<Vec<u64>> = m.iter().map(|v| v.cycle.concat()).collect();
    let direct = Summary::of(&all[0]);
    let healthy = VARIANTS
        .iter()
        .zip(&all)
        .map(|(name, samples)| {
            let s = Summary::of(samples);
            let total: u64 = samples.iter().sum();
            Healthy {
                name,
                request: s,
                requests_per_s: samples.len() as f64 * 1e9 / total.max(1) as f64,
                ratio_p50_vs_direct: stats::ratio(direct.p50_ns, s.p50_ns),
                ratio_p99_vs_direct: stats::ratio(direct.p99_ns, s.p99_ns),
            }
        })
        .collect();

    // Backend down.
    eprintln!("bench: against a proxy: backend down");
    backend.stop();
    let down_at = Instant::now();
    // (a) until the breaker trips (bounded), then the measured attempts.
    let before = requests(&protected, backend.addr, THRESHOLD as usize + 5);
    let refused_before_trip = before
        .iter()
        .filter(|s| s.1 == CONNECT_ERRNO + libc::ECONNREFUSED as u64)
        .count();
    let direct_down = requests(&protected, backend.addr, size.down);
    let rejected = dest_state(&enforcer, backend.addr);
    // (b) once HAProxy's checks have marked the server DOWN.
    let marked = Duration::from_millis(CHECK_INTER_MS * (CHECK_FALL + 3));
    std::thread::sleep(marked.saturating_sub(down_at.elapsed()));
    let checked_down = requests(&protected, proxy.checked, size.down);
    // (c) no health checks: every request tries the backend.
    let unchecked_down = requests(&protected, proxy.unchecked, size.down_unchecked);
    drop(proxy);

    let failed = |s: &[(u64, u64)]| s.iter().all(|x| x.1 != OK);
    let all_rejected = direct_down
        .iter()
        .all(|s| s.1 == CONNECT_ERRNO + EHOSTUNREACH as u64);
    checks.push(Check::expect(
        all_rejected
            && rejected.is_some_and(|(st, n)| st == State::Open as u32 && n >= size.down as u64),
        format!(
            "(a) the breaker is OPEN and rejected every measured attempt (map: {rejected:?} \
             (state, rejected))"
        ),
    ));
    checks.push(Check::expect(
        failed(&checked_down) && failed(&unchecked_down),
        "through HAProxy, no request got a response with the backend down".to_owned(),
    ));

    Results {
        size,
        request_bytes: REQUEST,
        haproxy_version: haproxy_version(),
        healthy,
        refused_before_trip,
        down: vec![
            down("(a) direct, breaker OPEN", &direct_down),
            down("(b) HAProxy, server marked DOWN by checks", &checked_down),
            down(
                "(c) HAProxy without health checks (connect timeout, retries)",
                &unchecked_down,
            ),
        ],
        checks,
    }
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            format!(
                "Scenario 6: against a proxy, {} B request/response per connection",
                self.request_bytes
            ),
            &[
                "variant",
                "request p50",
                "request p99",
                "p50 vs (a)",
                "p99 vs (a)",
                "requests/s (one client)",
            ],
        );
        for h in &self.healthy {
            t.row(vec![
                h.name.to_owned(),
                report::duration(h.request.p50_ns),
                report::duration(h.request.p99_ns),
                report::times(h.ratio_p50_vs_direct),
                report::times(h.ratio_p99_vs_direct),
                format!("{:.0}", h.requests_per_s),
            ]);
        }
        t.note(format!(
            "{} rounds × {} requests per variant, interleaved every {} in one client process (in \
             the scratch cgroup, enforcer attached); a request is connect + write + read the \
             response + close (RST), on a fresh connection; HAProxy {} (nbthread 1) and the echo \
             backend share the other CPU",
            self.size.rounds,
            self.size.round.per_variant,
            self.size.round.slice,
            self.haproxy_version
        ));
        t.note(
            "(b): the client's connect goes to HAProxy's port, which no policy tracks; HAProxy runs \
             outside the cgroup, so enforcer's policy is not on its path to the backend",
        );

        let mut d = Table::new(
            "Scenario 6: backend down, what the client sees",
            &[
                "variant",
                "time to failure p50",
                "p99",
                "max",
                "what it saw",
            ],
        );
        for v in &self.down {
            d.row(vec![
                v.name.to_owned(),
                report::duration(v.time_to_failure.p50_ns),
                report::duration(v.time_to_failure.p99_ns),
                report::duration(v.time_to_failure.max_ns),
                v.seen
                    .iter()
                    .map(|(l, n)| format!("{l} × {n}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ]);
        }
        d.note(format!(
            "time from the start of connect() to the client knowing the request failed; (a) \
             failure_threshold {THRESHOLD}: {} connects were refused by the dead backend before \
             the breaker tripped (not in the figures)",
            self.refused_before_trip
        ));
        d.note(format!(
            "HAProxy: timeout connect {HAPROXY_CONNECT_MS} ms, retries {HAPROXY_RETRIES}; (b) \
             check inter {CHECK_INTER_MS} ms fall {CHECK_FALL}, measured once the checks have \
             marked the server DOWN; (c) has no checks"
        ));
        for c in &self.checks {
            d.note(c.note());
        }
        vec![t, d]
    }

    pub fn goals(&self) -> Vec<Goal> {
        let (a, b) = (&self.healthy[0], &self.healthy[1]);
        let fail = |i: usize| {
            let v = &self.down[i];
            format!(
                "{} p50 {} p99 {}",
                &v.name[..3],
                report::duration(v.time_to_failure.p50_ns),
                report::duration(v.time_to_failure.p99_ns)
            )
        };
        vec![Goal {
            scenario: 6,
            goal: "against HAProxy (the issue sets no number: figures reported side by side)"
                .to_owned(),
            measured: format!(
                "request p50 direct {} vs HAProxy {} ({}), p99 {} vs {}; {:.0} vs {:.0} requests/s; \
                 backend down, time to failure: {}, {}, {}",
                report::duration(a.request.p50_ns),
                report::duration(b.request.p50_ns),
                report::times(b.ratio_p50_vs_direct),
                report::duration(a.request.p99_ns),
                report::duration(b.request.p99_ns),
                a.requests_per_s,
                b.requests_per_s,
                fail(0),
                fail(1),
                fail(2)
            ),
            met: true,
        }]
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter()
    }
}

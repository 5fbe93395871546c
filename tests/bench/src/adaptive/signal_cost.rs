//! Scenario 10 (b), what the response-latency signal and priority classes
//! cost per request.
//!
//! The cgroup_skb programs are always attached; `signal = "response"` adds no
//! program, but makes them work for its sockets: past the storage lookup every
//! packet of every socket pays, the admitted socket's marks, the clock at its
//! first data out and the sum at its first data in. So three variants of one
//! request (connect, send a line, read the answer line, close), to echo
//! servers that answer at once, in one scratch cgroup with the programs
//! attached:
//!
//! - (n) to a destination no policy covers: the programs run and pass;
//! - (h) to a destination under an adaptive policy learning from the handshake;
//! - (r) the same policy learning from the response;
//! - (c) the same as (h) with priority classes on: the gate walks the
//!   caller's cgroup ancestors for its class (the caller's cgroup, two levels
//!   below the root's child, is listed as `sheddable`) and applies the class
//!   rules. Classes are global to an installation, so (c) has programs of its
//!   own, loaded and attached to a sibling cgroup.
//!
//! (h) and (r) differ only by the signal, (h) and (c) only by the classes. Each variant is its own port of the
//! same server code on loopback (one destination holds one policy), and the
//! variants interleave in slices inside one client process
//! ([`crate::interleave`]), pinned away from the servers. The programs are
//! loaded and the policies installed directly, as the daemon would: no daemon
//! process runs here.
//!
//! A difference of a few microseconds in a request of tens is near this
//! kind of machine's noise, so a separate pass afterwards, with the kernel's
//! BPF run-time statistics on, gives the time spent inside the programs per
//! request of each variant ([`crate::bpf_stats`]): where the signal's work is.

use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use enforcer::bpf::Enforcer;
use enforcer_common::{
    class::{ClassTable, Priority},
    dest::DestState,
    policy::{Policy, Signal},
};
use enforcer_tests::{
    cgroup::ScratchCgroup,
    exec::Place,
    fixtures,
    net::{self, AcceptingServer, RefusingPort},
};
use serde::Serialize;

use crate::{
    bpf_stats::{self, ProgramCost},
    client,
    compare::{self, Check, Measured, Versus},
    interleave::{self, Round},
};

const REQUEST: &[u8] = b"ping\n";
const ANSWER: &[u8] = b"pong\n";
/// How long either side waits on the other (bounds the run).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Far above anything the sequential client holds: the cap never refuses.
pub(super) const NEVER_REACHED: u32 = 1_000;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub rounds: usize,
    pub round: Round,
    /// Requests per variant first, not recorded: the first ones fault in pages
    /// and create the destinations' map entries.
    pub warm_up: usize,
    /// Requests per variant of the pass with BPF run-time statistics on.
    pub profiled: usize,
}

pub const VARIANTS: [&str; 4] = [
    "(n) no policy for the destination",
    "(h) adaptive policy, signal = handshake",
    "(r) adaptive policy, signal = response",
    "(c) as (h), with priority classes on",
];

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    /// Per variant, the request's time against (n).
    pub request: Vec<(&'static str, Measured)>,
    /// (r) against (h), paired round by round.
    pub response_vs_handshake: Versus,
    /// (c) against (h), paired round by round.
    pub classes_vs_handshake: Versus,
    /// Per variant, each attached program's share of a request, from the
    /// separate pass with run-time statistics on.
    pub in_programs: Vec<(&'static str, Vec<ProgramCost>)>,
    pub checks: Vec<Check>,
}

/// An echo-like server on a loopback port: per connection, reads the request
/// line, answers at once, then waits for the client to close (so the client
/// closes first, with a RST, and nothing lingers in TIME_WAIT).
fn echo(cpu: Option<usize>) -> (SocketAddrV4, AcceptingServer) {
    let listener: TcpListener = RefusingPort::loopback_v4().listen();
    let SocketAddr::V4(addr) = listener.local_addr().expect("local_addr") else {
        unreachable!("bound on 127.0.0.1")
    };
    let pin = move || {
        if let Some(cpu) = cpu {
            client::pin_to_cpu(cpu);
        }
    };
    let serve = |mut conn: TcpStream| {
        let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
        let mut line = [0u8; REQUEST.len()];
        if conn.read_exact(&mut line).is_ok() && conn.write_all(ANSWER).is_ok() {
            let mut sink = [0u8; 64];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }
    };
    (addr, AcceptingServer::serve_with(listener, pin, serve))
}

/// One request on a fresh connection, timed from before `connect()` to the
/// socket closed with a RST; panics on anything but the answer.
fn request(addr: SocketAddrV4) -> u64 {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("a read timeout");
    let mut s = &stream;
    let mut answer = [0u8; ANSWER.len()];
    s.write_all(REQUEST)
        .and_then(|()| s.read_exact(&mut answer))
        .unwrap_or_else(|e| panic!("request to {addr}: {e}"));
    assert_eq!(answer, ANSWER, "{addr} answered");
    net::close_with_rst(OwnedFd::from(stream));
    client::nanos(start.elapsed())
}

fn policy(signal: Signal) -> Policy {
    Policy {
        signal: signal as u32,
        adaptive: 1,
        max_connections: NEVER_REACHED,
        ..fixtures::base_policy()
    }
}

fn state(enforcer: &Enforcer, addr: SocketAddrV4) -> Option<DestState> {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(SocketAddr::V4(addr)))
        .expect("reading DESTS")
}

pub fn run(size: Size) -> Results {
    let other_cpu = (std::thread::available_parallelism().map_or(1, usize::from) > 1).then_some(1);
    let servers: Vec<_> = VARIANTS.iter().map(|_| echo(other_cpu)).collect();
    let addrs: Vec<SocketAddrV4> = servers.iter().map(|(a, _)| *a).collect();
    let cgroup = ScratchCgroup::new();
    let mut enforcer = fixtures::attached(&cgroup);
    let (handshake, response) = (addrs[1].to_string(), addrs[2].to_string());
    let backoff = fixtures::minute_open();
    fixtures::install(
        &mut enforcer,
        &[
            (1, policy(Signal::Handshake), backoff),
            (2, policy(Signal::Response), backoff),
        ],
        &[(&handshake, 1), (&response, 2)],
    );

    // (c): its own installation, with classes on, and a caller two levels
    // below it whose cgroup is listed.
    let classed = ScratchCgroup::new();
    let caller = classed.child();
    let mut with_classes = fixtures::attached(&classed);
    let classed_addr = addrs[3].to_string();
    fixtures::install(
        &mut with_classes,
        &[(1, policy(Signal::Handshake), backoff)],
        &[(&classed_addr, 1)],
    );
    let table = ClassTable {
        enabled: 1,
        ..ClassTable::default()
    };
    with_classes
        .maps_mut()
        .classes
        .replace(table, &[(caller.id(), Priority::Sheddable)])
        .expect("writing the classes");

    let cgroups = [&cgroup, &cgroup, &cgroup, &caller];
    let attempt = |v: usize| {
        let ns = request(addrs[v]);
        (ns, ns)
    };
    let warm_up = Round {
        per_variant: size.warm_up,
        slice: size.warm_up,
    };
    interleave::round(&cgroups, warm_up, 0, attempt);
    let before = [
        state(&enforcer, addrs[1]),
        state(&enforcer, addrs[2]),
        state(&with_classes, addrs[3]),
    ];
    let rounds: Vec<_> = (0..size.rounds)
        .map(|r| {
            eprintln!(
                "bench: adaptive limits, signal cost: round {}/{}",
                r + 1,
                size.rounds
            );
            interleave::round(&cgroups, size.round, 0, attempt)
        })
        .collect();
    let after = [
        state(&enforcer, addrs[1]),
        state(&enforcer, addrs[2]),
        state(&with_classes, addrs[3]),
    ];
    let measured = (size.rounds * size.round.per_variant) as u64;
    let checks = checks(
        state(&enforcer, addrs[0]).is_none(),
        before,
        after,
        measured,
    );
    let places = [
        (&cgroup, &cgroup),
        (&cgroup, &cgroup),
        (&cgroup, &cgroup),
        (&caller, &classed),
    ];
    let in_programs = profile(&places, &addrs, size.profiled);

    let m = interleave::by_variant(&rounds);
    Results {
        size,
        request: VARIANTS
            .iter()
            .zip(&m)
            .map(|(name, v)| (*name, compare::measured(&v.cycle, &m[0].cycle)))
            .collect(),
        response_vs_handshake: compare::measured(&m[2].cycle, &m[1].cycle).vs_baseline,
        classes_vs_handshake: compare::measured(&m[3].cycle, &m[1].cycle).vs_baseline,
        in_programs: VARIANTS.iter().copied().zip(in_programs).collect(),
        checks,
    }
}

/// `n` requests per variant, one variant after the other, with BPF run-time
/// statistics on: what each program attached to the variant's installation
/// cost per request. `places`: per variant, where the client runs and where
/// the programs it passes are attached. After the checks, which count the
/// timed requests only.
fn profile(
    places: &[(&ScratchCgroup, &ScratchCgroup)],
    addrs: &[SocketAddrV4],
    n: usize,
) -> Vec<Vec<ProgramCost>> {
    eprintln!("bench: adaptive limits, signal cost: profiling the programs");
    let _on = bpf_stats::enable();
    addrs
        .iter()
        .zip(places)
        .map(|(&addr, (client_in, programs_on))| {
            let ids = bpf_stats::attached_programs(programs_on.path());
            let before = bpf_stats::snapshot(&ids);
            Place::cgroup(client_in).run(|| {
                client::pin_to_cpu(0);
                for _ in 0..n {
                    request(addr);
                }
                String::new()
            });
            bpf_stats::costs(&before, &bpf_stats::snapshot(&ids), n)
        })
        .collect()
}

/// Each variant measured what it claims, from the kernel's map: (n) is not
/// tracked; (h) summed one handshake per success; (r) summed one response per
/// measured request; (c) admitted every measured request as `sheddable`.
fn checks(
    untracked: bool,
    before: [Option<DestState>; 3],
    after: [Option<DestState>; 3],
    requests: u64,
) -> Vec<Check> {
    let grew = |i: usize| -> (u64, u64) {
        let (b, a) = (before[i].unwrap_or_default(), after[i].unwrap_or_default());
        (
            a.counters.successes.saturating_sub(b.counters.successes),
            a.signal.count.saturating_sub(b.signal.count),
        )
    };
    let h_now = after[0].unwrap_or_default();
    let ((h_successes, _), (r_successes, r_signal)) = (grew(0), grew(1));
    let shed = Priority::Sheddable as usize;
    let c_admitted = after[2].unwrap_or_default().classes[shed].admitted
        - before[2].unwrap_or_default().classes[shed].admitted;
    vec![
        Check::expect(
            untracked,
            format!("{}: not tracked in the kernel", VARIANTS[0]),
        ),
        Check::expect(
            after[0].is_some()
                && h_successes == requests
                && h_now.signal.count == h_now.counters.successes,
            format!(
                "{}: {h_successes} successes over the {requests} measured requests; its signal \
                 summed {} handshakes for {} successes in all",
                VARIANTS[1], h_now.signal.count, h_now.counters.successes
            ),
        ),
        Check::expect(
            after[1].is_some() && r_successes == requests && r_signal == requests,
            format!(
                "{}: {r_successes} successes and {r_signal} responses measured over the \
                 {requests} measured requests",
                VARIANTS[2]
            ),
        ),
        Check::expect(
            after[2].is_some() && c_admitted == requests,
            format!(
                "{}: {c_admitted} admitted as sheddable over the {requests} measured requests",
                VARIANTS[3]
            ),
        ),
    ]
}

impl Results {
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter()
    }
}

//! A backend of fixed capacity and an open-loop load generator: what adaptive
//! concurrency limits are judged against.
//!
//! An adaptive limit has to find a backend's capacity, so the tests need one
//! whose capacity is known and can change: [`Backend`] serves with `W`
//! concurrent slots, each request holding one for `S` of work, so it serves at
//! most `W / S` requests a second; past that, requests wait in its queue and
//! latency grows with the queue instead of turning into errors, as behind a real
//! server's accept queue.
//!
//! [`offered`] offers requests *open loop*: each starts on its schedule whether
//! or not earlier ones finished, as independent clients do. A closed loop
//! (the next request once the last is answered) slows down with the backend
//! and never builds the queue a limit is there to prevent.
//!
//! The load runs in a child placed in the protected cgroup
//! ([`crate::exec::Place::run`]), so the enforcer's programs see its connects;
//! its [`Report`] crosses the fork as one line of JSON. The backend runs in the
//! test process, outside the protected cgroup.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::OwnedFd,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use rustix::{
    buffer::spare_capacity,
    event::{PollFd, PollFlags, Timespec, epoll, poll},
    io::Errno,
    net::{AddressFamily, SendFlags, SocketFlags, SocketType, socket_with, sockopt},
};
use serde::{Deserialize, Serialize};

/// Connections accepted and not yet taken by a worker, at most: large, so that
/// overload shows as queueing latency rather than as refused requests.
pub const QUEUE_CAPACITY: usize = 4096;

/// How long a backend worker waits on a client's read or write: a client that
/// went away never holds a slot for long, and dropping a backend stays bounded.
const BACKEND_IO_TIMEOUT: Duration = Duration::from_secs(1);

/// How often idle backend threads look at the stop flag.
const BACKEND_TICK: Duration = Duration::from_millis(50);

/// The request line clients send, and the answer the backend writes back.
const REQUEST: &[u8] = b"work\n";
const RESPONSE: &[u8] = b"done\n";

/// A TCP server on loopback with a fixed number of concurrent slots (workers),
/// each request holding one for a fixed time of work. Stops (bounded) on drop.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// What a [`Backend`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests answered.
    pub served: u64,
    /// Connections closed unserved because the queue was full.
    pub overflowed: u64,
    /// The most connections that ever waited in the queue at once.
    pub queued_max: u64,
}

struct Shared {
    work: Duration,
    state: Mutex<State>,
    /// Signalled when work is queued, capacity grows, or the backend stops.
    wake: Condvar,
    stop: AtomicBool,
    accepted: AtomicU64,
    served: AtomicU64,
    overflowed: AtomicU64,
    queued_max: AtomicU64,
}

struct State {
    queue: VecDeque<TcpStream>,
    /// The capacity: how many requests may be worked on at once.
    slots: usize,
    /// How many are being worked on (may exceed `slots` for a moment after
    /// the capacity shrinks: those finish, no new one starts).
    busy: usize,
    /// Worker threads started (never fewer than the most slots ever set).
    threads: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state
        // is still consistent (plain counters and a queue).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend {
    /// Starts a backend on 127.0.0.1 (an ephemeral port) with `workers`
    /// concurrent slots, each request taking `work` (a sleep: what matters is
    /// that a slot is held, not that a CPU is).
    pub fn start(workers: usize, work: Duration) -> Self {
        let listener = listen_on_loopback();
        let addr = listener.local_addr().expect("the backend's local address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for the backend");
        let shared = Arc::new(Shared {
            work,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                slots: 0,
                busy: 0,
                threads: 0,
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            served: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            queued_max: AtomicU64::new(0),
        });
        let acceptor = thread::Builder::new()
            .name("backend-accept".into())
            .spawn({
                let shared = shared.clone();
                move || accept_loop(&listener, &shared)
            })
            .expect("spawning the backend's accept thread");
        let backend = Self {
            addr,
            shared,
            acceptor: Some(acceptor),
            workers: Mutex::new(Vec::new()),
        };
        backend.set_workers(workers);
        backend
    }

    /// Where it listens (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the capacity to `n` concurrent requests, at once: more start
    /// being worked on from the queue, or (fewer) no new one starts until
    /// fewer than `n` are in progress. 0 stalls the backend.
    pub fn set_workers(&self, n: usize) {
        let mut threads = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.shared.state();
        state.slots = n;
        while state.threads < n {
            let shared = self.shared.clone();
            let worker = thread::Builder::new()
                .name("backend-worker".into())
                .spawn(move || work_loop(&shared))
                .expect("spawning a backend worker");
            threads.push(worker);
            state.threads += 1;
        }
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> BackendStats {
        let s = &self.shared;
        BackendStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            served: s.served.load(Ordering::Relaxed),
            overflowed: s.overflowed.load(Ordering::Relaxed),
            queued_max: s.queued_max.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Backend {
    /// Every thread ends within about `work` + 2 s (a worker mid-request
    /// finishes it under its I/O timeouts; idle ones see the flag within a
    /// tick); queued connections are closed unserved.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Under the lock, so that no worker misses the wake-up between
        // checking the flag and waiting.
        drop(self.shared.state());
        self.shared.wake.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            let _ = worker.join();
        }
        self.shared.state().queue.clear();
    }
}

/// A listener on 127.0.0.1 with a backlog of 1024 (std's is smaller): a burst
/// of connects while the accept thread is descheduled must not overflow the
/// kernel's queue, which would show as SYN retransmits (a second each).
fn listen_on_loopback() -> TcpListener {
    let socket = crate::net::tcp_socket(true, false);
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    crate::net::bind_fd(&socket, loopback)
        .unwrap_or_else(|e| panic!("binding the backend to {loopback}: errno {e}"));
    crate::net::listen_fd(&socket).unwrap_or_else(|e| panic!("backend listen: errno {e}"));
    TcpListener::from(socket)
}

fn accept_loop(listener: &TcpListener, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => enqueue(shared, conn),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let timeout = Timespec::try_from(BACKEND_TICK).expect("a tick in range");
                let _ = poll(&mut [PollFd::new(listener, PollFlags::IN)], Some(&timeout));
            }
            // Out of descriptors or the like: let workers drain, then retry.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn enqueue(shared: &Shared, conn: TcpStream) {
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit, the
    // worker relies on timeouts of blocking I/O.
    if conn.set_nonblocking(false).is_err() {
        return;
    }
    let mut state = shared.state();
    if state.queue.len() >= QUEUE_CAPACITY {
        shared.overflowed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    state.queue.push_back(conn);
    shared
        .queued_max
        .fetch_max(state.queue.len() as u64, Ordering::Relaxed);
    drop(state);
    shared.wake.notify_one();
}

fn work_loop(shared: &Shared) {
    loop {
        let conn = {
            let mut state = shared.state();
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if state.busy < state.slots
                    && let Some(conn) = state.queue.pop_front()
                {
                    state.busy += 1;
                    break conn;
                }
                state = shared
                    .wake
                    .wait_timeout(state, BACKEND_TICK)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        if serve(conn, shared.work).is_ok() {
            shared.served.fetch_add(1, Ordering::Relaxed);
        }
        shared.state().busy -= 1;
    }
}

/// One request: read its line, work, answer, close.
fn serve(mut conn: TcpStream, work: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(BACKEND_IO_TIMEOUT))?;
    conn.set_write_timeout(Some(BACKEND_IO_TIMEOUT))?;
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while !line.contains(&b'\n') {
        match conn.read(&mut buf)? {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => line.extend_from_slice(&buf[..n]),
        }
        if line.len() > 1024 {
            return Err(ErrorKind::InvalidData.into());
        }
    }
    thread::sleep(work);
    conn.write_all(RESPONSE)
}

/// Bounds of one [`offered`] run.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// A request not answered by then is given up (an error, "timeout").
    pub timeout: Duration,
    /// At most this many requests in flight: one due while this many are is
    /// not started (counted as shed). Each holds a descriptor here and one in
    /// the backend.
    pub max_in_flight: usize,
    /// At most this many requests in all, whatever the rate and duration.
    pub max_requests: u64,
    /// The width of the report's time series buckets.
    pub bucket: Duration,
    /// The requests scheduled from this time on are also summed apart, in
    /// [`Report::settled`]: the figures once a limit has had time to settle,
    /// exact where the buckets only bound them.
    pub settled_from: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_in_flight: 4096,
            max_requests: 100_000,
            bucket: Duration::from_millis(500),
            settled_from: Duration::ZERO,
        }
    }
}

/// What an [`offered`] run saw. Latencies in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub rate_per_s: f64,
    pub duration_ms: u64,
    /// Requests started (a socket made and `connect()` called).
    pub sent: u64,
    /// Answered: latency from the start to the response line.
    pub ok: u64,
    /// `connect()` failed at once with ECONNREFUSED: refused by the local
    /// kernel (a bulkhead or an open breaker), never by the backend, whose
    /// refusals (a RST) come later and count as errors.
    pub refused: u64,
    /// Anything else, by kind in `error_kinds`.
    pub errors: u64,
    /// Due but not started: `max_in_flight` requests were in flight.
    pub shed: u64,
    pub ok_p50_ns: u64,
    pub ok_p99_ns: u64,
    pub ok_max_ns: u64,
    /// How long the refused `connect()` calls took, p99.
    pub refused_connect_p99_ns: u64,
    /// The most a request started behind its schedule: how well the
    /// generator kept up (a few milliseconds at most, or the rate was not the
    /// one offered).
    pub late_max_ns: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// By scheduled start time, one per `LoadOptions::bucket`.
    pub buckets: Vec<Bucket>,
    /// The requests scheduled from `LoadOptions::settled_from` on.
    pub settled: Window,
}

/// The requests scheduled from a point of the run on, summed together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Where the window starts, from the run's start.
    pub from_ms: u64,
    pub sent: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    pub ok_p50_ns: u64,
    pub ok_p99_ns: u64,
    pub refused_connect_p99_ns: u64,
}

/// The requests scheduled to start within one bucket of time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Where the bucket starts, from the run's start.
    pub start_ms: u64,
    pub sent: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    pub ok_p99_ns: u64,
}

impl Report {
    /// One line of JSON, to cross a fork (see [`crate::exec::Place::run`]).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a report is plain data")
    }

    /// The report [`Self::to_line`] wrote.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim())
    }

    /// The worst bucket p99 of the requests scheduled from `from` on: an
    /// upper bound of their p99 together (at most 1 % of each bucket's
    /// answers are slower than its p99, so at most 1 % of all of them are
    /// slower than the largest). The latency once a limit has settled.
    pub fn worst_p99_since(&self, from: Duration) -> u64 {
        let from_ms = from.as_millis() as u64;
        self.buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms)
            .map(|b| b.ok_p99_ns)
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        write!(
            f,
            "{}/s for {} ms: sent {}, ok {} (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), \
             refused {} (connect p99 {:.3} ms), errors {} {:?}, shed {}, late at most {:.1} ms",
            self.rate_per_s,
            self.duration_ms,
            self.sent,
            self.ok,
            ms(self.ok_p50_ns),
            ms(self.ok_p99_ns),
            ms(self.ok_max_ns),
            self.refused,
            ms(self.refused_connect_p99_ns),
            self.errors,
            self.error_kinds,
            self.shed,
            ms(self.late_max_ns),
        )
    }
}

/// Offers `rate_per_s` requests a second to `addr` for `duration`, open loop,
/// then waits (at most `opts.timeout`) for those in flight. Each request:
/// connect, write a line, read the answer's line, close. One thread and
/// non-blocking sockets, so thousands can be in flight.
///
/// Panics (with a message) only when the generator itself cannot run (no
/// epoll); every failure of a request is counted in the report.
pub fn offered(
    addr: SocketAddr,
    rate_per_s: f64,
    duration: Duration,
    opts: &LoadOptions,
) -> Report {
    assert!(
        rate_per_s.is_finite() && rate_per_s > 0.0,
        "a rate of {rate_per_s}/s"
    );
    assert!(!opts.bucket.is_zero(), "buckets of no width");
    let due = ((rate_per_s * duration.as_secs_f64()).round() as u64).min(opts.max_requests);
    let schedule = |i: u64| Duration::from_secs_f64(i as f64 / rate_per_s);
    let mut run = Run::new(addr, opts);
    let start = Instant::now();
    let mut next = 0;
    let mut next_sweep = start + SWEEP;
    loop {
        let now = Instant::now();
        while next < due && start + schedule(next) <= now {
            let at = schedule(next);
            run.late_max = run.late_max.max(now - (start + at));
            run.start(at);
            next += 1;
        }
        if next >= due && run.in_flight == 0 {
            break;
        }
        if now >= next_sweep {
            run.expire(now);
            next_sweep = now + SWEEP;
        }
        let until_due = if next < due {
            (start + schedule(next)).saturating_duration_since(Instant::now())
        } else {
            SWEEP
        };
        run.wait(until_due.min(SWEEP));
    }
    run.report(rate_per_s, duration)
}

/// How often in-flight requests are checked against the timeout.
const SWEEP: Duration = Duration::from_millis(20);

/// One [`offered`] run: the requests in flight, by epoll token (their slot),
/// and the outcomes so far.
struct Run {
    addr: SocketAddr,
    timeout: Duration,
    max_in_flight: usize,
    bucket: Duration,
    settled_from: Duration,
    epoll: OwnedFd,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    in_flight: usize,
    events: Vec<epoll::Event>,
    /// Each finished request's scheduled start (from the run's start) and
    /// outcome.
    done: Vec<(Duration, Outcome)>,
    shed: u64,
    late_max: Duration,
}

struct InFlight {
    socket: OwnedFd,
    /// When it was scheduled to start, from the run's start.
    at: Duration,
    started: Instant,
    /// Connecting (waiting to be writable) until the request is sent, then
    /// reading the answer.
    sent: bool,
    answer: Vec<u8>,
}

enum Outcome {
    Ok(Duration),
    /// `connect()` returned ECONNREFUSED at once, after this long.
    Refused(Duration),
    Error(String),
}

impl Run {
    fn new(addr: SocketAddr, opts: &LoadOptions) -> Self {
        Self {
            addr,
            timeout: opts.timeout,
            max_in_flight: opts.max_in_flight,
            bucket: opts.bucket,
            settled_from: opts.settled_from,
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create"),
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            events: Vec::with_capacity(256),
            done: Vec::new(),
            shed: 0,
            late_max: Duration::ZERO,
        }
    }

    fn start(&mut self, at: Duration) {
        if self.in_flight >= self.max_in_flight {
            self.shed += 1;
            return;
        }
        let started = Instant::now();
        let family = if self.addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let socket = match socket_with(family, SocketType::STREAM, flags, None) {
            Ok(socket) => socket,
            Err(e) => {
                return self.done.push((at, Outcome::Error(format!("socket: {e}"))));
            }
        };
        let before = Instant::now();
        let connected = rustix::net::connect(&socket, &self.addr);
        let took = before.elapsed();
        let request = InFlight {
            socket,
            at,
            started,
            sent: false,
            answer: Vec::new(),
        };
        match connected {
            Ok(()) => self.send(request),
            Err(Errno::INPROGRESS) => self.watch(request, epoll::EventFlags::OUT),
            Err(Errno::CONNREFUSED) => self.done.push((at, Outcome::Refused(took))),
            Err(e) => self
                .done
                .push((at, Outcome::Error(format!("connect: {e}")))),
        }
    }

    /// Writes the request line on a connected socket and waits for the answer.
    fn send(&mut self, mut request: InFlight) {
        match rustix::net::send(&request.socket, REQUEST, SendFlags::NOSIGNAL) {
            Ok(n) if n == REQUEST.len() => {
                request.sent = true;
                self.watch(request, epoll::EventFlags::IN);
            }
            Ok(n) => self.finish(request, Outcome::Error(format!("send: {n} bytes"))),
            Err(e) => self.finish(request, Outcome::Error(format!("send: {e}"))),
        }
    }

    /// Registers (or re-registers) `request` for `events` in its slot.
    fn watch(&mut self, request: InFlight, events: epoll::EventFlags) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let token = epoll::EventData::new_u64(slot as u64);
        // A descriptor is registered at most once: removed on every finish.
        if let Err(e) = epoll::add(&self.epoll, &request.socket, token, events) {
            self.free.push(slot);
            return self.finish(request, Outcome::Error(format!("epoll_ctl: {e}")));
        }
        self.slots[slot] = Some(request);
        self.in_flight += 1;
    }

    /// Waits up to `timeout` for sockets to become ready, and moves them on.
    fn wait(&mut self, timeout: Duration) {
        self.events.clear();
        let timeout = Timespec::try_from(timeout).expect("a wait in range");
        match epoll::wait(
            &self.epoll,
            spare_capacity(&mut self.events),
            Some(&timeout),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => panic!("epoll_wait: {e}"),
        }
        let ready: Vec<usize> = self.events.iter().map(|e| e.data.u64() as usize).collect();
        for slot in ready {
            if let Some(request) = self.take(slot) {
                self.advance(request);
            }
        }
    }

    /// Takes the request out of its slot and out of epoll.
    fn take(&mut self, slot: usize) -> Option<InFlight> {
        let request = self.slots.get_mut(slot)?.take()?;
        let _ = epoll::delete(&self.epoll, &request.socket);
        self.free.push(slot);
        self.in_flight -= 1;
        Some(request)
    }

    fn advance(&mut self, mut request: InFlight) {
        if !request.sent {
            return match sockopt::socket_error(&request.socket) {
                Ok(Ok(())) => self.send(request),
                Ok(Err(e)) => self.finish(request, Outcome::Error(format!("connect (later): {e}"))),
                Err(e) => self.finish(request, Outcome::Error(format!("SO_ERROR: {e}"))),
            };
        }
        let mut buf = [0u8; 64];
        loop {
            match rustix::io::read(&request.socket, &mut buf) {
                Ok(0) => {
                    return self.finish(request, Outcome::Error("closed unanswered".into()));
                }
                Ok(n) => {
                    request.answer.extend_from_slice(&buf[..n]);
                    if request.answer.contains(&b'\n') {
                        let outcome = if request.answer == RESPONSE {
                            Outcome::Ok(request.started.elapsed())
                        } else {
                            Outcome::Error("an unexpected answer".into())
                        };
                        return self.finish(request, outcome);
                    }
                    if request.answer.len() > 1024 {
                        return self.finish(request, Outcome::Error("an answer too long".into()));
                    }
                }
                Err(Errno::AGAIN) => return self.watch(request, epoll::EventFlags::IN),
                Err(Errno::INTR) => {}
                Err(e) => return self.finish(request, Outcome::Error(format!("read: {e}"))),
            }
        }
    }

    /// Gives up on requests in flight for longer than the timeout.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let expired = self.slots[slot]
                .as_ref()
                .is_some_and(|r| now.duration_since(r.started) >= self.timeout);
            if expired && let Some(request) = self.take(slot) {
                self.finish(request, Outcome::Error("timeout".into()));
            }
        }
    }

    /// Records the outcome of a request no longer in a slot (its socket
    /// closes here).
    fn finish(&mut self, request: InFlight, outcome: Outcome) {
        self.done.push((request.at, outcome));
    }

    fn report(self, rate_per_s: f64, duration: Duration) -> Report {
        let width = self.bucket;
        let bucket_of = |at: Duration| (at.as_nanos() / width.as_nanos()) as usize;
        let spanned = duration.as_nanos().div_ceil(width.as_nanos()) as usize;
        let used = self
            .done
            .iter()
            .map(|(at, _)| bucket_of(*at) + 1)
            .max()
            .unwrap_or(0);
        let mut buckets: Vec<(Bucket, Vec<u64>)> = (0..spanned.max(used))
            .map(|i| {
                let start_ms = (width * i as u32).as_millis() as u64;
                let bucket = Bucket {
                    start_ms,
                    ..Bucket::default()
                };
                (bucket, Vec::new())
            })
            .collect();
        let mut report = Report {
            rate_per_s,
            duration_ms: duration.as_millis() as u64,
            shed: self.shed,
            late_max_ns: nanos(self.late_max),
            ..Report::default()
        };
        let (mut all, mut settled) = (Tally::default(), Tally::default());
        for (at, outcome) in self.done {
            let (bucket, latencies) = &mut buckets[bucket_of(at)];
            bucket.sent += 1;
            match &outcome {
                Outcome::Ok(latency) => {
                    bucket.ok += 1;
                    latencies.push(nanos(*latency));
                }
                Outcome::Refused(_) => bucket.refused += 1,
                Outcome::Error(kind) => {
                    bucket.errors += 1;
                    *report.error_kinds.entry(kind.clone()).or_default() += 1;
                }
            }
            if at >= self.settled_from {
                settled.add(&outcome);
            }
            all.add(&outcome);
        }
        report.buckets = buckets
            .into_iter()
            .map(|(mut bucket, mut latencies)| {
                latencies.sort_unstable();
                bucket.ok_p99_ns = quantile(&latencies, 0.99);
                bucket
            })
            .collect();
        report.ok_max_ns = all.ok.iter().copied().max().unwrap_or(0);
        let all = all.window(Duration::ZERO);
        report.sent = all.sent;
        report.ok = all.ok;
        report.refused = all.refused;
        report.errors = all.errors;
        report.ok_p50_ns = all.ok_p50_ns;
        report.ok_p99_ns = all.ok_p99_ns;
        report.refused_connect_p99_ns = all.refused_connect_p99_ns;
        report.settled = settled.window(self.settled_from);
        report
    }
}

/// Outcomes summed: what a [`Window`] is made from.
#[derive(Default)]
struct Tally {
    ok: Vec<u64>,
    refused: Vec<u64>,
    errors: u64,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok(latency) => self.ok.push(nanos(*latency)),
            Outcome::Refused(took) => self.refused.push(nanos(*took)),
            Outcome::Error(_) => self.errors += 1,
        }
    }

    fn window(mut self, from: Duration) -> Window {
        self.ok.sort_unstable();
        self.refused.sort_unstable();
        let (ok, refused) = (self.ok.len() as u64, self.refused.len() as u64);
        Window {
            from_ms: from.as_millis() as u64,
            sent: ok + refused + self.errors,
            ok,
            refused,
            errors: self.errors,
            ok_p50_ns: quantile(&self.ok, 0.50),
            ok_p99_ns: quantile(&self.ok, 0.99),
            refused_connect_p99_ns: quantile(&self.refused, 0.99),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The `q`-quantile of sorted samples by nearest rank (an observed value);
/// 0 for none.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_observed_values_by_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.50), 50);
        assert_eq!(quantile(&samples, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.99), 0);
    }

    #[test]
    fn a_report_crosses_as_one_line() {
        let report = Report {
            rate_per_s: 600.0,
            duration_ms: 1_000,
            sent: 3,
            ok: 1,
            refused: 1,
            errors: 1,
            error_kinds: [("timeout".to_owned(), 1)].into(),
            buckets: vec![
                Bucket {
                    start_ms: 0,
                    ok_p99_ns: 9,
                    ..Bucket::default()
                },
                Bucket {
                    start_ms: 500,
                    ok_p99_ns: 4,
                    ..Bucket::default()
                },
            ],
            settled: Window {
                from_ms: 500,
                sent: 1,
                ok: 1,
                ok_p50_ns: 4,
                ok_p99_ns: 4,
                ..Window::default()
            },
            ..Report::default()
        };
        let line = report.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(Report::parse(&line).expect("a report"), report);
        assert_eq!(report.worst_p99_since(Duration::ZERO), 9);
        assert_eq!(report.worst_p99_since(Duration::from_millis(500)), 4);
        assert_eq!(report.worst_p99_since(Duration::from_secs(1)), 0);
    }

    /// A test may change the capacity from another thread while a child
    /// offers the load.
    #[test]
    fn a_backend_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Backend>();
    }

    /// Unprivileged: in this process, no cgroup.
    #[test]
    fn below_capacity_every_request_is_answered_after_its_work() {
        let work = Duration::from_millis(5);
        let backend = Backend::start(2, work);
        let opts = LoadOptions {
            // Between the schedules of requests 14 (140 ms) and 15.
            settled_from: Duration::from_millis(145),
            ..LoadOptions::default()
        };
        let report = offered(backend.addr(), 100.0, Duration::from_millis(300), &opts);
        assert_eq!((report.sent, report.ok), (30, 30), "{report}");
        assert!(report.ok_p50_ns >= nanos(work), "{report}");
        // A worker counts a request once its answer is written: the client
        // may have read it a moment before.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while backend.served() < 30 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(backend.served(), 30);
        assert_eq!(report.buckets.len(), 1);
        assert_eq!(report.buckets[0].ok, 30);
        let settled = &report.settled;
        assert_eq!(
            (settled.from_ms, settled.sent, settled.ok, settled.refused),
            (145, 15, 15, 0),
            "{settled:?}"
        );
        assert!(settled.ok_p50_ns >= nanos(work), "{settled:?}");
    }
}

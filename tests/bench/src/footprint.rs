//! Scenario 8, daemon footprint: the daemon's memory and CPU at idle with no
//! destination and with many, and while `/metrics` is scraped; scrape time.
//!
//! The release daemon (`ENFORCER_BIN`, set by `cargo xtask bench`) on a
//! scratch cgroup and a private bpffs, with the destination map filled by
//! refused connects from that cgroup (see [`crate::populate`]). CPU is the
//! process's user + system time over a window, as a share of one core.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{self, Daemon, Metrics},
};
use serde::Serialize;

use crate::{
    compare::Check,
    map_floor::MapFloor,
    populate::Refusing,
    proc_usage::{self, Usage},
    report::{self, Goal, Table},
    stats::Summary,
};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub dests: usize,
    /// How long each idle reading lasts.
    pub idle_ms: u64,
    pub scrapes: usize,
}

pub const FULL: Size = Size {
    dests: 100_000,
    idle_ms: 5_000,
    scrapes: 20,
};
pub const QUICK: Size = Size {
    dests: 10_000,
    idle_ms: 500,
    scrapes: 3,
};

/// A window of the daemon's life.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub what: String,
    pub wall_ns: u64,
    pub cpu_share: f64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub size: Size,
    pub windows: Vec<Window>,
    pub scrape: Summary,
    pub scrape_bytes: usize,
    /// The kernel's batched read of the whole destination map alone, from
    /// this process, in the same run, each value under its lock.
    pub map_read: Summary,
    /// The same without the locks, as a scrape reads it.
    pub map_sample: Summary,
    /// A map as large holding 8-byte values ([`MapFloor`]): the floor of
    /// any read of that many entries.
    pub map_floor: Summary,
    pub check: Check,
}

/// One scrape as Prometheus makes it, from this process (a client started per
/// scrape would add its own start to every figure): HTTP/1.0, so the body
/// ends where the connection does. The status, the body and the time from
/// connecting to the last byte read (parsing the answer is this client's own
/// work, not the daemon's).
fn scrape(addr: SocketAddr) -> (u16, String, u64) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connecting to the metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .expect("sending the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("reading the answer");
    let elapsed = crate::client::nanos(start.elapsed());
    let answer = String::from_utf8(answer).expect("a text answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a header");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, body.to_owned(), elapsed)
}

/// Reads the daemon over `f` (which runs for the window).
fn window(pid: i32, what: String, f: impl FnOnce()) -> Window {
    let (before, start) = (Usage::of(pid), Instant::now());
    f();
    let wall_ns = crate::client::nanos(start.elapsed());
    let after = Usage::of(pid);
    Window {
        what,
        wall_ns,
        cpu_share: proc_usage::cpu_share(before, after, wall_ns),
        rss_bytes: after.rss_bytes,
        hwm_bytes: after.hwm_bytes,
    }
}

pub fn run(size: Size) -> Results {
    let cgroup = ScratchCgroup::new();
    let pins = PinDir::new();
    let refusing = Refusing::new(128);
    // Refusals never trip: the map keeps every destination, CLOSED.
    let daemon = Daemon::start_with(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"many\"\nmatch = [\"{}\"]\nfailure_threshold = 1000000\n\
             min_attempts = 1000000\n",
            refusing.covering_rule()
        ),
        &format!("dests_capacity = {}\n", size.dests.next_power_of_two()),
        false,
    );
    let pid = proc_usage::child_running(&daemon::binary()).expect("the daemon's pid");
    let idle = Duration::from_millis(size.idle_ms);
    let mut windows = vec![window(pid, "idle, no destination".to_owned(), || {
        std::thread::sleep(idle)
    })];
    eprintln!("bench: footprint: filling {} destinations", size.dests);
    refusing.connect_each(&cgroup, size.dests);
    windows.push(window(
        pid,
        format!("idle, {} destinations", size.dests),
        || std::thread::sleep(idle),
    ));
    let mut times = Vec::with_capacity(size.scrapes);
    let mut body = String::new();
    windows.push(window(
        pid,
        format!("{} back-to-back /metrics scrapes", size.scrapes),
        || {
            for _ in 0..size.scrapes {
                let (status, text, nanos) = scrape(daemon.metrics);
                times.push(nanos);
                assert_eq!(status, 200, "/metrics: {text}");
                body = text;
            }
        },
    ));
    let maps = enforcer::bpf::Maps::open(&enforcer::bpf::pins::PinDir::new(&daemon.pin_dir))
        .expect("opening the daemon's pins");
    let read = |locked: bool| {
        let start = Instant::now();
        let mut n = 0usize;
        let count = |_: &_, _: &_| n += 1;
        if locked {
            maps.dests.each(count)
        } else {
            maps.dests.sample(count)
        }
        .expect("reading DESTS");
        assert_eq!(n, size.dests, "destinations read");
        crate::client::nanos(start.elapsed())
    };
    let floor = MapFloor::new(size.dests, size.dests.next_power_of_two() as u32);
    let floor_read = || {
        let (ns, n) = floor.read();
        assert_eq!(n, size.dests, "entries of the control read");
        ns
    };
    // Interleaved: all three see the same machine.
    let (mut map_reads, mut map_samples, mut map_floors) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..size.scrapes {
        map_reads.push(read(true));
        map_samples.push(read(false));
        map_floors.push(floor_read());
    }
    let tracked = Metrics::parse(&body)
        .get("enforcer_tracked_destinations", &[])
        .unwrap_or(-1.0);
    Results {
        size,
        windows,
        scrape: Summary::of(&times),
        scrape_bytes: body.len(),
        map_read: Summary::of(&map_reads),
        map_sample: Summary::of(&map_samples),
        map_floor: Summary::of(&map_floors),
        check: Check::expect(
            tracked == size.dests as f64,
            format!(
                "/metrics reports {tracked} tracked destinations of {} filled",
                size.dests
            ),
        ),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 8: daemon footprint (release build)",
            &[
                "window",
                "length",
                "CPU (share of one core)",
                "RSS",
                "peak RSS so far",
            ],
        );
        for w in &self.windows {
            t.row(vec![
                w.what.clone(),
                report::duration(w.wall_ns),
                format!("{:.1} %", w.cpu_share * 100.0),
                mib(w.rss_bytes),
                mib(w.hwm_bytes),
            ]);
        }
        t.note(format!(
            "scrape time (GET /metrics on loopback, whole response): p50 {}, p99 {}, max {} over \
             {} scrapes; {} bytes each",
            report::duration(self.scrape.p50_ns),
            report::duration(self.scrape.p99_ns),
            report::duration(self.scrape.max_ns),
            self.scrape.n,
            self.scrape_bytes
        ));
        t.note(format!(
            "the kernel's batched read of the whole map alone (BPF_MAP_LOOKUP_BATCH), from the \
             bench process in the same run: without the values' locks, as a scrape reads it, \
             p50 {}, p99 {}; each value under its lock, p50 {}, p99 {}",
            report::duration(self.map_sample.p50_ns),
            report::duration(self.map_sample.p99_ns),
            report::duration(self.map_read.p50_ns),
            report::duration(self.map_read.p99_ns),
        ));
        t.note(format!(
            "control: the same read of a map as large holding 8-byte values, no lock \
             ({} entries, 32-byte keys, as many buckets): p50 {}, p99 {}, the floor of any \
             read of that many entries on this machine",
            self.size.dests,
            report::duration(self.map_floor.p50_ns),
            report::duration(self.map_floor.p99_ns),
        ));
        t.note(
            "the BPF maps are kernel memory, not in the RSS (scenario 5 has their size); \
             max_series 1000 (the default): the other destinations fold into dest=\"other\"",
        );
        t.note(self.check.note());
        vec![t]
    }

    /// Issue 5 set no number for this scenario; issue 12 did for the scrape.
    pub fn goals(&self) -> Vec<Goal> {
        let idle = self.windows.get(1);
        let peak = self.windows.iter().map(|w| w.hwm_bytes).max().unwrap_or(0);
        vec![
            Goal {
                scenario: 8,
                goal: format!(
                    "report the daemon's RSS and CPU at idle and while scraped with {} destinations, \
                 and the scrape time (no target set)",
                    self.size.dests
                ),
                measured: format!(
                    "idle: {:.1} % CPU, RSS {}; scrape p50 {}, p99 {}",
                    idle.map_or(0.0, |w| w.cpu_share * 100.0),
                    mib(idle.map_or(0, |w| w.rss_bytes)),
                    report::duration(self.scrape.p50_ns),
                    report::duration(self.scrape.p99_ns)
                ),
                met: true,
            },
            Goal {
                scenario: 8,
                goal: format!(
                    "issue 12: a scrape of {} destinations at most 50 ms at p50, the daemon \
                 at most 64 MiB RSS",
                    self.size.dests
                ),
                measured: format!(
                    "p50 {} (the map read alone: p50 {}; control, the read of a map as large \
                     of 8-byte values: p50 {}), peak RSS {}",
                    report::duration(self.scrape.p50_ns),
                    report::duration(self.map_sample.p50_ns),
                    report::duration(self.map_floor.p50_ns),
                    mib(peak)
                ),
                met: self.scrape.p50_ns <= 50_000_000 && peak <= 64 << 20,
            },
        ]
    }
}

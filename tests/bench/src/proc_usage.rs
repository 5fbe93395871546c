//! A process's CPU time and memory, from `/proc/<pid>/stat` and `status`.

use std::path::Path;

use serde::Serialize;

/// CPU time used so far and memory now.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    /// user + system, in ns (at the kernel's clock-tick resolution).
    pub cpu_ns: u64,
    pub rss_bytes: u64,
    /// The peak resident set so far.
    pub hwm_bytes: u64,
}

impl Usage {
    pub fn of(pid: i32) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces), from field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15: 12 and 13 after the name.
        let hz = rustix::param::clock_ticks_per_second().max(1);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Self {
            cpu_ns: (ticks(11) + ticks(12)) * 1_000_000_000 / hz,
            rss_bytes: kib("VmRSS:"),
            hwm_bytes: kib("VmHWM:"),
        }
    }
}

/// The pid of this process's child running `exe` (the daemon the harness
/// started: its handle does not expose the pid).
pub fn child_running(exe: &Path) -> Option<i32> {
    let me = std::process::id().to_string();
    let exe = exe.canonicalize().ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            let runs = std::fs::read_link(format!("/proc/{pid}/exe")).ok()? == exe;
            (ppid == me && runs).then_some(pid)
        })
}

/// CPU share of one core used between two readings `wall_ns` apart.
pub fn cpu_share(before: Usage, after: Usage, wall_ns: u64) -> f64 {
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / wall_ns.max(1) as f64
}

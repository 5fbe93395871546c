//! The measured client: one TCP connect from a fresh socket, timed, as an
//! application would do it. Runs in the forked child inside a scratch cgroup.
//!
//! Raw syscalls rather than `std::net`, so that the timed region holds the
//! `connect()` call and nothing else (no address conversion, no error boxing).

use std::{
    net::SocketAddrV4,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with, sockopt};

/// An IPv4 destination as `connect()` takes it, built once outside the timed loop.
pub struct Dest {
    sin: libc::sockaddr_in,
    len: libc::socklen_t,
}

impl Dest {
    pub fn new(addr: SocketAddrV4) -> Self {
        Self {
            len: size_of::<libc::sockaddr_in>() as libc::socklen_t,
            sin: libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: addr.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(addr.ip().octets()),
                },
                sin_zero: [0; 8],
            },
        }
    }

    /// `addr` with an address length too short for IPv4: `connect()` fails with
    /// EINVAL in `tcp_v4_pre_connect()`, before any cgroup hook runs and before
    /// any packet. What is left is the floor of a failing `connect()` on this
    /// machine: syscall entry and exit, the socket lock, the errno.
    pub fn too_short(addr: SocketAddrV4) -> Self {
        Self {
            len: 8,
            ..Self::new(addr)
        }
    }
}

/// One attempt: its outcome and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// `Ok` when the handshake completed, else the errno `connect()` returned.
    pub result: Result<(), i32>,
    /// The `connect()` call alone.
    pub connect_ns: u64,
    /// `socket()` + `connect()` + `close()`: everything an application pays per
    /// connection, including the programs that run at close.
    pub cycle_ns: u64,
    /// When `connect()` returned.
    pub returned: Instant,
}

/// Opens a socket, connects it to `dest` (blocking), and closes it with a RST.
///
/// SO_LINGER 0 makes `close()` send a RST instead of a FIN: no socket enters
/// TIME_WAIT, so a loop of tens of thousands of connects never runs out of
/// ephemeral ports, and each iteration costs the same.
pub fn attempt(dest: &Dest) -> Attempt {
    let start = Instant::now();
    let socket = socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    sockopt::set_socket_linger(&socket, Some(Duration::ZERO)).expect("SO_LINGER");
    let before = Instant::now();
    // libc: the timed call takes the address built once in `Dest`, and the
    // short length of `Dest::too_short`; rustix builds the address inside the
    // call, always at its full length.
    // SAFETY: a valid sockaddr_in, at least as large as the size given, on a
    // socket we own.
    let rc = unsafe { libc::connect(socket.as_raw_fd(), (&raw const dest.sin).cast(), dest.len) };
    let returned = Instant::now();
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    };
    drop(socket);
    let end = Instant::now();
    Attempt {
        result,
        connect_ns: nanos(returned - before),
        cycle_ns: nanos(end - start),
        returned,
    }
}

pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Pins the calling process to one CPU, so that a measured loop is never
/// migrated mid-run (a migration costs more than the overhead being measured).
/// Does nothing on a single-CPU machine or if the CPU is not allowed.
pub fn pin_to_cpu(cpu: usize) {
    use rustix::thread::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu);
    let _ = sched_setaffinity(None, &set);
}

/// Samples cross from the forked child to the parent as text, one series per
/// line of space-separated integers.
pub mod wire {
    pub fn encode(series: &[&[u64]]) -> String {
        let mut out = String::new();
        for s in series {
            for (i, v) in s.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&v.to_string());
            }
            out.push('\n');
        }
        out
    }

    /// The `count` series of `text`; panics with the text when it does not parse
    /// (the child reported an error instead of samples).
    pub fn decode(text: &str, count: usize) -> Vec<Vec<u64>> {
        let series: Vec<Vec<u64>> = text
            .split('\n')
            .take(count)
            .map(|line| {
                line.split_ascii_whitespace()
                    .map(|v| v.parse().unwrap_or_else(|_| panic!("child said: {text}")))
                    .collect()
            })
            .collect();
        assert_eq!(series.len(), count, "child said: {text}");
        series
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trip() {
            let a = [1, 20, 300];
            let b: [u64; 0] = [];
            let c = [u64::MAX];
            let text = super::encode(&[&a, &b, &c]);
            assert_eq!(super::decode(&text, 3), [a.to_vec(), vec![], c.to_vec()]);
        }
    }
}

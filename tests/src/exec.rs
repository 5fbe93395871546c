//! Running commands and closures inside a scratch cgroup (and a namespace).

use std::{
    ffi::CString,
    io::Read,
    os::{fd::OwnedFd, unix::process::CommandExt},
    process::Command,
    time::{Duration, Instant},
};

use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    io::Errno,
    pipe::{PipeFlags, pipe_with},
    process::{Pid, Signal, WaitOptions, WaitStatus, getpid, kill_process, waitpid},
};

use crate::{
    cgroup::ScratchCgroup,
    netns::{self, NetNs},
};

/// Where a child runs: a cgroup, and optionally a network namespace.
pub struct Place<'a> {
    pub cgroup: &'a ScratchCgroup,
    pub netns: Option<&'a NetNs>,
}

impl<'a> Place<'a> {
    pub fn cgroup(cgroup: &'a ScratchCgroup) -> Self {
        Self {
            cgroup,
            netns: None,
        }
    }

    pub fn with_netns(mut self, netns: &'a NetNs) -> Self {
        self.netns = Some(netns);
        self
    }

    /// The same cgroup, inside `netns`.
    pub fn clone_with_netns(&self, netns: &'a NetNs) -> Self {
        Self {
            cgroup: self.cgroup,
            netns: Some(netns),
        }
    }

    /// Makes `command` start inside this place.
    pub fn command(&self, mut command: Command) -> Command {
        let procs = self.cgroup.procs_path();
        let ns = self.netns.map(NetNs::open);
        // SAFETY: the hook only makes async-signal-safe syscalls.
        unsafe {
            command.pre_exec(move || enter(&procs, ns.as_ref()));
        }
        command
    }

    /// Starts an unprivileged process here (`nobody`, no capabilities) that
    /// opens `n` connections to `addr` on loopback and holds them until it is
    /// killed: a hostile holder of bulkhead slots. Wait for its slots with
    /// the daemon's or the maps' view; kill it to end them.
    pub fn spawn_nobody_holding(
        &self,
        addr: std::net::SocketAddr,
        n: usize,
    ) -> std::process::Child {
        assert!(
            addr.ip().is_loopback(),
            "{addr}: bash's /dev/tcp, loopback only"
        );
        let opens: String = (0..n)
            .map(|i| format!(" {}<>/dev/tcp/{}/{}", i + 3, addr.ip(), addr.port()))
            .collect();
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "bash",
            "-c",
            &format!("exec{opens}; exec sleep 600"),
        ]);
        self.command(command).spawn().expect("setpriv bash")
    }

    /// Runs `f` in a forked child inside this place and returns what it returns.
    /// A panic in the child fails the caller with the child's message.
    pub fn run<F: FnOnce() -> String>(&self, f: F) -> String {
        let (status, out) = self.fork(f);
        assert!(
            status.exit_status() == Some(0),
            "child in {} failed (status {:#x}): {out}",
            self.cgroup.path().display(),
            status.as_raw()
        );
        out
    }

    /// Runs `f` in a forked child inside this place after it dropped every
    /// privilege: uid and gid `nobody` (65534), no supplementary groups, no
    /// capabilities left. The attacker of the trust tests.
    pub fn run_as_nobody<F: FnOnce() -> String>(&self, f: F) -> String {
        self.run(|| {
            drop_to_nobody();
            f()
        })
    }

    /// `n` blocking connects to `addr` from a child here, each closed before
    /// the next: `Ok` or each errno.
    pub fn connects(&self, addr: std::net::SocketAddr, n: usize) -> Vec<Result<(), i32>> {
        self.connects_holding(addr, n, false)
    }

    /// `n` blocking connects to `addr` from a child here, all held open until
    /// the last is made (what a cap below `n` admits and refuses): `Ok` or
    /// each errno.
    pub fn held_connects(&self, addr: std::net::SocketAddr, n: usize) -> Vec<Result<(), i32>> {
        self.connects_holding(addr, n, true)
    }

    fn connects_holding(
        &self,
        addr: std::net::SocketAddr,
        n: usize,
        hold: bool,
    ) -> Vec<Result<(), i32>> {
        let out = self.run(|| {
            let mut held = Vec::new();
            (0..n)
                .map(|_| match crate::net::connect(addr) {
                    Ok(stream) => {
                        if hold {
                            held.push(stream);
                        }
                        "ok".to_owned()
                    }
                    Err(e) => e.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        });
        out.split(',')
            .map(|r| {
                if r == "ok" {
                    Ok(())
                } else {
                    Err(r.parse().expect("an errno"))
                }
            })
            .collect()
    }

    /// Runs `f` in a forked child inside this place, then SIGKILLs the child with
    /// everything `f` left open (`f` returns it, so nothing is closed first).
    pub fn run_then_kill<T, F: FnOnce() -> T>(&self, f: F) {
        let (status, out) = self.fork(|| {
            let held = f();
            let _ = kill_process(getpid(), Signal::KILL);
            drop(held);
            unreachable!("SIGKILL is not caught");
        });
        assert!(
            status.terminating_signal() == Some(Signal::KILL.as_raw()),
            "child was not killed (status {:#x}): {out}",
            status.as_raw()
        );
    }

    /// Forks a child running `f` here; its wait status and output.
    fn fork<F: FnOnce() -> String>(&self, f: F) -> (WaitStatus, String) {
        let procs = self.cgroup.procs_path();
        let ns = self.netns.map(NetNs::open);
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC).expect("pipe2");
        // libc: rustix has only the raw `kernel_fork`, which skips libc's
        // atfork handlers and its own state's reset in the child.
        // SAFETY: the child only runs `f` (test code) and leaves with `_exit`
        // without returning into the parent's frames.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            drop(read_end);
            child(&procs, ns.as_ref(), write_end, f);
        }
        drop(write_end);
        let pid = Pid::from_raw(pid).expect("a child's pid");
        let out = read_with_deadline(read_end, pid, CHILD_DEADLINE);
        let (waited, status) = waitpid(Some(pid), WaitOptions::empty())
            .expect("waitpid")
            .expect("without WNOHANG, waitpid waits");
        assert_eq!(waited, pid);
        (status, out)
    }
}

/// Drops the calling process to `nobody`, checking that it took.
pub fn drop_to_nobody() {
    const NOBODY: u32 = 65534;
    // libc: rustix's `set_thread_res_uid` and the like are the raw syscalls,
    // which change the calling thread alone; libc's change every thread of the
    // process, as dropping a process to `nobody` means.
    // SAFETY: plain syscalls on this process's credentials; the null group
    // list is never read (its length is 0).
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setresgid(NOBODY, NOBODY, NOBODY), 0, "setresgid");
        assert_eq!(libc::setresuid(NOBODY, NOBODY, NOBODY), 0, "setresuid");
    }
    assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .expect("CapEff");
    assert_eq!(
        effective, "0000000000000000",
        "capabilities left: {effective}"
    );
}

/// How long a child may run before the test kills it and fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Reads the child's result until EOF; kills the child and fails the test if it
/// takes longer than `deadline`.
fn read_with_deadline(fd: OwnedFd, pid: Pid, deadline: Duration) -> String {
    let end = Instant::now() + deadline;
    let mut file = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).expect("a deadline in range");
        let ready = poll(&mut [PollFd::new(&file, PollFlags::IN)], Some(&timeout))
            .or_else(|e| if e == Errno::INTR { Ok(1) } else { Err(e) })
            .expect("poll");
        if ready == 0 {
            let _ = kill_process(pid, Signal::KILL);
            panic!("child {pid} still running after {deadline:?}: killed");
        }
        match file.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the child's result: {e}"),
        }
    }
}

fn enter(procs: &CString, ns: Option<&OwnedFd>) -> std::io::Result<()> {
    ScratchCgroup::join_raw(procs)?;
    if let Some(ns) = ns {
        netns::enter_raw(ns)?;
    }
    Ok(())
}

fn child<F: FnOnce() -> String>(procs: &CString, ns: Option<&OwnedFd>, out: OwnedFd, f: F) -> ! {
    let mut out = std::fs::File::from(out);
    let result = enter(procs, ns)
        .map_err(|e| format!("entering the cgroup/namespace: {e}"))
        .and_then(|()| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned())
            })
        });
    let code = match result {
        Ok(text) => {
            let _ = std::io::Write::write_all(&mut out, text.as_bytes());
            0
        }
        Err(message) => {
            let _ = std::io::Write::write_all(&mut out, message.as_bytes());
            101
        }
    };
    // libc: std's `exit` runs the parent's atexit handlers, and rustix's
    // `exit_group` is in its unstable `runtime` API.
    // SAFETY: leave without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

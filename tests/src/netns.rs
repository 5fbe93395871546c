//! Network namespaces with a veth pair to the host, for destinations that must be
//! out of loopback's reach (blackholes, remote peers).

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::must_run;

/// A namespace `ns` joined to the host by a veth pair:
/// host `host_if` = `host_v4`/30, `host_v6`/64; inside `ns_if` = `ns_v4`, `ns_v6`.
/// Deleted (with its interfaces) on drop.
pub struct NetNs {
    pub name: String,
    pub host_if: String,
    pub host_v4: Ipv4Addr,
    pub ns_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub ns_v6: Ipv6Addr,
}

impl NetNs {
    pub fn new() -> Self {
        crate::require_root();
        let name = crate::unique_name("enfns");
        must_run("ip", &["netns", "add", &name]);
        // From here on, drop cleans up whatever was created.
        let (a, b) = subnet_octets(&name);
        let ns = Self {
            host_if: format!("{name}h"),
            host_v4: Ipv4Addr::new(10, a, b, 1),
            ns_v4: Ipv4Addr::new(10, a, b, 2),
            host_v6: Ipv6Addr::new(0xfd00, 0xe4f, a.into(), b.into(), 0, 0, 0, 1),
            ns_v6: Ipv6Addr::new(0xfd00, 0xe4f, a.into(), b.into(), 0, 0, 0, 2),
            name,
        };
        let ns_if = format!("{}n", ns.name);
        must_run(
            "ip",
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
                "netns",
                &ns.name,
            ],
        );
        must_run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", ns.host_v4),
                "dev",
                &ns.host_if,
            ],
        );
        must_run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", ns.host_v6),
                "dev",
                &ns.host_if,
                "nodad",
            ],
        );
        must_run("ip", &["link", "set", &ns.host_if, "up"]);
        let inside: [&[&str]; 4] = [
            &["addr", "add", &format!("{}/30", ns.ns_v4), "dev", &ns_if],
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", ns.ns_v6),
                "dev",
                &ns_if,
                "nodad",
            ],
            &["link", "set", &ns_if, "up"],
            &["link", "set", "lo", "up"],
        ];
        for args in inside {
            ns.ip(args);
        }
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        must_run("ip", &full)
    }

    /// Runs `PROGRAM ARGS` inside the namespace and panics if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        must_run("ip", &full)
    }

    /// Runs an nftables script inside the namespace (`nft -f -`); panics with
    /// the script if nft refuses it.
    pub fn nft(&self, script: &str) {
        nft_in(&self.name, script);
    }

    /// Makes the namespace answer TCP to `port` with `verdict`: `drop` (a
    /// blackhole: SYNs vanish), `reject with tcp reset` (refused), or `accept`
    /// (back to normal).
    pub fn tcp_port(&self, port: u16, verdict: &str) {
        set_tcp_verdict(&self.name, "enforcer", port, verdict);
    }

    /// The namespace's file, for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// An open handle on the namespace, for [`enter_raw`].
    pub fn open(&self) -> OwnedFd {
        File::open(self.path())
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.path().display()))
            .into()
    }

    /// The namespace's inode, as `ip netns identify`, `lsns -t net` and
    /// `stat -L -c %i /run/netns/NAME` print it.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path().display()))
            .ino()
    }
}

/// The inode of the test's own network namespace.
pub fn own_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .expect("stat /proc/self/ns/net")
        .ino()
}

/// A TCP listener, in a network namespace or the test's own, that accepts and
/// closes every connection and counts them, until dropped.
pub struct CountingServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingServer {
    /// Listens on `addr` inside `netns` (the test's own namespace if `None`).
    pub fn bind(netns: Option<&NetNs>, addr: SocketAddr) -> Self {
        let ns = netns.map(NetNs::open);
        let (accepted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        // The thread enters the namespace for good: it is ours alone and ends
        // with the server.
        let thread = std::thread::spawn({
            let (accepted, stop) = (accepted.clone(), stop.clone());
            move || {
                if let Some(ns) = &ns {
                    enter_raw(ns).expect("setns");
                }
                let listener = TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                tx.send(listener.local_addr().expect("local_addr"))
                    .expect("the test waits for the address");
                // Non-blocking with a short sleep: stopping needs no wake-up
                // connect, which from outside the namespace would go elsewhere.
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        let addr = rx.recv().expect("the server thread failed to listen");
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs an nftables script inside the namespace named `ns` (`nft -f -`);
/// panics with the script if nft refuses it.
pub fn nft_in(ns: &str, script: &str) {
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawning nft");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes())
        .expect("writing the nft script");
    assert!(
        child.wait().expect("nft").success(),
        "nft in {ns} failed:\n{script}"
    );
}

/// Makes namespace `ns` answer TCP to `port` with `verdict` (an nftables
/// verdict such as `drop` or `reject with tcp reset`; `accept` = back to
/// normal), in its own chain of the `inet` table `table`, so a later call
/// replaces the port's verdict.
pub fn set_tcp_verdict(ns: &str, table: &str, port: u16, verdict: &str) {
    let chain = format!("p{port}");
    let rule = match verdict {
        "accept" => String::new(),
        v => format!("add rule inet {table} {chain} {v}\n"),
    };
    nft_in(
        ns,
        &format!(
            "add table inet {table}\n\
             add chain inet {table} input {{ type filter hook input priority 0; policy accept; }}\n\
             add chain inet {table} {chain}\n\
             flush chain inet {table} {chain}\n\
             {rule}"
        ),
    );
    // The jump from input is added once per port.
    let listed = must_run(
        "ip",
        &[
            "netns", "exec", ns, "nft", "list", "chain", "inet", table, "input",
        ],
    );
    if !listed.contains(&format!("jump {chain}")) {
        nft_in(
            ns,
            &format!("add rule inet {table} input tcp dport {port} jump {chain}\n"),
        );
    }
}

/// Moves the calling thread into the namespace open as `fd`. Async-signal-safe.
pub fn enter_raw(fd: &OwnedFd) -> std::io::Result<()> {
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    Ok(move_into_link_name_space(
        fd.as_fd(),
        Some(LinkNameSpaceType::Network),
    )?)
}

/// Two octets for a per-namespace /30, derived from the unique name.
fn subnet_octets(name: &str) -> (u8, u8) {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    (200 + (h % 50) as u8, ((h >> 8) % 64 * 4) as u8)
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth, and with it ours.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

//! Three network namespaces in a row, guest — router — backend, so packet-plane
//! tests have a real forwarding hop without touching the host's own network: no
//! interface, address, route or sysctl is changed outside the three namespaces.
//!
//! ```text
//!  guest                 router                               backend
//!  g0 10.a.b.2/24 ─veth─ rg<u> 10.a.b.1/24   rb<u> 10.a.c.1/24 ─veth─ b0 10.a.c.2/24
//!     fd00:e50:a:b::2/64    fd00:e50:a:b::1/64  fd00:e50:a:c::1/64    fd00:e50:a:c::2/64
//! ```
//!
//! The packet programs watch `rg<u>`, the router's guest-facing interface.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::fd::OwnedFd,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use aya::programs::tc::TcAttachType;
use enforcer::bpf::{Enforcer, Ingress, LoadOptions, PacketHook};
use enforcer_common::policy::{BackoffRow, Policy};

use crate::{
    must_run,
    netns::{enter_raw, nft_in, set_tcp_verdict},
};

/// One of the fixture's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Guest,
    Router,
    Backend,
}

/// The guest's interface (its namespace is private, so the name needs no suffix).
pub const GUEST_IF: &str = "g0";
/// The backend's interface.
pub const BACKEND_IF: &str = "b0";

/// How long IPv6 addresses may stay tentative before construction fails.
const DAD_DEADLINE: Duration = Duration::from_secs(5);

/// guest — router — backend; all three namespaces (and with them the veths) are
/// deleted on drop, also when construction fails halfway.
pub struct Routed {
    pub guest_ns: String,
    pub router_ns: String,
    pub backend_ns: String,
    /// In the router, towards the guest: the interface packet programs watch.
    pub router_guest_if: String,
    /// In the router, towards the backend.
    pub router_backend_if: String,
    pub guest_v4: Ipv4Addr,
    pub guest_v6: Ipv6Addr,
    pub router_guest_v4: Ipv4Addr,
    pub router_guest_v6: Ipv6Addr,
    pub router_backend_v4: Ipv4Addr,
    pub router_backend_v6: Ipv6Addr,
    pub backend_v4: Ipv4Addr,
    pub backend_v6: Ipv6Addr,
}

impl Routed {
    pub fn new() -> Self {
        crate::require_root();
        // Only hex digits: short enough for `rg`/`rb` + suffix to fit IFNAMSIZ.
        let u = crate::unique_name("");
        let (a, b, c) = subnet_octets(&u);
        let v6 = |third: u8, host: u16| {
            Ipv6Addr::new(0xfd00, 0xe50, a.into(), third.into(), 0, 0, 0, host)
        };
        // Built before anything exists, so drop cleans up whatever gets created.
        let routed = Self {
            guest_ns: format!("enrt{u}g"),
            router_ns: format!("enrt{u}r"),
            backend_ns: format!("enrt{u}b"),
            router_guest_if: format!("rg{u}"),
            router_backend_if: format!("rb{u}"),
            guest_v4: Ipv4Addr::new(10, a, b, 2),
            guest_v6: v6(b, 2),
            router_guest_v4: Ipv4Addr::new(10, a, b, 1),
            router_guest_v6: v6(b, 1),
            router_backend_v4: Ipv4Addr::new(10, a, c, 1),
            router_backend_v6: v6(c, 1),
            backend_v4: Ipv4Addr::new(10, a, c, 2),
            backend_v6: v6(c, 2),
        };
        routed.build();
        routed
    }

    fn build(&self) {
        for ns in [Ns::Guest, Ns::Router, Ns::Backend] {
            must_run("ip", &["netns", "add", self.name(ns)]);
            // Interfaces created from now on in this namespace skip DAD, so their
            // IPv6 addresses (link-local included) are usable at once.
            self.sysctl(ns, "net.ipv6.conf.default.accept_dad=0");
            self.ip(ns, &["link", "set", "lo", "up"]);
        }
        self.sysctl(Ns::Router, "net.ipv4.ip_forward=1");
        self.sysctl(Ns::Router, "net.ipv6.conf.all.forwarding=1");
        // Each veth is created in the router with its peer born in the other
        // namespace: neither end ever exists in the host's namespace.
        for (router_if, peer_ns, peer_if) in [
            (&self.router_guest_if, Ns::Guest, GUEST_IF),
            (&self.router_backend_if, Ns::Backend, BACKEND_IF),
        ] {
            self.ip(
                Ns::Router,
                &[
                    "link",
                    "add",
                    router_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer_if,
                    "netns",
                    self.name(peer_ns),
                ],
            );
        }
        let sides = [
            (Ns::Guest, GUEST_IF, self.guest_v4, self.guest_v6),
            (
                Ns::Router,
                self.router_guest_if.as_str(),
                self.router_guest_v4,
                self.router_guest_v6,
            ),
            (
                Ns::Router,
                self.router_backend_if.as_str(),
                self.router_backend_v4,
                self.router_backend_v6,
            ),
            (Ns::Backend, BACKEND_IF, self.backend_v4, self.backend_v6),
        ];
        for (ns, dev, v4, v6) in sides {
            self.sysctl(ns, &format!("net.ipv6.conf.{dev}.accept_dad=0"));
            self.ip(ns, &["addr", "add", &format!("{v4}/24"), "dev", dev]);
            let v6 = format!("{v6}/64");
            self.ip(ns, &["-6", "addr", "add", &v6, "dev", dev, "nodad"]);
            self.ip(ns, &["link", "set", dev, "up"]);
        }
        for (ns, dev, via_v4, via_v6) in [
            (
                Ns::Guest,
                GUEST_IF,
                self.router_guest_v4,
                self.router_guest_v6,
            ),
            (
                Ns::Backend,
                BACKEND_IF,
                self.router_backend_v4,
                self.router_backend_v6,
            ),
        ] {
            let (v4, v6) = (via_v4.to_string(), via_v6.to_string());
            self.ip(ns, &["route", "add", "default", "via", &v4, "dev", dev]);
            self.ip(
                ns,
                &["-6", "route", "add", "default", "via", &v6, "dev", dev],
            );
        }
        self.wait_not_tentative();
    }

    /// Waits (bounded) until no IPv6 address in any namespace is tentative.
    fn wait_not_tentative(&self) {
        let end = Instant::now() + DAD_DEADLINE;
        for ns in [Ns::Guest, Ns::Router, Ns::Backend] {
            loop {
                let tentative = self.ip(ns, &["-6", "addr", "show", "tentative"]);
                if tentative.trim().is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "IPv6 addresses in {} still tentative after {DAD_DEADLINE:?}:\n{tentative}",
                    self.name(ns)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self, which: Ns) -> &str {
        match which {
            Ns::Guest => &self.guest_ns,
            Ns::Router => &self.router_ns,
            Ns::Backend => &self.backend_ns,
        }
    }

    /// The namespace's file, for `setns`.
    pub fn path(&self, which: Ns) -> PathBuf {
        PathBuf::from("/run/netns").join(self.name(which))
    }

    /// An open handle on the namespace, for [`enter_raw`].
    pub fn open(&self, which: Ns) -> OwnedFd {
        let path = self.path(which);
        File::open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
            .into()
    }

    /// The ifindex of [`Self::router_guest_if`] inside the router namespace.
    pub fn router_guest_ifindex(&self) -> u32 {
        let out = self.ip(
            Ns::Router,
            &["-j", "link", "show", "dev", &self.router_guest_if],
        );
        let links: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("parsing `ip -j link show`: {e}\n{out}"));
        links[0]["ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or_else(|| panic!("no ifindex in `ip -j link show`: {out}"))
    }

    /// Runs `f` on a fresh thread that first joins the namespace; sockets it
    /// creates belong to that namespace (and stay there once handed back).
    /// A panic in `f` is the caller's panic.
    pub fn in_ns<T: Send>(&self, which: Ns, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.open(which);
        let name = self.name(which);
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                enter_raw(&ns).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `ip netns exec <ns> <program>`, ready for arguments: for daemons, curl,
    /// anything spawned inside the namespace.
    pub fn command(&self, which: Ns, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name(which), program]);
        command
    }

    /// Runs `ip ARGS` inside the namespace and panics if it fails.
    pub fn ip(&self, which: Ns, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name(which)];
        full.extend_from_slice(args);
        must_run("ip", &full)
    }

    /// Runs `PROGRAM ARGS` inside the namespace and panics if it fails.
    pub fn exec(&self, which: Ns, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name(which), program];
        full.extend_from_slice(args);
        must_run("ip", &full)
    }

    /// Sets `key=value` in the namespace only.
    pub fn sysctl(&self, which: Ns, setting: &str) {
        self.exec(which, "sysctl", &["-q", "-w", setting]);
    }

    /// Runs an nftables script inside the namespace (`nft -f -`); panics with
    /// the script if nft refuses it.
    pub fn nft(&self, which: Ns, script: &str) {
        nft_in(self.name(which), script);
    }

    /// Makes the backend answer TCP to `port` with `verdict`: `drop` (a
    /// blackhole: SYNs vanish), `reject with tcp reset` (refused by a RST),
    /// `reject` (ICMP/ICMPv6 port unreachable, which the `inet` family sends by
    /// default), or `accept` (back to normal). A later call replaces the
    /// port's verdict.
    pub fn set_backend_port(&self, port: u16, verdict: &str) {
        set_tcp_verdict(self.name(Ns::Backend), TABLE, port, verdict);
    }

    /// Loads the programs (attached to nothing), puts the backend's addresses
    /// at `ports` under `policy`, and watches the router's guest-facing
    /// interface with TC (from the router's namespace; the loader's own is
    /// where the flows' destinations are keyed).
    pub fn watched(&self, ports: &[u16], policy: Policy, backoff: BackoffRow) -> Enforcer {
        crate::require_root();
        let mut enforcer = Enforcer::load(&LoadOptions::default()).expect("loading the programs");
        let rules: Vec<String> = ports
            .iter()
            .flat_map(|port| {
                [
                    format!("{}:{port}", self.backend_v4),
                    format!("[{}]:{port}", self.backend_v6),
                ]
            })
            .collect();
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        crate::fixtures::apply(&mut enforcer, &rules, policy, backoff);
        let interface = self.router_guest_if.clone();
        let ingress = self.in_ns(Ns::Router, || {
            enforcer
                .interfaces()
                .watch(&interface, PacketHook::Tc)
                .expect("watching the router's interface")
        });
        assert_eq!(ingress, Ingress::Tc);
        enforcer
    }

    /// How many TC programs are attached to `interface` of the router in
    /// `direction`, through whichever interface the running kernel has.
    pub fn tc_programs(&self, interface: &str, direction: TcAttachType) -> usize {
        self.in_ns(Ns::Router, || crate::tc::programs_on(interface, direction))
    }

    /// The Ethernet address of `dev` in the namespace.
    pub fn mac(&self, which: Ns, dev: &str) -> [u8; 6] {
        let out = self.ip(which, &["-j", "link", "show", "dev", dev]);
        let links: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("parsing `ip -j link show`: {e}\n{out}"));
        let text = links[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in `ip -j link show`: {out}"));
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("a MAC address"))
            .collect();
        bytes.try_into().expect("six bytes")
    }

    /// Sends `frame` out of the guest's (or the backend's) interface towards
    /// the router, as raw bytes (its Ethernet addresses set to the real ones):
    /// what a guest, or anything on the backend's side, can put on the wire,
    /// checksums and all. The router gets it as it would any frame.
    pub fn inject(&self, from: Ns, frame: &[u8]) {
        let (dev, router_if) = match from {
            Ns::Guest => (GUEST_IF, &self.router_guest_if),
            Ns::Backend => (BACKEND_IF, &self.router_backend_if),
            Ns::Router => panic!("frames are injected from either side of the router"),
        };
        let frame =
            crate::frames::with_macs(frame, self.mac(Ns::Router, router_if), self.mac(from, dev));
        self.in_ns(from, || send_raw(dev, &frame))
            .unwrap_or_else(|e| panic!("sending a raw frame out of {dev}: {e}"));
    }

    /// A server accepting (and closing) every connection to `addr` inside the
    /// backend, until dropped.
    pub fn backend_server(&self, addr: SocketAddr) -> crate::net::AcceptingServer {
        let mut server = crate::net::AcceptingServer::serve(self.backend_listener(addr));
        server.listens_in(self.open(Ns::Backend));
        server
    }

    /// A listener bound to `addr` inside the backend (port 0 picks a free one).
    pub fn backend_listener(&self, addr: SocketAddr) -> TcpListener {
        self.in_ns(Ns::Backend, || {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in the backend: {e}"))
        })
    }
}

impl Default for Routed {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth ends, and with them their peers.
        for ns in [Ns::Guest, Ns::Router, Ns::Backend] {
            let _ = Command::new("ip")
                .args(["netns", "del", self.name(ns)])
                .output();
        }
    }
}

/// The backend's nftables table.
const TABLE: &str = "routed";

/// Sends one Ethernet frame out of `dev` through a packet socket of this
/// thread's namespace.
fn send_raw(dev: &str, frame: &[u8]) -> std::io::Result<()> {
    use rustix::net::{AddressFamily, SocketType, netdevice::name_to_index, socket};
    // Protocol 0: the socket only sends, it receives nothing.
    let socket = socket(AddressFamily::PACKET, SocketType::RAW, None)?;
    let ifindex = name_to_index(&socket, dev)?;
    // libc: rustix has no link-layer address (`sockaddr_ll`) to send to.
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `addr` are valid for the lengths given, on a socket
    // we own.
    let sent = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `a` for 10.a.x.x and fd00:e50:a:x::, and the guest (`b`) and backend (`c`)
/// subnets, derived from the unique name. The namespaces are private, so equal
/// octets in two fixtures would not even collide; `a` stays in 150..200 anyway,
/// clear of [`crate::netns::NetNs`]'s 200..250, so addresses in test output
/// say which fixture they belong to.
fn subnet_octets(unique: &str) -> (u8, u8, u8) {
    let h = unique
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let b = ((h >> 8) % 128 * 2) as u8;
    (150 + (h % 50) as u8, b, b + 1)
}

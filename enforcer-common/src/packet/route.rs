//! [`reverse_path`]: whether a guest's SYN came from an address the host
//! routes back out of the interface the SYN arrived on.
//!
//! Silence after a SYN says something about the destination only if its
//! answers could reach the guest. A guest may send SYNs (and retransmit them)
//! from a source address the host routes elsewhere, or not at all: the answers
//! go another way (or the router's `rp_filter` drops the SYN), and the
//! destination would look silent to everyone. So before a SYN is admitted the
//! hook asks the kernel's FIB (`bpf_fib_lookup`, as a packet to the SYN's
//! source arriving on the same interface would be routed) and passes this
//! function the helper's result and the egress interface it named.
//!
//! Only a definite answer makes a SYN spoofed: a route out of another
//! interface, or none (unreachable, blackhole, prohibit, not forwarded: no
//! route, a local, broadcast or multicast address, an IPv6 link-local one).
//! Anything else the helper says — forwarding disabled on the interface, an
//! encapsulating route, an MTU verdict, an error — fails open: the SYN is
//! tracked as it was before the check existed.
//!
//! A guest behind a bridge port is routed back through the bridge, not the
//! port: the bridge the watched interface is enslaved to (its `master`, which
//! the daemon records when it watches the interface) counts as the same way
//! back.

/// `bpf_fib_lookup`'s return codes (`BPF_FIB_LKUP_RET_*`, uapi `linux/bpf.h`).
pub mod fib_result {
    /// Forwarded: the egress interface and neighbour are known.
    pub const SUCCESS: i64 = 0;
    /// A blackhole route.
    pub const BLACKHOLE: i64 = 1;
    /// An unreachable route.
    pub const UNREACHABLE: i64 = 2;
    /// A prohibit route.
    pub const PROHIBIT: i64 = 3;
    /// Not forwarded: no route, or not a unicast one (local, broadcast,
    /// multicast, IPv6 link-local).
    pub const NOT_FWDED: i64 = 4;
    /// Forwarding is disabled on the interface.
    pub const FWD_DISABLED: i64 = 5;
    /// The route needs a lightweight tunnel encapsulation.
    pub const UNSUPP_LWT: i64 = 6;
    /// The route (and its egress interface) is known; the neighbour is not
    /// resolved yet.
    pub const NO_NEIGH: i64 = 7;
    /// The route is known but the packet exceeds the egress MTU.
    pub const FRAG_NEEDED: i64 = 8;
}

/// The loopback device's index in every network namespace: frames "received"
/// there were sent by this host (and `BPF_PROG_TEST_RUN` runs programs on it);
/// no guest sits behind it.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Where the host sends what answers a guest's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReversePath {
    /// Back out of the interface the SYN came in on.
    Back,
    /// Out of another interface, or nowhere: the source is spoofed.
    Elsewhere,
    /// Not known (no lookup made, or the lookup failed): the SYN is trusted.
    Unknown,
}

/// Judges a FIB lookup of the route to a SYN's source: `rc` is what
/// `bpf_fib_lookup` returned, `egress` the `ifindex` it left in its
/// parameters, `ingress` the interface the SYN arrived on and `master` the
/// bridge that interface is a port of (0: none).
#[inline(always)]
pub fn reverse_path(ingress: u32, master: u32, rc: i64, egress: u32) -> ReversePath {
    if ingress <= LOOPBACK_IFINDEX {
        return ReversePath::Unknown;
    }
    let back = egress == ingress || (master != 0 && egress == master);
    match rc {
        fib_result::SUCCESS | fib_result::NO_NEIGH if back => ReversePath::Back,
        fib_result::SUCCESS | fib_result::NO_NEIGH if egress != 0 => ReversePath::Elsewhere,
        fib_result::BLACKHOLE
        | fib_result::UNREACHABLE
        | fib_result::PROHIBIT
        | fib_result::NOT_FWDED => ReversePath::Elsewhere,
        _ => ReversePath::Unknown,
    }
}

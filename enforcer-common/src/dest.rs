//! Per-destination key and state.

use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::{
    baseline::Baseline,
    breaker::Breaker,
    class::{CLASSES, ClassCounts},
    impl_pod,
};

/// The bytes `00 00 ff ff` of a v4-mapped IPv6 address (`::ffff:a.b.c.d`), read as
/// the native-endian `u32` they occupy in [`DestKey::addr`].
const V4_MAPPED_PREFIX: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// A destination: network namespace, IPv6 address (IPv4 as v4-mapped) and TCP
/// port.
///
/// `127.0.0.1:8080` in one network namespace is not the service of that name in
/// another, and overlapping container subnets are different hosts: the
/// namespace is part of the identity. IPv4 is stored v4-mapped so that
/// `connect4` to `a.b.c.d` and `connect6` to `::ffff:a.b.c.d` share one key and
/// therefore one state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestKey {
    /// The network namespace's cookie (`bpf_get_netns_cookie`, `SO_NETNS_COOKIE`).
    pub netns: u64,
    /// The 16 address bytes in network order, held as four native-endian words
    /// exactly as the kernel's `user_ip6`/`remote_ip6` fields hold them.
    pub addr: [u32; 4],
    /// Port in host byte order.
    pub port: u16,
    pub _pad: [u16; 3],
}
const _: () = assert!(size_of::<DestKey>() == 32);
impl_pod!(DestKey);

impl DestKey {
    /// From an IPv4 address as the kernel holds it (network order in a native `u32`)
    /// and a host-order port, in no namespace yet ([`Self::in_netns`]).
    pub const fn from_ipv4_raw(addr: u32, port: u16) -> Self {
        Self::from_ipv6_raw([0, 0, V4_MAPPED_PREFIX, addr], port)
    }

    /// From an IPv6 address as the kernel holds it (four network-order words) and a
    /// host-order port. v4-mapped addresses come out equal to [`Self::from_ipv4_raw`].
    pub const fn from_ipv6_raw(addr: [u32; 4], port: u16) -> Self {
        Self {
            netns: 0,
            addr,
            port,
            _pad: [0; 3],
        }
    }

    /// The same address and port in the network namespace `netns` (a cookie).
    pub const fn in_netns(self, netns: u64) -> Self {
        Self { netns, ..self }
    }

    /// The 16 address bytes in network order.
    pub fn octets(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.addr) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// From 16 network-order address bytes and a host-order port.
    pub fn from_octets(octets: [u8; 16], port: u16) -> Self {
        let mut addr = [0u32; 4];
        for (word, chunk) in addr.iter_mut().zip(octets.chunks_exact(4)) {
            *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self::from_ipv6_raw(addr, port)
    }

    /// The socket address this key stands for (IPv4 for v4-mapped keys).
    pub fn socket_addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.octets());
        match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), self.port),
            None => SocketAddr::new(IpAddr::V6(v6), self.port),
        }
    }

    /// Whether the address is v4-mapped, i.e. an IPv4 destination.
    pub const fn is_ipv4(&self) -> bool {
        self.addr[0] == 0 && self.addr[1] == 0 && self.addr[2] == V4_MAPPED_PREFIX
    }
}

impl From<SocketAddr> for DestKey {
    fn from(addr: SocketAddr) -> Self {
        let v6 = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Self::from_octets(v6.octets(), addr.port())
    }
}

/// Counters of one destination. Changed only under the destination's lock,
/// except `rejected_circuit`, which the gate also adds to without it (an OPEN
/// circuit's rejection, see [`crate::breaker::OpenView`]): every change to
/// it is an atomic add ([`add_shared`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// `connect()` calls admitted by the gate (observe-mode would-rejects included).
    pub attempts: u64,
    /// Handshakes completed.
    pub successes: u64,
    /// Answered with a RST to the SYN.
    pub failures_refused: u64,
    /// SYN retransmitted or the connect timed out.
    pub failures_timeout: u64,
    /// Failed without an answer from the peer and without a retransmit (ICMP error
    /// or a synchronous network error).
    pub failures_unreachable: u64,
    /// Successes slower than the policy's `slow_connect` (also counted as
    /// successes; they count as failures for the breaker).
    pub slow: u64,
    /// Closed by the application while the handshake was in flight, before its
    /// SYN went unanswered past a retransmission: not a failure of the
    /// destination.
    pub abandoned: u64,
    /// Failed on this host before the peer or the path had a say (no local
    /// address or port, a bind that cannot route, another program's or a
    /// firewall's refusal, a caller-lowered hop limit): never a failure of the
    /// destination.
    pub local_errors: u64,
    /// Half-open probes that outlived their bound and were reclaimed (counted
    /// as failed probes).
    pub probes_reclaimed: u64,
    /// Connects refused because the circuit was open.
    pub rejected_circuit: u64,
    /// Connects refused by the bulkhead (`max_connections` or `max_pending`).
    pub rejected_bulkhead: u64,
    /// Observe mode: connects the circuit would have refused.
    pub would_reject_circuit: u64,
    /// Observe mode: connects the bulkhead would have refused.
    pub would_reject_bulkhead: u64,
    /// Half-open probes admitted.
    pub probes: u64,
    /// Transitions to OPEN (trips and re-opens).
    pub trips: u64,
    /// Trips the group guard (`max_open_percent`) refused.
    pub guard_refusals: u64,
}
const _: () = assert!(size_of::<DestCounters>() == 16 * 8);
impl_pod!(DestCounters);

/// `*count += 1` as one atomic add: for a count that another CPU may add to
/// without the destination's lock.
#[inline(always)]
pub fn add_shared(count: &mut u64) {
    // A `&mut` is what the lock-holding caller has; the add itself must not
    // be a load and a store around another CPU's add.
    // The BPF target has no `AtomicU64::fetch_add`; its intrinsic is the
    // same instruction.
    #[cfg(target_arch = "bpf")]
    // SAFETY: a valid, aligned u64 for the call.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            count, 1,
        );
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: a valid, aligned u64 for the call; other CPUs change it only
    // through atomic adds.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(count) }
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

impl DestCounters {
    /// All failures, whatever the reason (slow successes not included).
    pub const fn failures(&self) -> u64 {
        self.failures_refused + self.failures_timeout + self.failures_unreachable
    }
}

/// Buckets of [`Latency`]: bucket `i` counts handshakes of `[2^i, 2^(i+1))` µs
/// (bucket 0 also counts faster ones; the last also counts slower ones).
pub const LATENCY_BUCKETS: usize = 24;

/// Log2 histogram of connect latency (admission to handshake).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all recorded latencies, ns.
    pub sum_ns: u64,
}
const _: () = assert!(size_of::<Latency>() == 8 * (LATENCY_BUCKETS + 1));
impl_pod!(Latency);

impl Latency {
    /// The bucket of a latency of `ns`.
    #[inline(always)]
    pub const fn bucket_of(ns: u64) -> usize {
        let us = ns / 1000;
        let log2 = if us == 0 {
            0
        } else {
            63 - us.leading_zeros() as usize
        };
        if log2 >= LATENCY_BUCKETS {
            LATENCY_BUCKETS - 1
        } else {
            log2
        }
    }

    /// Upper bound (µs, exclusive) of bucket `i`.
    pub const fn upper_us(i: usize) -> u64 {
        1 << (i + 1)
    }

    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        let i = Self::bucket_of(ns);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_ns += ns;
    }
}

/// The sum of a latency over the connections that measured it: what an
/// adaptive policy learns from ([`crate::policy::Signal`]), read by the daemon
/// as the difference of two reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalSum {
    pub count: u64,
    pub sum_ns: u64,
}
const _: () = assert!(size_of::<SignalSum>() == 16);
impl_pod!(SignalSum);

impl SignalSum {
    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += ns;
    }
}

/// `struct bpf_spin_lock`. The kernel finds the lock in a map value by this BTF
/// type name, so the name is not ours to choose.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "the kernel matches this BTF name")]
pub struct bpf_spin_lock {
    pub val: u32,
}

/// The value of [`crate::maps::DESTS`]: everything the kernel knows about one
/// destination. Every field but the lock changes only with the lock held.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestState {
    pub lock: bpf_spin_lock,
    /// The policy the destination matched when it was first seen.
    pub policy_id: u32,
    /// `bpf_ktime_get_ns` of the last connect the gate saw, for garbage collection.
    pub last_attempt_ns: u64,
    /// Tells this entry apart from an earlier one of the same key that was
    /// forgotten: a socket admitted by the earlier one never releases into this
    /// one. The `bpf_ktime_get_ns` of its first admission (an entry created later
    /// has a later clock; two entries of one key never exist at once); 0 until then.
    pub generation: u64,
    /// The policy's epoch when the destination last joined it: a policy id
    /// given to another policy starts a new epoch, and the destination starts
    /// over (CLOSED) instead of staying OPEN under rules that are not its own.
    pub policy_epoch: u32,
    /// Bit `p` set: the class of priority `p` is shed while the destination
    /// degrades (an event told so; another tells when it is admitted again).
    pub shedding: u32,
    pub breaker: Breaker,
    pub counters: DestCounters,
    pub latency: Latency,
    /// The policy's [`crate::policy::Signal`], summed.
    pub signal: SignalSum,
    /// What the daemon learned of the destination's normal (when its policy
    /// learns trip rates or slow bounds).
    pub baseline: Baseline,
    /// Per class (by [`crate::class::Priority`]): active, admitted, shed.
    pub classes: [ClassCounts; CLASSES],
}
const _: () = assert!(
    size_of::<DestState>()
        == 32
            + size_of::<Breaker>()
            + size_of::<DestCounters>()
            + size_of::<Latency>()
            + size_of::<SignalSum>()
            + size_of::<Baseline>()
            + size_of::<ClassCounts>() * CLASSES
);
impl_pod!(DestState);

impl DestState {
    /// A fresh, CLOSED destination of `policy_id`, first seen at `now`.
    pub fn new(policy_id: u32, now: u64) -> Self {
        let mut state = Self {
            policy_id,
            last_attempt_ns: now,
            ..Self::default()
        };
        state.breaker.healthy_since_ns = now;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_v4_mapped_ipv6_share_a_key() {
        let v4 = u32::from_ne_bytes([10, 1, 2, 3]);
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(
            DestKey::from_ipv4_raw(v4, 80),
            DestKey::from_octets(mapped, 80)
        );
        assert!(DestKey::from_ipv4_raw(v4, 80).is_ipv4());
    }

    #[test]
    fn socket_addr_round_trip() {
        for text in ["10.0.0.5:5432", "[fd00::1]:443", "127.0.0.1:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(DestKey::from(addr).socket_addr(), addr, "{text}");
        }
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:5432".parse().unwrap();
        let plain: SocketAddr = "10.0.0.5:5432".parse().unwrap();
        assert_eq!(DestKey::from(mapped), DestKey::from(plain));
    }

    #[test]
    fn octets_round_trip() {
        let octets: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        let key = DestKey::from_octets(octets, 443);
        assert_eq!(key.octets(), octets);
        assert!(!key.is_ipv4());
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn log2_buckets_of_microseconds() {
        assert_eq!(Latency::bucket_of(0), 0);
        assert_eq!(Latency::bucket_of(1_999), 0);
        assert_eq!(Latency::bucket_of(2_000), 1);
        assert_eq!(Latency::bucket_of(1_000_000), 9); // 1 ms = 2^9.97 µs
        assert_eq!(Latency::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        let mut l = Latency::default();
        l.record(5_000);
        assert_eq!(l.buckets[2], 1);
        assert_eq!(l.sum_ns, 5_000);
    }
}

//! Faults injected on purpose ("chaos"): what the kernel holds for each armed
//! fault and the decisions the programs take from it.
//!
//! A fault lives in one slot of [`crate::maps::CHAOS`] and is armed by its bit
//! in [`crate::config::Config::chaos_armed`]. The kernel checks both, and the
//! fault's absolute expiry, on every use: clearing the bits (one map update)
//! ends every fault at once, and a daemon that dies mid-experiment cannot
//! leave a fault on past its deadline.
//!
//! | kind        | decided at           | what the caller sees                                  |
//! |-------------|----------------------|-------------------------------------------------------|
//! | `Refuse`    | `connect()`          | `connect()` fails at once with the fault's errno      |
//! | `Blackhole` | `connect()`, SYNs    | every SYN is dropped: its own or the kernel's timeout |
//! | `Delay`     | `connect()`, SYNs    | the first `syns` SYNs are dropped: each adds one retransmission timeout |
//! | `GuestRefuse`    | a guest's SYN on a watched interface | answered with a RST: the guest's `connect()` is refused |
//! | `GuestBlackhole` | a guest's SYNs       | dropped: the guest's connect times out                 |
//! | `GuestLoss`      | a guest's packets    | each dropped with the fault's chance                   |
//!
//! A connect is a candidate when its destination matches one of the fault's
//! targets, its caller is in one of the fault's cgroups (any caller when
//! none is listed) and of one of its priority classes (any when none is);
//! a candidate is affected with the fault's chance, while the
//! fault's cap allows. The first armed fault that affects a connect decides
//! it, before the breaker: a refused connect never reaches the breaker; a
//! connect whose SYNs are to be dropped is marked ([`Mark`]), and counted
//! as refused too if the breaker then refuses it ([`Fault::hit`]).
//!
//! Guest faults act on the packet plane, after its admission: their
//! candidates are a guest's packets to the targets (guests belong to no
//! cgroup of this host). A refusal or a blackhole is drawn once per
//! connection ([`connection_draw`]: its SYNs retransmitted meet the same
//! fate), a loss once per packet.

use crate::{dest::DestKey, impl_pod, raw_enum};

/// Slots of [`crate::maps::CHAOS`]: faults armed at once, across experiments
/// (one bit each in [`crate::config::Config::chaos_armed`]).
pub const SLOTS: u32 = 8;
/// Destination targets one fault may hold.
pub const MAX_TARGETS: usize = 8;
/// Cgroups one fault may be scoped to.
pub const MAX_CGROUPS: usize = 4;
/// [`Fault::syns`] of a blackhole: every SYN.
pub const ALL_SYNS: u32 = u32::MAX;
/// [`Fault::chance`] of a fault that affects every candidate.
pub const ALWAYS: u32 = u32::MAX;

raw_enum! {
    /// What a [`Fault`] does ([`Fault::kind`]).
    pub enum Kind {
        /// `connect()` fails at once with [`Fault::errno`].
        Refuse = 1,
        /// The connect's SYNs are dropped, all of them.
        Blackhole = 2,
        /// The connect's first [`Fault::syns`] SYNs are dropped.
        Delay = 3,
        /// Packet plane: a guest's SYN is answered with a RST.
        GuestRefuse = 4,
        /// Packet plane: a guest's SYNs are dropped.
        GuestBlackhole = 5,
        /// Packet plane: each of a guest's packets is dropped with
        /// [`Fault::chance`].
        GuestLoss = 6,
    }
}

/// A destination target: an address prefix (v4-mapped for IPv4, as in
/// [`DestKey`]) and a port (or any), in every network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The prefix's address, already masked, in [`DestKey::addr`]'s words.
    pub addr: [u32; 4],
    /// The prefix's mask in the same words.
    pub mask: [u32; 4],
    /// Host-order port (0: any).
    pub port: u16,
    /// `0xffff` to compare the port, 0 for any port.
    pub port_mask: u16,
    pub _pad: [u16; 2],
}
const _: () = assert!(size_of::<Target>() == 40);
impl_pod!(Target);

impl Target {
    /// The target of `prefix_len` bits of `key`'s address (`0..=128`) and
    /// `key`'s port (0: any).
    pub fn prefix(key: &DestKey, prefix_len: u32) -> Self {
        let mut mask = [0u32; 4];
        for (i, word) in mask.iter_mut().enumerate() {
            let bits = prefix_len.saturating_sub(32 * i as u32).min(32);
            // Network order: the first bits of the address are the high bits
            // of each big-endian word.
            let be = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            *word = be.to_be();
        }
        let mut addr = key.addr;
        for (a, m) in addr.iter_mut().zip(mask) {
            *a &= m;
        }
        Self {
            addr,
            mask,
            port: key.port,
            port_mask: if key.port == 0 { 0 } else { u16::MAX },
            _pad: [0; 2],
        }
    }

    /// The bits in which `key` (in any namespace) differs from the target
    /// where the target compares: 0 when it is inside.
    #[inline(always)]
    pub const fn differs(&self, key: &DestKey) -> u32 {
        ((key.addr[0] & self.mask[0]) ^ self.addr[0])
            | ((key.addr[1] & self.mask[1]) ^ self.addr[1])
            | ((key.addr[2] & self.mask[2]) ^ self.addr[2])
            | ((key.addr[3] & self.mask[3]) ^ self.addr[3])
            | ((key.port ^ self.port) & self.port_mask) as u32
    }

    /// Whether `key` (in any namespace) is inside the target.
    pub const fn matches(&self, key: &DestKey) -> bool {
        self.differs(key) == 0
    }
}

/// 1 if `x` is 0, else 0, without a branch (the top bit of `x | -x` is set
/// for every `x` but 0).
#[inline(always)]
pub const fn is_zero(x: u64) -> u64 {
    1 ^ ((x | x.wrapping_neg()) >> 63)
}

/// A cgroup a fault is scoped to: its id and its level, for
/// `bpf_get_current_ancestor_cgroup_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupScope {
    pub id: u64,
    pub level: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<CgroupScope>() == 16);
impl_pod!(CgroupScope);

/// What the daemon arms in a slot of [`crate::maps::CHAOS`], and what the
/// kernel counts there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// A [`Kind`]; a slot holding no kind is inert.
    pub kind: u32,
    /// `Refuse`: the errno `connect()` fails with.
    pub errno: u32,
    /// `Blackhole`/`Delay`: SYNs to drop per connect ([`ALL_SYNS`]: every one).
    pub syns: u32,
    /// A candidate is affected when `bpf_get_prandom_u32() < chance`
    /// ([`ALWAYS`]: without a draw).
    pub chance: u32,
    /// `CLOCK_MONOTONIC` ns at which the fault ends, whatever the daemon does.
    pub until_ns: u64,
    /// The most connects the fault may affect (0: no cap).
    pub cap: u64,
    /// Targets given, of [`Self::targets`]; the kernel compares all of
    /// them, so the rest repeat the first.
    pub target_count: u32,
    /// Cgroups given, of [`Self::cgroups`] (a fault on every caller names
    /// the root, at level 0); the rest repeat the first.
    pub cgroup_count: u32,
    /// The callers' priority classes, a bit per [`crate::class::Priority`]
    /// (0: every class).
    pub classes: u32,
    /// Non-zero: the callers are those the fault's workload selectors match
    /// now ([`crate::workload`], the scope of its slot), not `cgroups`.
    pub workloads: u32,
    pub targets: [Target; MAX_TARGETS],
    pub cgroups: [CgroupScope; MAX_CGROUPS],
    /// Connects affected, counted by the kernel.
    pub affected: u64,
    /// Candidates the chance or the cap spared, counted by the kernel.
    pub spared: u64,
    /// SYNs dropped, counted by the kernel.
    pub syns_dropped: u64,
    /// Connects a dropping fault marked that the breaker then refused: they
    /// never sent a SYN (counted in `affected` too, and by the cap).
    pub refused: u64,
}
const _: () = assert!(size_of::<Fault>() == 464);

impl Fault {
    /// Connects the fault hit: counted as affected, and not refused by the
    /// breaker before it could act.
    pub const fn hit(&self) -> u64 {
        self.affected.saturating_sub(self.refused)
    }
}
impl_pod!(Fault);

impl Fault {
    /// Puts `targets` (the first [`MAX_TARGETS`]) in the fault. The kernel
    /// compares every slot, so the unused ones repeat the first.
    pub fn set_targets(&mut self, targets: &[Target]) {
        self.target_count = fill(&mut self.targets, targets);
    }

    /// Puts `cgroups` (the first [`MAX_CGROUPS`]) in the fault, the unused
    /// slots repeating the first (every slot is compared).
    pub fn set_cgroups(&mut self, cgroups: &[CgroupScope]) {
        self.cgroup_count = fill(&mut self.cgroups, cgroups);
    }

    /// Whether the fault acts on connects at `now` (armed is the caller's
    /// check).
    #[inline(always)]
    pub const fn live(&self, now: u64) -> bool {
        at_sockets(self.kind) && now < self.until_ns
    }

    /// Whether the fault acts on guests' packets at `now` (armed is the
    /// caller's check).
    #[inline(always)]
    pub const fn live_for_guests(&self, now: u64) -> bool {
        at_guests(self.kind) && now < self.until_ns
    }

    /// Whether `key` is one of the fault's targets (unused slots repeat the
    /// first).
    ///
    /// Target by target, leaving at the first that matches: with every
    /// answer kept to the end, the compiler keeps each in its own register
    /// or stack slot, and the verifier walks every combination of them.
    #[inline(always)]
    pub fn targets(&self, key: &DestKey) -> bool {
        if self.target_count == 0 {
            return false;
        }
        let mut i = 0;
        while i < MAX_TARGETS {
            if self.targets[i].differs(key) == 0 {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Whether the caller, of the priority class `class()`, is one of the
    /// fault's: `class` is asked only when the fault names classes (finding
    /// a caller's class walks up its cgroups).
    #[inline(always)]
    pub fn of_class(&self, class: impl FnOnce() -> crate::class::Priority) -> bool {
        self.classes == 0 || self.classes & class().bit() != 0
    }

    /// Whether a candidate with the random `draw` is affected (the cap aside).
    #[inline(always)]
    pub const fn drawn(&self, draw: u32) -> bool {
        self.chance == ALWAYS || draw < self.chance
    }
}

/// Fills `slots` with `given`, the rest repeating its first; how many were
/// given (at most the slots).
fn fill<T: Copy + Default>(slots: &mut [T], given: &[T]) -> u32 {
    let first = given.first().copied().unwrap_or_default();
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = given.get(i).copied().unwrap_or(first);
    }
    given.len().min(slots.len()) as u32
}

/// [`Fault::chance`] for `percent` of the candidates (clamped to 0..=100).
pub fn chance(percent: f64) -> u32 {
    if percent >= 100.0 {
        return ALWAYS;
    }
    let p = percent.max(0.0) / 100.0;
    // Strictly below ALWAYS for any percentage below 100.
    ((p * 4_294_967_296.0) as u64).min(u64::from(ALWAYS - 1)) as u32
}

/// The bit of slot `slot` in [`crate::config::Config::chaos_armed`].
#[inline(always)]
pub const fn bit(slot: u32) -> u32 {
    1 << (slot % SLOTS)
}

/// Whether a fault of `kind` refuses connects (else it drops their SYNs).
#[inline(always)]
pub const fn refuses(kind: u32) -> bool {
    kind == Kind::Refuse as u32
}

/// Whether a fault of `kind` acts at `connect()` (the socket plane). One
/// comparison, not a match: each arm would be a path the verifier walks.
#[inline(always)]
pub const fn at_sockets(kind: u32) -> bool {
    kind.wrapping_sub(Kind::Refuse as u32) < 3
}

/// Whether a fault of `kind` drops the SYNs of the connects it affects (at
/// egress, through the cgroup's packet program).
#[inline(always)]
pub const fn drops_syns(kind: u32) -> bool {
    at_sockets(kind) && !refuses(kind)
}

/// Whether a fault of `kind` acts on guests' packets (the packet plane).
#[inline(always)]
pub const fn at_guests(kind: u32) -> bool {
    kind.wrapping_sub(Kind::GuestRefuse as u32) < 3
}

/// What a guest fault does to a guest's packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum GuestAction {
    /// Nothing.
    Pass = 0,
    /// Answer the SYN with a RST.
    Refuse = 1,
    /// Drop the packet.
    Drop = 2,
}

impl GuestAction {
    /// What a guest fault of `kind` does to a packet it affects (`syn`: a
    /// connection's opening SYN): refusals and blackholes act on SYNs (a
    /// connection they spared goes on untouched), loss on every packet.
    #[inline(always)]
    pub const fn of(kind: u32, syn: bool) -> Self {
        match Kind::from_raw(kind) {
            Some(Kind::GuestRefuse) if syn => Self::Refuse,
            Some(Kind::GuestBlackhole) if syn => Self::Drop,
            Some(Kind::GuestLoss) => Self::Drop,
            _ => Self::Pass,
        }
    }

    /// The action [`Self::of`] encoded as `u32`, read back (anything else
    /// passes).
    #[inline(always)]
    pub const fn from_u32(raw: u32) -> Self {
        match raw {
            1 => Self::Refuse,
            2 => Self::Drop,
            _ => Self::Pass,
        }
    }
}

/// Whether a guest fault of `kind` draws its chance once per connection
/// ([`connection_draw`]) rather than once per packet: a refusal or a
/// blackhole must meet every SYN of a connection alike, or a retransmitted
/// SYN would slip through and turn the fault into a delay.
#[inline(always)]
pub const fn draws_per_connection(kind: u32) -> bool {
    kind != Kind::GuestLoss as u32
}

/// A connection's draw against a fault's chance: a hash of its four-tuple
/// (the network namespace aside) and of `seed` (the fault's arming, its
/// [`Fault::until_ns`]), spread evenly over `u32` so that `chance` keeps its
/// meaning, the same for every packet of the connection.
#[inline(always)]
pub const fn connection_draw(key: &crate::flow::FlowKey, seed: u64) -> u32 {
    // Each word folded in, then mixed (MurmurHash3's 64-bit finalizer).
    const fn mix(h: u64, word: u32) -> u64 {
        let mut x = (h ^ word as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
    let d = &key.dest;
    let c = &key.client;
    let ports = (d.port as u32) << 16 | key.client_port as u32;
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    h = mix(h, d.addr[0]);
    h = mix(h, d.addr[1]);
    h = mix(h, d.addr[2]);
    h = mix(h, d.addr[3]);
    h = mix(h, c[0]);
    h = mix(h, c[1]);
    h = mix(h, c[2]);
    h = mix(h, c[3]);
    h = mix(h, ports);
    (h >> 32) as u32
}

/// The value of [`crate::maps::CHAOS_SOCKS`]: a connect whose SYNs the
/// fault in `slot` drops.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// The fault's slot + 1 (0: no mark).
    pub slot: u32,
    /// SYNs still to drop ([`ALL_SYNS`]: every one).
    pub syns: u32,
    /// The fault's [`Fault::until_ns`] when it marked the connect: a mark
    /// left from an earlier connect of the socket names another arming.
    pub until_ns: u64,
}
const _: () = assert!(size_of::<Mark>() == 16);
impl_pod!(Mark);

impl Mark {
    /// The mark `fault` (in `slot`) puts on a connect it affects.
    #[inline(always)]
    pub const fn of(fault: &Fault, slot: u32) -> Self {
        Self {
            slot: slot + 1,
            syns: fault.syns,
            until_ns: fault.until_ns,
        }
    }

    /// The slot of the fault that made the mark, if any.
    #[inline(always)]
    pub const fn slot(&self) -> Option<u32> {
        self.slot.checked_sub(1)
    }

    /// Whether `fault` is still the arming that made the mark.
    #[inline(always)]
    pub const fn made_by(&self, fault: &Fault) -> bool {
        self.until_ns == fault.until_ns
    }
}

/// What egress does with a SYN of a socket marked with `syns_left` SYNs to
/// drop ([`ALL_SYNS`]: every one): `Some(left after this one)` to drop it,
/// `None` to let it go.
#[inline(always)]
pub const fn drop_syn(syns_left: u32) -> Option<u32> {
    match syns_left {
        0 => None,
        ALL_SYNS => Some(ALL_SYNS),
        n => Some(n - 1),
    }
}

#[cfg(test)]
mod tests {
    use core::net::SocketAddr;

    use super::*;

    fn key(s: &str) -> DestKey {
        DestKey::from(s.parse::<SocketAddr>().unwrap())
    }

    fn target(s: &str, v4_prefix: u32) -> Target {
        Target::prefix(&key(s), 96 + v4_prefix)
    }

    #[test]
    fn an_ipv4_prefix_matches_its_addresses_and_port_only() {
        let t = target("10.1.2.0:5432", 24);
        assert!(t.matches(&key("10.1.2.9:5432")));
        assert!(t.matches(&key("10.1.2.255:5432").in_netns(7)));
        assert!(!t.matches(&key("10.1.3.9:5432")));
        assert!(!t.matches(&key("10.1.2.9:5433")));
        assert!(!t.matches(&key("[::1]:5432")));
    }

    #[test]
    fn port_zero_matches_every_port_and_odd_prefixes_cut_inside_a_byte() {
        let t = target("10.1.2.0:0", 23);
        assert!(t.matches(&key("10.1.3.200:1")));
        assert!(t.matches(&key("10.1.2.1:65535")));
        assert!(!t.matches(&key("10.1.4.1:80")));
        let host = target("127.0.0.1:80", 32);
        assert!(host.matches(&key("127.0.0.1:80")));
        assert!(!host.matches(&key("127.0.0.2:80")));
    }

    #[test]
    fn ipv6_prefixes_and_the_whole_space() {
        let t = Target::prefix(&key("[2001:db8::]:443"), 32);
        assert!(t.matches(&key("[2001:db8:ffff::1]:443")));
        assert!(!t.matches(&key("[2001:db9::1]:443")));
        let any = Target::prefix(&key("[::]:0"), 0);
        assert!(any.matches(&key("1.2.3.4:1")));
        assert!(any.matches(&key("[2001:db8::1]:9")));
    }

    #[test]
    fn a_fault_is_live_only_with_a_kind_and_before_its_expiry() {
        let mut f = Fault {
            kind: Kind::Refuse as u32,
            until_ns: 100,
            ..Fault::default()
        };
        assert!(f.live(99));
        assert!(!f.live(100));
        f.kind = 0;
        assert!(!f.live(0));
    }

    #[test]
    fn every_target_slot_is_compared_and_a_fault_without_targets_matches_nothing() {
        let mut f = Fault {
            target_count: 2,
            ..Fault::default()
        };
        f.targets = [target("10.0.0.1:80", 32); MAX_TARGETS];
        f.targets[1] = target("10.0.0.2:80", 32);
        assert!(f.targets(&key("10.0.0.1:80")));
        assert!(f.targets(&key("10.0.0.2:80")));
        assert!(!f.targets(&key("10.0.0.3:80")));
        f.target_count = 0;
        assert!(!f.targets(&key("10.0.0.1:80")));
    }

    #[test]
    fn is_zero_without_a_branch() {
        for (x, z) in [(0, 1), (1, 0), (u64::MAX, 0), (1 << 63, 0), (12345, 0)] {
            assert_eq!(is_zero(x), z, "{x}");
        }
    }

    #[test]
    fn the_chance_of_a_percentage() {
        assert_eq!(chance(100.0), ALWAYS);
        assert_eq!(chance(0.0), 0);
        let thirty = chance(30.0);
        assert!((f64::from(thirty) / 4_294_967_296.0 - 0.3).abs() < 1e-9);
        assert!(chance(99.999_999_999) < ALWAYS);
        let f = Fault {
            chance: thirty,
            ..Fault::default()
        };
        assert!(f.drawn(0));
        assert!(f.drawn(thirty - 1));
        assert!(!f.drawn(thirty));
        let none = Fault::default();
        assert!(!none.drawn(0));
    }

    #[test]
    fn syns_are_dropped_while_some_are_left() {
        assert_eq!(drop_syn(0), None);
        assert_eq!(drop_syn(2), Some(1));
        assert_eq!(drop_syn(1), Some(0));
        assert_eq!(drop_syn(ALL_SYNS), Some(ALL_SYNS));
    }

    #[test]
    fn a_fault_with_classes_keeps_to_them() {
        use crate::class::Priority;
        let any = Fault::default();
        let some = Fault {
            classes: Priority::Sheddable.bit() | Priority::Default.bit(),
            ..Fault::default()
        };
        assert!(any.of_class(|| unreachable!("a fault on every class asks none")));
        for p in Priority::ALL {
            assert!(any.of_class(|| p));
            assert_eq!(
                some.of_class(|| p),
                matches!(p, Priority::Sheddable | Priority::Default)
            );
        }
    }

    #[test]
    fn guest_faults_act_on_the_packets_their_kind_says() {
        use GuestAction::*;
        let k = |k: Kind| k as u32;
        assert_eq!(GuestAction::of(k(Kind::GuestRefuse), true), Refuse);
        assert_eq!(GuestAction::of(k(Kind::GuestRefuse), false), Pass);
        assert_eq!(GuestAction::of(k(Kind::GuestBlackhole), true), Drop);
        assert_eq!(GuestAction::of(k(Kind::GuestBlackhole), false), Pass);
        assert_eq!(GuestAction::of(k(Kind::GuestLoss), false), Drop);
        assert_eq!(GuestAction::of(k(Kind::GuestLoss), true), Drop);
        assert_eq!(GuestAction::of(k(Kind::Refuse), true), Pass);
        for a in [Pass, Refuse, Drop] {
            assert_eq!(GuestAction::from_u32(a as u32), a);
        }
        assert!(at_guests(k(Kind::GuestLoss)) && !at_guests(k(Kind::Delay)));
        assert!(at_sockets(k(Kind::Delay)) && !at_sockets(k(Kind::GuestRefuse)));
        assert!(!at_guests(0) && !at_sockets(0) && !at_guests(7));
        // Only the socket plane's faults that let the connect through drop SYNs.
        let dropping: std::vec::Vec<u32> = (0..8).filter(|kind| drops_syns(*kind)).collect();
        assert_eq!(dropping, [k(Kind::Blackhole), k(Kind::Delay)]);
        assert!(draws_per_connection(k(Kind::GuestBlackhole)));
        assert!(!draws_per_connection(k(Kind::GuestLoss)));
        let f = Fault {
            kind: k(Kind::GuestRefuse),
            until_ns: 10,
            ..Fault::default()
        };
        assert!(f.live_for_guests(9) && !f.live(9) && !f.live_for_guests(10));
    }

    /// A guest's connection from `client:port` to 10.0.0.1:80.
    fn connection(client: &str, port: u16) -> crate::flow::FlowKey {
        let c = key(&std::format!("{client}:{port}"));
        crate::flow::FlowKey::from_guest(c.addr, port, key("10.0.0.1:80").addr, 80)
    }

    #[test]
    fn a_connection_draws_the_same_every_time_and_anew_for_each_arming() {
        let k = connection("192.168.1.2", 40000);
        assert_eq!(connection_draw(&k, 7), connection_draw(&k, 7));
        assert_eq!(
            connection_draw(&k, 7),
            connection_draw(&k.in_netns(3), 7),
            "the namespace is no part of the connection's draw"
        );
        assert_ne!(connection_draw(&k, 7), connection_draw(&k, 8));
        assert_ne!(
            connection_draw(&k, 7),
            connection_draw(&connection("192.168.1.2", 40001), 7)
        );
    }

    #[test]
    fn connection_draws_keep_a_chance_over_ports_and_over_guests() {
        // 30 % of 10 000 connections: the binomial's 99.9 % interval is
        // 3 000 ± 151.
        let f = Fault {
            chance: chance(30.0),
            ..Fault::default()
        };
        let seed = 123_456_789;
        let by_port = (0..10_000u16)
            .filter(|p| f.drawn(connection_draw(&connection("10.9.0.2", 30_000 + p), seed)))
            .count();
        let by_guest = (0..10_000u32)
            .filter(|i| {
                let guest = std::format!("10.9.{}.{}", i / 250, i % 250);
                f.drawn(connection_draw(&connection(&guest, 40_000), seed))
            })
            .count();
        for (what, n) in [("ports", by_port), ("guests", by_guest)] {
            assert!((2_849..=3_151).contains(&n), "{what}: {n} of 10 000");
        }
    }

    #[test]
    fn a_mark_names_its_slot_and_its_arming() {
        let f = Fault {
            kind: Kind::Delay as u32,
            syns: 2,
            until_ns: 77,
            ..Fault::default()
        };
        let m = Mark::of(&f, 0);
        assert_eq!((m.slot(), m.syns), (Some(0), 2));
        assert!(m.made_by(&f));
        let rearmed = Fault { until_ns: 78, ..f };
        assert!(!m.made_by(&rearmed));
        assert_eq!(Mark::default().slot(), None);
    }
}

//! Map names and capacities. The eBPF crate declares the maps under these names
//! and the daemon looks them up (and resizes them at load time) by the same names.

/// Single-entry array holding [`crate::config::Config`].
pub const CONFIG: &str = "CONFIG";

/// Hash map [`crate::dest::DestKey`] → [`crate::dest::DestState`]. Not an LRU: an
/// evicted entry would lose its counters (and later its bulkhead slots); when it is
/// full new destinations are allowed untracked and counted.
pub const DESTS: &str = "DESTS";
/// Default capacity of [`DESTS`]; the daemon may change it at load time.
pub const DESTS_CAPACITY: u32 = 65_536;

/// Array of [`crate::sock::SockInfo`] slots: the record of every admitted
/// connect still open, from the gate to its end, in a slot its socket's
/// cookie names (the slot `cookie mod capacity`, or the first free one of
/// [`CONN_PROBES`] spread from it; a free slot's cookie is 0). Not socket
/// storage, nor a hash: allocating an element on every tracked connect (and
/// freeing it at its end) was most of the tracked path's cost. The kernel
/// hands out cookies in sequence, so consecutive connects take neighbouring
/// slots. The record is freed by the hook that records the connection's
/// end.
pub const CONNS: &str = "CONNS";
/// Default capacity of [`CONNS`], in slots (a power of two); the daemon may
/// change it at load time.
pub const CONNS_CAPACITY: u32 = 131_072;
/// The slots a socket's record may take, from the one its cookie names: a
/// connect that finds them all taken passes untracked. With a quarter of the
/// slots taken, one connect in 65 536 finds all eight taken.
pub const CONN_PROBES: u64 = 8;

/// Per-CPU array of hot-path counters, indexed by [`crate::counters::GlobalCounter`].
pub const COUNTERS: &str = "COUNTERS";

/// LPM tries [`crate::rules::RuleData`] → policy id (`u32`), one per bank
/// ([`crate::bank::Bank::index`]).
pub const POLICY_RULES: [&str; 2] = ["POLICY_RULES_0", "POLICY_RULES_1"];
/// Default capacity of each of [`POLICY_RULES`]: the most rules a policy set
/// may have. The daemon may change it at load time.
pub const POLICY_RULES_CAPACITY: u32 = 16_384;

/// Array of [`crate::rules::RuleFilter`], one per bank
/// ([`crate::bank::Bank::index`]): the ports and leading address bytes the
/// bank's rules could match, written with its trie.
pub const RULE_FILTER: &str = "RULE_FILTER";

/// Array of [`crate::policy::Policy`], indexed by bank and policy id
/// ([`crate::bank::Bank::slot`]).
pub const POLICIES: &str = "POLICIES";

/// Array of [`crate::policy::BackoffRow`], indexed as [`POLICIES`].
pub const BACKOFF: &str = "BACKOFF";

/// Array of [`crate::policy::PolicyStats`], indexed by policy id (in neither
/// bank: counts, not configuration).
pub const POLICY_STATS: &str = "POLICY_STATS";

/// Hash map [`crate::dest::DestKey`] → [`crate::overrides::Override`].
pub const OVERRIDES: &str = "OVERRIDES";
/// Capacity of [`OVERRIDES`].
pub const OVERRIDES_CAPACITY: u32 = 4_096;

/// Ring buffer of [`crate::event::Event`].
pub const EVENTS: &str = "EVENTS";
/// Size of [`EVENTS`] in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Single-entry array of zeroes, the source the gate inserts new destinations
/// from (a `DestState` does not fit on the 512-byte BPF stack).
pub const ZERO_DEST: &str = "ZERO_DEST";

/// Hash map [`crate::flow::FlowKey`] → [`crate::flow::Flow`]: the packet plane's
/// admitted flows. Not an LRU, for the reason [`DESTS`] is not: an evicted flow
/// would keep its slot forever; the daemon's sweep expires idle flows.
pub const FLOWS: &str = "FLOWS";
/// Default capacity of [`FLOWS`]; the daemon may change it at load time.
pub const FLOWS_CAPACITY: u32 = 65_536;

/// Hash map interface index → the index of the bridge it is a port of (0:
/// none), written by the daemon for every interface it watches: a guest
/// behind a bridge port is routed back through the bridge. Entries of
/// interfaces no longer watched are harmless (no program runs there).
pub const WATCHED: &str = "WATCHED";
/// Capacity of [`WATCHED`].
pub const WATCHED_CAPACITY: u32 = 1024;

/// Array of [`crate::chaos::Fault`], [`crate::chaos::SLOTS`] entries: the
/// chaos faults, armed by their bits in [`crate::config::Config::chaos_armed`].
pub const CHAOS: &str = "CHAOS";

/// Socket storage holding [`crate::chaos::Mark`] for every connect a chaos
/// fault drops SYNs of.
pub const CHAOS_SOCKS: &str = "CHAOS_SOCKS";

/// Single-entry array holding [`crate::class::ClassTable`]: the classes'
/// shares, and whether classes are configured at all.
pub const CLASS_TABLE: &str = "CLASS_TABLE";

/// Hash map cgroup id (`u64`, the directory's inode) → [`crate::class::Priority`]
/// (`u32`): the cgroups the operator listed for each class.
pub const CLASS_CGROUPS: &str = "CLASS_CGROUPS";
/// Capacity of [`CLASS_CGROUPS`].
pub const CLASS_CGROUPS_CAPACITY: u32 = 4_096;

/// Hash map [`crate::workload::WorkloadKey`] → the cgroup's level (`u32`):
/// the cgroups each workload selector matches now.
pub const WORKLOADS: &str = "WORKLOADS";
/// Capacity of [`WORKLOADS`]: matched (cgroup, selector owner) pairs.
pub const WORKLOADS_CAPACITY: u32 = 65_536;

/// Array of `u32`, [`crate::workload::SCOPES`] entries: per selector owner,
/// a bit per level below the cgroup v2 root holding one of its matches.
pub const WORKLOAD_LEVELS: &str = "WORKLOAD_LEVELS";

/// Read-only globals of the object, set by the daemon at load time from the
/// running kernel's BTF (`/sys/kernel/btf/vmlinux`): layouts differ between
/// kernel builds, and the programs read these few fields through BTF-typed
/// socket pointers. 0 means "unknown": the programs then do without.
pub mod globals {
    /// Byte offset of `sk_err` (`int`) in `struct sock`.
    pub const SK_ERR_OFFSET: &str = "SK_ERR_OFFSET";
    /// Byte offset of `uc_ttl` (`__s16`, -1 = the system's default) in
    /// `struct inet_sock`, which starts every TCP socket.
    pub const UC_TTL_OFFSET: &str = "UC_TTL_OFFSET";
    /// A caller-set IPv4 TTL below this is a lowered hop limit
    /// (`net.ipv4.ip_default_ttl` when the daemon starts).
    pub const MIN_TTL: &str = "MIN_TTL";
    /// Byte offset of `pinet6` (a pointer, NULL for IPv4 sockets) in
    /// `struct inet_sock`.
    pub const PINET6_OFFSET: &str = "PINET6_OFFSET";
    /// Byte offset of the 16-bit word holding `hop_limit` (signed, -1 = the
    /// default) in `struct ipv6_pinfo`, and its shift and width in that word
    /// (a 9-bit bitfield on older kernels).
    pub const HOP_LIMIT_OFFSET: &str = "HOP_LIMIT_OFFSET";
    pub const HOP_LIMIT_SHIFT: &str = "HOP_LIMIT_SHIFT";
    pub const HOP_LIMIT_BITS: &str = "HOP_LIMIT_BITS";
    /// A caller-set IPv6 hop limit below this is lowered
    /// (`net.ipv6.conf.default.hop_limit`).
    pub const MIN_HOP_LIMIT: &str = "MIN_HOP_LIMIT";
    /// Byte offset of `icsk_user_timeout` (`u32`, ms) in `struct
    /// inet_connection_sock`, which starts every TCP socket.
    pub const USER_TIMEOUT_OFFSET: &str = "USER_TIMEOUT_OFFSET";
    /// Byte offset of `skc_cookie` (`u64`, 0 until a cookie is asked for) in
    /// `struct sock`.
    pub const COOKIE_OFFSET: &str = "COOKIE_OFFSET";
    /// [`super::CONNS`]' capacity minus one (the capacity is a power of two):
    /// a cookie's slot is `cookie & CONNS_MASK`.
    pub const CONNS_MASK: &str = "CONNS_MASK";
}

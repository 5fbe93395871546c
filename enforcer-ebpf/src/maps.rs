//! Every map the programs share with each other and with the daemon. Names are the
//! consts in `enforcer_common::maps`; the daemon resizes capacities at load time.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, SkStorage},
    macros::btf_map,
};
use enforcer_common::{
    bank::POLICY_SLOTS,
    chaos::{self, Fault, Mark},
    class::ClassTable,
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    event::Event,
    flow::{Flow, FlowKey},
    maps::{
        CLASS_CGROUPS_CAPACITY, CONNS_CAPACITY, DESTS_CAPACITY, EVENTS_BYTES, FLOWS_CAPACITY,
        OVERRIDES_CAPACITY, POLICY_RULES_CAPACITY, WATCHED_CAPACITY, WORKLOADS_CAPACITY,
    },
    overrides::Override,
    packet::HEADER_BYTES,
    policy::{BackoffRow, Policy, PolicyStats},
    rules::{MAX_POLICIES, RuleData, RuleFilter},
    sock::SockInfo,
    workload::{SCOPES, WorkloadKey},
};

/// Global switch and generation, index 0.
#[btf_map]
pub static CONFIG: Array<Config, 1> = Array::new();

/// A bank's rules: destination prefix + port → policy id.
pub type Rules = LpmTrie<RuleData, u32, { POLICY_RULES_CAPACITY as usize }>;

/// What each bank's rules could match (`RuleFilter`), by bank index.
#[btf_map]
pub static RULE_FILTER: Array<RuleFilter, 2> = Array::new();

/// Bank 0's rules (`enforcer_common::bank`).
#[btf_map]
pub static POLICY_RULES_0: Rules = LpmTrie::new();

/// Bank 1's rules.
#[btf_map]
pub static POLICY_RULES_1: Rules = LpmTrie::new();

/// Policies by bank and id (`Bank::slot`); a zeroed entry is an `off` policy.
#[btf_map]
pub static POLICIES: Array<Policy, { POLICY_SLOTS as usize }> = Array::new();

/// Open durations by bank and policy id, written by the daemon.
#[btf_map]
pub static BACKOFF: Array<BackoffRow, { POLICY_SLOTS as usize }> = Array::new();

/// Per-policy counts shared across destinations (the group guard).
#[btf_map]
pub static POLICY_STATS: Array<PolicyStats, { MAX_POLICIES as usize }> = Array::new();

/// Per-destination breaker, bulkhead and counters, each behind its own spin lock.
/// Not pre-allocated: kernel memory follows the destinations actually tracked
/// (an entry is about 600 bytes), not the capacity; the cost is an allocation
/// on the first connect to a new destination.
#[btf_map]
pub static DESTS: HashMap<
    DestKey,
    DestState,
    { DESTS_CAPACITY as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Zeroes the size of a `DestState`: what new destinations are inserted from.
#[btf_map]
pub static ZERO_DEST: Array<[u64; size_of::<DestState>() / 8], 1> = Array::new();

/// Per-destination overrides (forced open, disabled), written by the daemon.
#[btf_map]
pub static OVERRIDES: HashMap<DestKey, Override, { OVERRIDES_CAPACITY as usize }> = HashMap::new();

/// The chaos faults, by slot; armed by their bits in the configuration.
#[btf_map]
pub static CHAOS: Array<Fault, { chaos::SLOTS as usize }> = Array::new();

/// Per-socket mark of a connect whose SYNs a chaos fault drops.
#[btf_map]
pub static CHAOS_SOCKS: SkStorage<Mark> = SkStorage::new();

/// The classes' shares and whether classes are configured, index 0.
#[btf_map]
pub static CLASS_TABLE: Array<ClassTable, 1> = Array::new();

/// The cgroups listed for each class: cgroup id → priority.
#[btf_map]
pub static CLASS_CGROUPS: HashMap<u64, u32, { CLASS_CGROUPS_CAPACITY as usize }> = HashMap::new();

/// The cgroups each workload selector matches now: (cgroup, scope) → level.
#[btf_map]
pub static WORKLOADS: HashMap<WorkloadKey, u32, { WORKLOADS_CAPACITY as usize }> = HashMap::new();

/// Per workload selector's scope, the levels its matches are at.
#[btf_map]
pub static WORKLOAD_LEVELS: Array<u32, { SCOPES as usize }> = Array::new();

/// The record of every admitted connect still open, in slots its socket's
/// cookie names ([`crate::sock`]).
#[btf_map]
pub static CONNS: Array<SockInfo, { CONNS_CAPACITY as usize }> = Array::new();

/// State transitions, for the daemon.
#[btf_map]
pub static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

/// The packet plane's admitted flows, from SYN to first FIN/RST or expiry. Not
/// pre-allocated, for the reason DESTS is not.
#[btf_map]
pub static FLOWS: HashMap<
    FlowKey,
    Flow,
    { FLOWS_CAPACITY as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Per-CPU scratch for the packet programs' copy of a frame's headers (slot 0:
/// from the guests, slot 1: to them): too big for the 512-byte BPF stack next to
/// everything else the admission needs.
#[btf_map]
pub static FRAMES: PerCpuArray<[u8; HEADER_BYTES], 2> = PerCpuArray::new();

/// Per-CPU scratch for the packet programs' `struct bpf_fib_lookup` (64 bytes,
/// 8-aligned), the reverse-path check of a guest's SYN: no room for it on the
/// stack either.
#[btf_map]
pub static FIB_SCRATCH: PerCpuArray<[u64; 8], 1> = PerCpuArray::new();

/// Watched interface index → the bridge it is a port of (0: none), written by
/// the daemon.
#[btf_map]
pub static WATCHED: HashMap<u32, u32, { WATCHED_CAPACITY as usize }> = HashMap::new();

/// Hot-path counters, per CPU, indexed by `GlobalCounter`.
#[btf_map]
pub static COUNTERS: PerCpuArray<u64, { GlobalCounter::COUNT as usize }> = PerCpuArray::new();

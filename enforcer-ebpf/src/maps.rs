//! Every map the programs share with each other and with the daemon. Names are the
//! consts in `enforcer_common::maps`; the daemon resizes capacities at load time.

use aya_ebpf::{
    btf_maps::{Array, HashMap, PerCpuArray, SkStorage},
    macros::btf_map,
};
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    maps::DESTS_CAPACITY,
    sock::SockInfo,
};

/// Global switch and generation, index 0.
#[btf_map]
pub static CONFIG: Array<Config, 1> = Array::new();

/// Per-destination counters (and later breaker state).
#[btf_map]
pub static DESTS: HashMap<DestKey, DestState, { DESTS_CAPACITY as usize }> = HashMap::new();

/// Per-socket record of an admitted connect.
#[btf_map]
pub static SOCKS: SkStorage<SockInfo> = SkStorage::new();

/// Hot-path counters, per CPU, indexed by `GlobalCounter`.
#[btf_map]
pub static COUNTERS: PerCpuArray<u64, { GlobalCounter::COUNT as usize }> = PerCpuArray::new();

//! Typed access to the maps the programs share with the daemon.

use aya::{
    Ebpf, Pod,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
};
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    event::Event,
    maps,
    overrides::Override,
    policy::{BackoffRow, Policy, PolicyStats},
    rules::RuleData,
};

use super::BpfError;

/// `BPF_F_LOCK`: read or write a value holding a `bpf_spin_lock` under that lock,
/// so a destination is never seen half-updated.
const BPF_F_LOCK: u64 = 4;

fn map<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a aya::maps::Map, BpfError> {
    ebpf.map(name).ok_or(BpfError::MapMissing { name })
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, BpfError> {
    ebpf.map_mut(name).ok_or(BpfError::MapMissing { name })
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// `Ok(None)` for a missing key, the error otherwise.
fn optional<V>(name: &'static str, result: Result<V, MapError>) -> Result<Option<V>, BpfError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(BpfError::Map { name, source }),
    }
}

fn array_get<V: Pod>(ebpf: &Ebpf, name: &'static str, index: u32) -> Result<V, BpfError> {
    let array: Array<&MapData, V> = Array::try_from(map(ebpf, name)?).map_err(map_err(name))?;
    array.get(&index, 0).map_err(map_err(name))
}

fn array_set<V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    index: u32,
    value: V,
) -> Result<(), BpfError> {
    let mut array: Array<&mut MapData, V> =
        Array::try_from(map_mut(ebpf, name)?).map_err(map_err(name))?;
    array.set(index, value, 0).map_err(map_err(name))
}

fn dests_map(ebpf: &Ebpf) -> Result<HashMap<&MapData, DestKey, DestState>, BpfError> {
    HashMap::try_from(map(ebpf, maps::DESTS)?).map_err(map_err(maps::DESTS))
}

/// Every tracked destination and its state.
pub fn dests(ebpf: &Ebpf) -> Result<Vec<(DestKey, DestState)>, BpfError> {
    let dests = dests_map(ebpf)?;
    let mut out = Vec::new();
    for key in dests.keys() {
        let key = key.map_err(map_err(maps::DESTS))?;
        // A destination removed between listing and reading is simply gone.
        if let Some(state) = optional(maps::DESTS, dests.get(&key, BPF_F_LOCK))? {
            out.push((key, state));
        }
    }
    Ok(out)
}

/// The state of one destination, if it is tracked, read under its lock.
pub fn dest(ebpf: &Ebpf, key: &DestKey) -> Result<Option<DestState>, BpfError> {
    optional(maps::DESTS, dests_map(ebpf)?.get(key, BPF_F_LOCK))
}

/// A global counter, summed over CPUs.
pub fn counter(ebpf: &Ebpf, counter: GlobalCounter) -> Result<u64, BpfError> {
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map(ebpf, maps::COUNTERS)?).map_err(map_err(maps::COUNTERS))?;
    let per_cpu = counters
        .get(&(counter as u32), 0)
        .map_err(map_err(maps::COUNTERS))?;
    Ok(per_cpu.iter().sum())
}

pub fn config(ebpf: &Ebpf) -> Result<Config, BpfError> {
    array_get(ebpf, maps::CONFIG, 0)
}

pub fn set_config(ebpf: &mut Ebpf, config: Config) -> Result<(), BpfError> {
    array_set(ebpf, maps::CONFIG, 0, config)
}

pub fn set_policy(ebpf: &mut Ebpf, id: u32, policy: Policy) -> Result<(), BpfError> {
    array_set(ebpf, maps::POLICIES, id, policy)
}

pub fn set_backoff(ebpf: &mut Ebpf, id: u32, row: BackoffRow) -> Result<(), BpfError> {
    array_set(ebpf, maps::BACKOFF, id, row)
}

pub fn policy_stats(ebpf: &Ebpf, id: u32) -> Result<PolicyStats, BpfError> {
    array_get(ebpf, maps::POLICY_STATS, id)
}

fn rules_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, RuleData, u32>, BpfError> {
    LpmTrie::try_from(map_mut(ebpf, maps::POLICY_RULES)?).map_err(map_err(maps::POLICY_RULES))
}

pub fn insert_rule(ebpf: &mut Ebpf, key: Key<RuleData>, policy_id: u32) -> Result<(), BpfError> {
    rules_map(ebpf)?
        .insert(&key, policy_id, 0)
        .map_err(map_err(maps::POLICY_RULES))
}

pub fn remove_rule(ebpf: &mut Ebpf, key: Key<RuleData>) -> Result<(), BpfError> {
    rules_map(ebpf)?
        .remove(&key)
        .map_err(map_err(maps::POLICY_RULES))
}

fn overrides_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, DestKey, Override>, BpfError> {
    HashMap::try_from(map_mut(ebpf, maps::OVERRIDES)?).map_err(map_err(maps::OVERRIDES))
}

pub fn insert_override(ebpf: &mut Ebpf, key: DestKey, value: Override) -> Result<(), BpfError> {
    overrides_map(ebpf)?
        .insert(key, value, 0)
        .map_err(map_err(maps::OVERRIDES))
}

/// Removes an override; `Ok(false)` when there was none.
pub fn remove_override(ebpf: &mut Ebpf, key: &DestKey) -> Result<bool, BpfError> {
    Ok(optional(maps::OVERRIDES, overrides_map(ebpf)?.remove(key))?.is_some())
}

/// Every event waiting in the ring buffer.
pub fn drain_events(ebpf: &mut Ebpf) -> Result<Vec<Event>, BpfError> {
    let mut ring: RingBuf<&mut MapData> =
        RingBuf::try_from(map_mut(ebpf, maps::EVENTS)?).map_err(map_err(maps::EVENTS))?;
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<Event>() {
            // SAFETY: the kernel wrote an `Event` (repr(C), integers only) here;
            // read_unaligned makes no assumption about the record's alignment.
            events.push(unsafe { item.as_ptr().cast::<Event>().read_unaligned() });
        }
    }
    Ok(events)
}

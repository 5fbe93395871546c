//! Typed access to the maps the programs share with the daemon.

use std::collections::BTreeMap;

use aya::{
    Pod,
    maps::{
        Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
};
use enforcer_common::{
    bank::Bank,
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    event::Event,
    flow::{Flow, FlowKey},
    maps as names,
    overrides::Override,
    policy::{BackoffRow, Policy, PolicyStats},
    rules::{MAX_POLICIES, RuleData},
};

use super::BpfError;

/// `BPF_F_LOCK`: read or write a value holding a `bpf_spin_lock` under that lock,
/// so a destination is never seen half-updated.
const BPF_F_LOCK: u64 = 4;

/// Every map of the object by name, created by this process or opened from pins.
#[derive(Default)]
pub struct Maps(BTreeMap<&'static str, Map>);

impl Maps {
    pub fn insert(&mut self, name: &'static str, map: Map) {
        self.0.insert(name, map);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Map)> {
        self.0.iter().map(|(name, map)| (*name, map))
    }
}

fn map<'a>(maps: &'a Maps, name: &'static str) -> Result<&'a Map, BpfError> {
    maps.0.get(name).ok_or(BpfError::MapMissing { name })
}

fn map_mut<'a>(maps: &'a mut Maps, name: &'static str) -> Result<&'a mut Map, BpfError> {
    maps.0.get_mut(name).ok_or(BpfError::MapMissing { name })
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// `Ok(None)` for a missing key, the error otherwise. A lookup reports a
/// missing key as `KeyNotFound`, a delete as the syscall's `ENOENT`.
fn optional<V>(name: &'static str, result: Result<V, MapError>) -> Result<Option<V>, BpfError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(None)
        }
        Err(source) => Err(BpfError::Map { name, source }),
    }
}

fn array_get<V: Pod>(maps: &Maps, name: &'static str, index: u32) -> Result<V, BpfError> {
    let array: Array<&MapData, V> = Array::try_from(map(maps, name)?).map_err(map_err(name))?;
    array.get(&index, 0).map_err(map_err(name))
}

fn array_set<V: Pod>(
    maps: &mut Maps,
    name: &'static str,
    index: u32,
    value: V,
) -> Result<(), BpfError> {
    let mut array: Array<&mut MapData, V> =
        Array::try_from(map_mut(maps, name)?).map_err(map_err(name))?;
    array.set(index, value, 0).map_err(map_err(name))
}

/// Records that the watched interface `ifindex` is a port of the bridge
/// `master` (0: none).
pub fn set_watched(maps: &mut Maps, ifindex: u32, master: u32) -> Result<(), BpfError> {
    let mut watched: HashMap<&mut MapData, u32, u32> =
        HashMap::try_from(map_mut(maps, names::WATCHED)?).map_err(map_err(names::WATCHED))?;
    watched
        .insert(ifindex, master, 0)
        .map_err(map_err(names::WATCHED))
}

fn dests_map(maps: &Maps) -> Result<HashMap<&MapData, DestKey, DestState>, BpfError> {
    HashMap::try_from(map(maps, names::DESTS)?).map_err(map_err(names::DESTS))
}

/// Every tracked destination and its state.
pub fn dests(maps: &Maps) -> Result<Vec<(DestKey, DestState)>, BpfError> {
    match dests_batched(maps) {
        Ok(all) => Ok(all),
        // Kernels without batch lookups: two system calls per destination.
        Err(_) => dests_by_key(maps),
    }
}

/// Every destination, read in batches (each under its lock).
pub fn dests_batched(maps: &Maps) -> std::io::Result<Vec<(DestKey, DestState)>> {
    use std::os::fd::AsFd as _;
    match map(maps, names::DESTS) {
        Ok(Map::HashMap(data)) => super::batch::lookup_all(data.fd().as_fd(), BPF_F_LOCK),
        _ => Err(std::io::Error::other("DESTS is not a hash map")),
    }
}

/// Hands every destination to `f` as it is read (in batches, each under its
/// lock; one key at a time where the kernel cannot batch).
pub fn each_dest(maps: &Maps, mut f: impl FnMut(&DestKey, &DestState)) -> Result<(), BpfError> {
    use std::os::fd::AsFd as _;
    let Map::HashMap(data) = map(maps, names::DESTS)? else {
        return Err(BpfError::MapMissing { name: names::DESTS });
    };
    let mut seen = 0u64;
    let batched = super::batch::for_each(data.fd().as_fd(), BPF_F_LOCK, |k, v| {
        seen += 1;
        f(k, v)
    });
    match batched {
        Ok(()) => Ok(()),
        // A kernel that cannot batch refuses the first call: read by key.
        Err(_) if seen == 0 => {
            for (k, s) in dests_by_key(maps)? {
                f(&k, &s);
            }
            Ok(())
        }
        Err(source) => Err(BpfError::Map {
            name: names::DESTS,
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_lookup_batch",
                io_error: source,
            }),
        }),
    }
}

/// Every destination, one key at a time.
pub fn dests_by_key(maps: &Maps) -> Result<Vec<(DestKey, DestState)>, BpfError> {
    let dests = dests_map(maps)?;
    let mut out = Vec::new();
    for key in dests.keys() {
        let key = key.map_err(map_err(names::DESTS))?;
        // A destination removed between listing and reading is simply gone.
        if let Some(state) = optional(names::DESTS, dests.get(&key, BPF_F_LOCK))? {
            out.push((key, state));
        }
    }
    Ok(out)
}

/// The state of one destination, if it is tracked, read under its lock.
pub fn dest(maps: &Maps, key: &DestKey) -> Result<Option<DestState>, BpfError> {
    optional(names::DESTS, dests_map(maps)?.get(key, BPF_F_LOCK))
}

/// Every flow of the packet plane (no lock: a flow's record is small and a
/// torn read of it only delays its expiry to the next sweep).
pub fn flows(maps: &Maps) -> Result<Vec<(FlowKey, Flow)>, BpfError> {
    use std::os::fd::AsFd as _;
    if let Ok(Map::HashMap(data)) = map(maps, names::FLOWS)
        && let Ok(all) = super::batch::lookup_all(data.fd().as_fd(), 0)
    {
        return Ok(all);
    }
    let flows: HashMap<&MapData, FlowKey, Flow> =
        HashMap::try_from(map(maps, names::FLOWS)?).map_err(map_err(names::FLOWS))?;
    let mut out = Vec::new();
    for key in flows.keys() {
        let key = key.map_err(map_err(names::FLOWS))?;
        if let Some(flow) = optional(names::FLOWS, flows.get(&key, 0))? {
            out.push((key, flow));
        }
    }
    Ok(out)
}

/// A global counter, summed over CPUs.
pub fn counter(maps: &Maps, counter: GlobalCounter) -> Result<u64, BpfError> {
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map(maps, names::COUNTERS)?).map_err(map_err(names::COUNTERS))?;
    let per_cpu = counters
        .get(&(counter as u32), 0)
        .map_err(map_err(names::COUNTERS))?;
    Ok(per_cpu.iter().sum())
}

pub fn config(maps: &Maps) -> Result<Config, BpfError> {
    array_get(maps, names::CONFIG, 0)
}

pub fn set_config(maps: &mut Maps, config: Config) -> Result<(), BpfError> {
    array_set(maps, names::CONFIG, 0, config)
}

/// Writes the policy at `slot` ([`Bank::slot`]).
pub fn set_policy(maps: &mut Maps, slot: u32, policy: Policy) -> Result<(), BpfError> {
    array_set(maps, names::POLICIES, slot, policy)
}

/// Writes the backoff table at `slot` ([`Bank::slot`]).
pub fn set_backoff(maps: &mut Maps, slot: u32, row: BackoffRow) -> Result<(), BpfError> {
    array_set(maps, names::BACKOFF, slot, row)
}

pub fn policy_stats(maps: &Maps, id: u32) -> Result<PolicyStats, BpfError> {
    array_get(maps, names::POLICY_STATS, id)
}

/// Every policy's shared counts, indexed by id: one batch lookup where the
/// kernel can, one lookup per id otherwise.
pub fn all_policy_stats(maps: &Maps) -> Result<Vec<PolicyStats>, BpfError> {
    use std::os::fd::AsFd as _;
    if let Ok(Map::Array(data)) = map(maps, names::POLICY_STATS)
        && let Ok(mut all) = super::batch::lookup_all::<u32, PolicyStats>(data.fd().as_fd(), 0)
        && all.len() == MAX_POLICIES as usize
    {
        all.sort_unstable_by_key(|(id, _)| *id);
        return Ok(all.into_iter().map(|(_, stats)| stats).collect());
    }
    (0..MAX_POLICIES).map(|id| policy_stats(maps, id)).collect()
}

/// The destination map's capacity, as the kernel created it.
pub fn dests_capacity(maps: &Maps) -> Result<u32, BpfError> {
    let info = match map(maps, names::DESTS)? {
        Map::HashMap(data) => data.info().map_err(map_err(names::DESTS))?,
        _ => {
            return Err(BpfError::MapMissing { name: names::DESTS });
        }
    };
    Ok(info.max_entries())
}

/// The capacity of `bank`'s rule trie, as the kernel created it.
pub fn rules_capacity(maps: &Maps, bank: Bank) -> Result<u32, BpfError> {
    let name = names::POLICY_RULES[bank.index()];
    match map(maps, name)? {
        Map::LpmTrie(data) => Ok(data.info().map_err(map_err(name))?.max_entries()),
        _ => Err(BpfError::MapMissing { name }),
    }
}

fn rules_map(
    maps: &mut Maps,
    bank: Bank,
) -> Result<(LpmTrie<&mut MapData, RuleData, u32>, &'static str), BpfError> {
    let name = names::POLICY_RULES[bank.index()];
    let trie = LpmTrie::try_from(map_mut(maps, name)?).map_err(map_err(name))?;
    Ok((trie, name))
}

pub fn insert_rule(
    maps: &mut Maps,
    bank: Bank,
    key: Key<RuleData>,
    policy_id: u32,
) -> Result<(), BpfError> {
    let (mut trie, name) = rules_map(maps, bank)?;
    trie.insert(&key, policy_id, 0).map_err(map_err(name))
}

/// Empties `bank`'s rule trie: every key removed as the kernel holds it.
pub fn clear_rules(maps: &mut Maps, bank: Bank) -> Result<(), BpfError> {
    let (mut trie, name) = rules_map(maps, bank)?;
    let keys: Vec<Key<RuleData>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(map_err(name))?;
    for key in &keys {
        trie.remove(key).map_err(map_err(name))?;
    }
    Ok(())
}

fn overrides_map(maps: &mut Maps) -> Result<HashMap<&mut MapData, DestKey, Override>, BpfError> {
    HashMap::try_from(map_mut(maps, names::OVERRIDES)?).map_err(map_err(names::OVERRIDES))
}

pub fn insert_override(maps: &mut Maps, key: DestKey, value: Override) -> Result<(), BpfError> {
    overrides_map(maps)?
        .insert(key, value, 0)
        .map_err(map_err(names::OVERRIDES))
}

/// Removes an override; `Ok(false)` when there was none.
pub fn remove_override(maps: &mut Maps, key: &DestKey) -> Result<bool, BpfError> {
    Ok(optional(names::OVERRIDES, overrides_map(maps)?.remove(key))?.is_some())
}

/// Every event waiting in the ring buffer.
pub fn drain_events(maps: &mut Maps) -> Result<Vec<Event>, BpfError> {
    let mut ring: RingBuf<&mut MapData> =
        RingBuf::try_from(map_mut(maps, names::EVENTS)?).map_err(map_err(names::EVENTS))?;
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

/// The policy at `slot` ([`Bank::slot`]).
pub fn policy(maps: &Maps, slot: u32) -> Result<Policy, BpfError> {
    array_get(maps, names::POLICIES, slot)
}

/// Every rule in `bank`'s trie, decoded, with its policy id.
pub fn rules(maps: &Maps, bank: Bank) -> Result<Vec<(crate::rule::Rule, u32)>, BpfError> {
    let name = names::POLICY_RULES[bank.index()];
    let trie: LpmTrie<&MapData, RuleData, u32> =
        LpmTrie::try_from(map(maps, name)?).map_err(map_err(name))?;
    let mut out = Vec::new();
    for item in trie.iter() {
        let (key, id) = item.map_err(map_err(name))?;
        out.push((crate::rule::Rule::from_key(&key), id));
    }
    Ok(out)
}

pub fn overrides(maps: &Maps) -> Result<Vec<(DestKey, Override)>, BpfError> {
    let map: HashMap<&MapData, DestKey, Override> =
        HashMap::try_from(map(maps, names::OVERRIDES)?).map_err(map_err(names::OVERRIDES))?;
    map.iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(names::OVERRIDES))
}

/// A descriptor of the event ring buffer that becomes readable when events wait.
pub fn events_fd(maps: &Maps) -> Result<std::os::fd::OwnedFd, BpfError> {
    use std::os::fd::AsFd as _;
    match map(maps, names::EVENTS)? {
        Map::RingBuf(data) => data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| BpfError::Map {
                name: names::EVENTS,
                source: MapError::from(aya::sys::SyscallError {
                    call: "dup",
                    io_error: e,
                }),
            }),
        _ => Err(BpfError::MapMissing {
            name: names::EVENTS,
        }),
    }
}

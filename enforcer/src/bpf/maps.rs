//! The maps the daemon shares with the programs, each typed once: taken from
//! the object when it is loaded, or opened from their pins when adopted.
//! Their operations live with their concerns: [`super::dests`],
//! [`super::policy_set`], [`super::overrides`] and the rest.

use std::{collections::BTreeMap, os::fd::AsFd as _, sync::Arc};

use aya::{
    Ebpf, Pod,
    maps::{HashMap, IterableMap as _, Map, MapData, MapError},
};
use enforcer_common::maps as names;

use super::{
    BpfError, batch,
    chaos::ChaosMap,
    classes::ClassMaps,
    config::ConfigMap,
    conns::Conns,
    counters::{Counters, PolicyStatsMap},
    dests::Dests,
    events::Events,
    flows::Flows,
    interfaces::WatchedMap,
    overrides::Overrides,
    pins::PinDir,
    policy_set::PolicyBanks,
    workloads::WorkloadMaps,
};

/// `BPF_F_LOCK`: read or write a value holding a `bpf_spin_lock` under that lock,
/// so a destination is never seen half-updated.
pub(super) const BPF_F_LOCK: u64 = 4;

/// Every map the daemon reads or writes, created by this process or opened
/// from pins. The programs' own (the chaos marks' socket storage, per-CPU
/// scratch, the log ring buffer, `ZERO_DEST`) stay with the object.
pub struct Maps {
    /// `CONFIG`: the global switch, the generation and what every program reads.
    pub config: ConfigMap,
    /// `POLICIES`, `BACKOFF` and both `POLICY_RULES` tries: the policy set, in
    /// two banks.
    pub policies: PolicyBanks,
    /// `POLICY_STATS`: each policy's tracked and open destinations.
    pub policy_stats: PolicyStatsMap,
    /// `DESTS`: each destination's breaker, bulkhead and counters. Shared:
    /// a scrape reads it on another thread, without the daemon's lock (each
    /// destination is read under its own).
    pub dests: Arc<Dests>,
    /// `OVERRIDES`: forced-open and disabled destinations.
    pub overrides: Overrides,
    /// `EVENTS`: the state transitions the kernel sends.
    pub events: Events,
    /// `COUNTERS`: the hot path's global counters, per CPU.
    pub counters: Counters,
    /// `FLOWS`: the packet plane's flows.
    pub flows: Flows,
    /// `CONNS`: the record of every admitted socket still open.
    pub conns: Conns,
    /// `WATCHED`: the bridge each watched interface is a port of.
    pub watched: WatchedMap,
    /// `CLASS_TABLE` and `CLASS_CGROUPS`: the priority classes.
    pub classes: ClassMaps,
    /// `WORKLOADS` and `WORKLOAD_LEVELS`: what workload selectors match.
    pub workloads: WorkloadMaps,
    /// `CHAOS`: the chaos faults.
    pub chaos: ChaosMap,
}

impl Maps {
    /// Takes the daemon's maps out of a freshly loaded object. The others stay
    /// in `ebpf`: its programs, not yet loaded, refer to every map by the
    /// descriptor `ebpf` holds.
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        Self::build(|name| ebpf.take_map(name).ok_or(BpfError::MapMissing { name }))
    }

    /// Opens the maps pinned in `pins` (what [`super::Enforcer::adopt`] does,
    /// for readers that need no program). Every pin is opened, those of maps
    /// the daemon never touches too: an installation missing one is
    /// incomplete, and adopting it fails here.
    pub fn open(pins: &PinDir) -> Result<Self, BpfError> {
        let mut opened = BTreeMap::new();
        for (name, path) in pins.pinned_maps() {
            let data = MapData::from_pin(&path).map_err(map_err(name))?;
            opened.insert(name, Map::from_map_data(data).map_err(map_err(name))?);
        }
        Self::build(|name| opened.remove(name).ok_or(BpfError::MapMissing { name }))
    }

    /// Converts each map to its type, through `map` (which hands out each
    /// name's map once).
    fn build(mut map: impl FnMut(&'static str) -> Result<Map, BpfError>) -> Result<Self, BpfError> {
        let map = &mut map;
        Ok(Self {
            config: ConfigMap(typed(map, names::CONFIG)?),
            policies: PolicyBanks {
                policies: typed(map, names::POLICIES)?,
                backoff: typed(map, names::BACKOFF)?,
                rules: [
                    typed(map, names::POLICY_RULES[0])?,
                    typed(map, names::POLICY_RULES[1])?,
                ],
                filter: typed(map, names::RULE_FILTER)?,
            },
            policy_stats: PolicyStatsMap(typed(map, names::POLICY_STATS)?),
            dests: Arc::new(Dests(typed(map, names::DESTS)?)),
            overrides: Overrides(typed(map, names::OVERRIDES)?),
            events: Events(typed(map, names::EVENTS)?),
            counters: Counters(typed(map, names::COUNTERS)?),
            flows: Flows(typed(map, names::FLOWS)?),
            conns: Conns(typed(map, names::CONNS)?),
            watched: WatchedMap(typed(map, names::WATCHED)?),
            classes: ClassMaps {
                table: typed(map, names::CLASS_TABLE)?,
                cgroups: typed(map, names::CLASS_CGROUPS)?,
            },
            workloads: WorkloadMaps {
                cgroups: typed(map, names::WORKLOADS)?,
                levels: typed(map, names::WORKLOAD_LEVELS)?,
            },
            chaos: ChaosMap(typed(map, names::CHAOS)?),
        })
    }
}

/// Map `name` from `map`, converted to its type.
fn typed<T>(
    map: &mut impl FnMut(&'static str) -> Result<Map, BpfError>,
    name: &'static str,
) -> Result<T, BpfError>
where
    T: TryFrom<Map, Error = MapError>,
{
    map(name).and_then(|m| T::try_from(m).map_err(map_err(name)))
}

/// The error of an operation on map `name`.
pub(super) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// How many entries map `name` holds at most: what the kernel made it with
/// (a pinned map keeps its size, whatever the configuration says now).
pub(super) fn max_entries(map: &MapData, name: &'static str) -> Result<u32, BpfError> {
    Ok(map.info().map_err(map_err(name))?.max_entries())
}

/// `Ok(None)` for a missing key, the error otherwise. A lookup reports a
/// missing key as `KeyNotFound`, a delete as the syscall's `ENOENT`.
pub(super) fn optional<V>(
    name: &'static str,
    result: Result<V, MapError>,
) -> Result<Option<V>, BpfError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(None)
        }
        Err(source) => Err(BpfError::Map { name, source }),
    }
}

/// Every entry of the hash map `name`, each value read with `flags`: in
/// batches, or one key at a time where the kernel cannot batch.
pub(super) fn read_all<K: Pod + Default, V: Pod + Default>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
    flags: u64,
) -> Result<Vec<(K, V)>, BpfError> {
    if let Ok(all) = batch::lookup_all(map.map().fd().as_fd(), flags) {
        return Ok(all);
    }
    read_by_key(map, name, flags)
}

/// Every entry of the hash map `name`, one key at a time (two system calls
/// each), each value read with `flags`. An entry removed between listing and
/// reading is simply gone.
pub(super) fn read_by_key<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
    flags: u64,
) -> Result<Vec<(K, V)>, BpfError> {
    let mut out = Vec::new();
    for key in map.keys() {
        let key = key.map_err(map_err(name))?;
        if let Some(value) = optional(name, map.get(&key, flags))? {
            out.push((key, value));
        }
    }
    Ok(out)
}

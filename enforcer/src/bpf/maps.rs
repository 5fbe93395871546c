//! Typed access to the maps the programs share with the daemon.

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
};
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    maps,
};

use super::BpfError;

fn map<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a aya::maps::Map, BpfError> {
    ebpf.map(name).ok_or(BpfError::MapMissing { name })
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// Every tracked destination and its state.
pub fn dests(ebpf: &Ebpf) -> Result<Vec<(DestKey, DestState)>, BpfError> {
    let dests: HashMap<&MapData, DestKey, DestState> =
        HashMap::try_from(map(ebpf, maps::DESTS)?).map_err(map_err(maps::DESTS))?;
    dests
        .iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(maps::DESTS))
}

/// The state of one destination, if it is tracked.
pub fn dest(ebpf: &Ebpf, key: &DestKey) -> Result<Option<DestState>, BpfError> {
    let dests: HashMap<&MapData, DestKey, DestState> =
        HashMap::try_from(map(ebpf, maps::DESTS)?).map_err(map_err(maps::DESTS))?;
    match dests.get(key, 0) {
        Ok(state) => Ok(Some(state)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(BpfError::Map {
            name: maps::DESTS,
            source,
        }),
    }
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

/// Writes the configuration every program reads.
pub fn set_config(ebpf: &mut Ebpf, config: Config) -> Result<(), BpfError> {
    let map = ebpf
        .map_mut(maps::CONFIG)
        .ok_or(BpfError::MapMissing { name: maps::CONFIG })?;
    let mut array: Array<&mut MapData, Config> =
        Array::try_from(map).map_err(map_err(maps::CONFIG))?;
    array.set(0, config, 0).map_err(map_err(maps::CONFIG))
}

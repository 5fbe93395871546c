//! The counts the programs keep for the daemon: the hot path's global
//! counters and each policy's shared counts.

use std::os::fd::AsFd as _;

use aya::maps::{Array, IterableMap as _, MapData, PerCpuArray};
use enforcer_common::{
    counters::GlobalCounter, maps as names, policy::PolicyStats, rules::MAX_POLICIES,
};

use super::{BpfError, batch, maps::map_err};

/// The `COUNTERS` map: one slot per [`GlobalCounter`], per CPU.
pub struct Counters(pub(super) PerCpuArray<MapData, u64>);

impl Counters {
    /// A global counter, summed over CPUs.
    pub fn get(&self, counter: GlobalCounter) -> Result<u64, BpfError> {
        let per_cpu = self
            .0
            .get(&(counter as u32), 0)
            .map_err(map_err(names::COUNTERS))?;
        Ok(per_cpu.iter().sum())
    }
}

/// The `POLICY_STATS` map: each policy id's tracked and open destinations
/// (the group guard's counts).
pub struct PolicyStatsMap(pub(super) Array<MapData, PolicyStats>);

impl PolicyStatsMap {
    /// The shared counts of policy `id`.
    pub fn get(&self, id: u32) -> Result<PolicyStats, BpfError> {
        self.0.get(&id, 0).map_err(map_err(names::POLICY_STATS))
    }

    /// The shared counts of every policy id, indexed by id: one batch lookup
    /// where the kernel can, one lookup per id otherwise.
    pub fn all(&self) -> Result<Vec<PolicyStats>, BpfError> {
        if let Ok(mut all) = batch::lookup_all::<u32, PolicyStats>(self.0.map().fd().as_fd(), 0)
            && all.len() == MAX_POLICIES as usize
        {
            all.sort_unstable_by_key(|(id, _)| *id);
            return Ok(all.into_iter().map(|(_, stats)| stats).collect());
        }
        (0..MAX_POLICIES).map(|id| self.get(id)).collect()
    }
}

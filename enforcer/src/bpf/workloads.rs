//! What the workload selectors of the policies (and chaos faults) match
//! (`WORKLOADS`, `WORKLOAD_LEVELS`; [`enforcer_common::workload`]).

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{Array, HashMap, MapData};
use enforcer_common::{maps as names, workload::WorkloadKey};

use super::{BpfError, maps::map_err};
use crate::workload::select::ScopeEntries;

/// The two workload maps.
pub struct WorkloadMaps {
    pub(super) cgroups: HashMap<MapData, WorkloadKey, u32>,
    pub(super) levels: Array<MapData, u32>,
}

impl WorkloadMaps {
    /// Every (cgroup id, level) the kernel holds for each scope.
    pub fn entries(&self) -> Result<BTreeMap<u32, BTreeSet<(u64, u32)>>, BpfError> {
        let mut all: BTreeMap<u32, BTreeSet<(u64, u32)>> = BTreeMap::new();
        for entry in self.cgroups.iter() {
            let (key, level) = entry.map_err(map_err(names::WORKLOADS))?;
            all.entry(key.scope)
                .or_default()
                .insert((key.cgroup_id, level));
        }
        Ok(all)
    }

    /// Makes the kernel hold `scopes` and nothing else. A cgroup that stays
    /// selected stays selected throughout: new entries and their levels go in
    /// first, then the stale ones leave, then each scope's levels are
    /// narrowed to its own.
    pub fn replace(&mut self, scopes: &BTreeMap<u32, ScopeEntries>) -> Result<(), BpfError> {
        let held = self.entries()?;
        let levels_of = |scope: u32| scopes.get(&scope).map_or(0, |s| s.levels);
        for (scope, wanted) in scopes {
            let before = self.level(*scope)?;
            self.set_level(*scope, before | wanted.levels)?;
            for (id, level) in &wanted.cgroups {
                self.cgroups
                    .insert(WorkloadKey::new(*id, *scope), *level, 0)
                    .map_err(map_err(names::WORKLOADS))?;
            }
        }
        for (scope, cgroups) in &held {
            let wanted = scopes.get(scope);
            for entry @ (id, _) in cgroups {
                if wanted.is_none_or(|w| !w.cgroups.contains(entry)) {
                    self.cgroups
                        .remove(&WorkloadKey::new(*id, *scope))
                        .map_err(map_err(names::WORKLOADS))?;
                }
            }
        }
        for scope in scopes.keys().chain(held.keys()) {
            self.set_level(*scope, levels_of(*scope))?;
        }
        Ok(())
    }

    fn level(&self, scope: u32) -> Result<u32, BpfError> {
        self.levels
            .get(&scope, 0)
            .map_err(map_err(names::WORKLOAD_LEVELS))
    }

    fn set_level(&mut self, scope: u32, levels: u32) -> Result<(), BpfError> {
        self.levels
            .set(scope, levels, 0)
            .map_err(map_err(names::WORKLOAD_LEVELS))
    }
}

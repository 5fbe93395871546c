//! The priority classes the gate applies (`CLASS_TABLE`, `CLASS_CGROUPS`):
//! each class's guaranteed share, and the cgroups listed for each.

use std::collections::HashMap as StdHashMap;

use aya::maps::{Array, HashMap, MapData};
use enforcer_common::{
    class::{ClassTable, Priority},
    maps as names,
};

use super::{BpfError, maps::map_err};

/// The two class maps.
pub struct ClassMaps {
    pub(super) table: Array<MapData, ClassTable>,
    pub(super) cgroups: HashMap<MapData, u64, u32>,
}

impl ClassMaps {
    /// The shares and whether classes are on.
    pub fn table(&self) -> Result<ClassTable, BpfError> {
        self.table.get(&0, 0).map_err(map_err(names::CLASS_TABLE))
    }

    /// Every listed cgroup (by id) and its class.
    pub fn cgroups(&self) -> Result<Vec<(u64, Priority)>, BpfError> {
        let mut all = Vec::new();
        for entry in self.cgroups.iter() {
            let (id, raw) = entry.map_err(map_err(names::CLASS_CGROUPS))?;
            if let Some(p) = Priority::from_raw(raw) {
                all.push((id, p));
            }
        }
        Ok(all)
    }

    /// Replaces the classes with `table` and `cgroups` (an empty set and a
    /// table with `enabled` 0 turn them off). The cgroups of the new set are
    /// written before the table and those of the old one removed after, so
    /// that a connect meanwhile finds its cgroup under one set or the other.
    pub fn replace(
        &mut self,
        table: ClassTable,
        cgroups: &[(u64, Priority)],
    ) -> Result<(), BpfError> {
        let wanted: StdHashMap<u64, Priority> = cgroups.iter().copied().collect();
        for (id, p) in &wanted {
            self.cgroups
                .insert(id, *p as u32, 0)
                .map_err(map_err(names::CLASS_CGROUPS))?;
        }
        self.table
            .set(0, table, 0)
            .map_err(map_err(names::CLASS_TABLE))?;
        let stale: Vec<u64> = self
            .cgroups
            .keys()
            .filter_map(Result::ok)
            .filter(|id| !wanted.contains_key(id))
            .collect();
        for id in stale {
            self.cgroups
                .remove(&id)
                .map_err(map_err(names::CLASS_CGROUPS))?;
        }
        Ok(())
    }
}

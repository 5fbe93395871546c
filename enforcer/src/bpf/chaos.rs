//! The chaos faults (`CHAOS`) and the bits in `CONFIG` that arm them.
//!
//! Arming writes the faults into their slots first and sets their bits
//! after, so no program sees a bit before its fault. Disarming clears bits
//! only: one write of `CONFIG` ends any number of faults at once, and the
//! slots keep what the kernel counted until they are armed again.

use aya::maps::{Array, MapData};
use enforcer_common::{
    chaos::{self, Fault},
    config::Config,
    maps as names,
};

use super::{BpfError, config::ConfigMap, maps::map_err};

/// The `CHAOS` map.
pub struct ChaosMap(pub(super) Array<MapData, Fault>);

impl ChaosMap {
    /// Writes each fault into its slot, then arms them all in one write of
    /// `config`.
    pub fn arm(&mut self, config: &mut ConfigMap, faults: &[(u32, Fault)]) -> Result<(), BpfError> {
        let mut bits = 0;
        for (slot, fault) in faults {
            self.0.set(*slot, fault, 0).map_err(map_err(names::CHAOS))?;
            bits |= chaos::bit(*slot);
        }
        let current = config.get()?;
        config.set(Config {
            chaos_armed: current.chaos_armed | bits,
            ..current
        })
    }

    /// The fault in `slot`, with what the kernel counted.
    pub fn get(&self, slot: u32) -> Result<Fault, BpfError> {
        self.0.get(&slot, 0).map_err(map_err(names::CHAOS))
    }
}

/// Disarms the faults of `slots` (a bit set) in one write of `config`.
pub fn disarm(config: &mut ConfigMap, slots: u32) -> Result<(), BpfError> {
    let current = config.get()?;
    if current.chaos_armed & slots == 0 {
        return Ok(());
    }
    config.set(Config {
        chaos_armed: current.chaos_armed & !slots,
        ..current
    })
}

//! Per-destination overrides the operator sets (`OVERRIDES`): forced open
//! (with a TTL) or disabled.

use std::net::SocketAddr;

use aya::maps::{HashMap, MapData};
use enforcer_common::{config::Config, dest::DestKey, maps as names, overrides::Override};

use super::{
    BpfError,
    config::ConfigMap,
    maps::{map_err, optional},
};

/// The `OVERRIDES` map. An override applies to its address in every network
/// namespace.
pub struct Overrides(pub(super) HashMap<MapData, DestKey, Override>);

impl Overrides {
    /// Sets an override for one destination, and tells the gate (in
    /// `config`) to look overrides up: until the first one, it does not.
    pub fn set(
        &mut self,
        config: &mut ConfigMap,
        dest: SocketAddr,
        value: Override,
    ) -> Result<(), BpfError> {
        self.0
            .insert(DestKey::from(dest), value, 0)
            .map_err(map_err(names::OVERRIDES))?;
        let current = config.get()?;
        config.set(Config {
            overrides: 1,
            ..current
        })
    }

    /// Removes a destination's override; false when it had none.
    pub fn remove(&mut self, dest: SocketAddr) -> Result<bool, BpfError> {
        let removed = self.0.remove(&DestKey::from(dest));
        Ok(optional(names::OVERRIDES, removed)?.is_some())
    }

    /// Every override.
    pub fn all(&self) -> Result<Vec<(DestKey, Override)>, BpfError> {
        self.0
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::OVERRIDES))
    }
}

//! The configuration every program reads: `CONFIG`, a single entry, written
//! only by the daemon.

use aya::maps::{Array, MapData};
use enforcer_common::{config::Config, maps as names};

use super::{BpfError, maps::map_err};

/// The `CONFIG` map.
pub struct ConfigMap(pub(super) Array<MapData, Config>);

impl ConfigMap {
    /// The configuration every program reads.
    pub fn get(&self) -> Result<Config, BpfError> {
        self.0.get(&0, 0).map_err(map_err(names::CONFIG))
    }

    /// Writes the configuration every program reads, bumping its generation.
    pub fn set(&mut self, config: Config) -> Result<(), BpfError> {
        let generation = self.get().map_or(0, |c| c.generation) + 1;
        // The packet plane's destinations live where the watched interfaces
        // route: this process's namespace (0 if it cannot be told).
        let netns_cookie = crate::netns::own_cookie().unwrap_or(0);
        let config = Config {
            generation,
            netns_cookie,
            ..config
        };
        self.0.set(0, config, 0).map_err(map_err(names::CONFIG))
    }

    /// Sets the global switch: paused programs pass every connection untouched.
    ///
    /// Turning it back on records when (`Config::resumed_ns`) in a write of
    /// its own, made while the switch is still off, so no program sees the
    /// switch on next to an older time: a packet-plane flow started before
    /// then missed packets while paused, and is never judged a failure.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), BpfError> {
        let config = self.get()?;
        if !paused && config.is_paused() {
            self.set(Config {
                resumed_ns: crate::clock::monotonic_ns(),
                ..config
            })?;
        }
        let config = self.get()?;
        self.set(Config {
            paused: u32::from(paused),
            ..config
        })
    }
}

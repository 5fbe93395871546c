//! The connection table (`CONNS`): the record of every admitted connect still
//! open, in slots its socket's cookie names.

use std::os::fd::AsFd;

use aya::maps::{Array, IterableMap as _, MapData};
use enforcer_common::{maps as names, sock::SockInfo};

use super::{
    BpfError, batch,
    maps::{map_err, max_entries},
};

/// The `CONNS` map. The programs claim, write and free its slots; the daemon
/// only reads them.
pub struct Conns(pub(super) Array<MapData, SockInfo>);

impl Conns {
    /// Every record, by cookie (no lock: a record read while its socket's
    /// hooks change it may be torn, which a count or a listing does not mind).
    pub fn all(&self) -> Result<Vec<(u64, SockInfo)>, BpfError> {
        let held = |(_, s): (u32, SockInfo)| (s.cookie != 0).then_some((s.cookie, s));
        if let Ok(slots) = batch::lookup_all::<u32, SockInfo>(self.0.map().fd().as_fd(), 0) {
            return Ok(slots.into_iter().filter_map(held).collect());
        }
        let mut out = Vec::new();
        for (i, slot) in self.0.iter().enumerate() {
            let slot = slot.map_err(map_err(names::CONNS))?;
            out.extend(held((i as u32, slot)));
        }
        Ok(out)
    }

    /// How many records the table holds at most (its slots).
    pub fn capacity(&self) -> Result<u32, BpfError> {
        max_entries(self.0.map(), names::CONNS)
    }
}

/// The slots a connection table of `capacity` has: the power of two at or
/// above it, as a cookie's slot is its low bits.
pub fn slots_for(capacity: u32) -> u32 {
    capacity.max(1).next_power_of_two()
}

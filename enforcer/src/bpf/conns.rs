//! The connection table (`CONNS`): the record of every admitted connect still
//! open, by socket cookie.

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, IterableMap as _, MapData};
use enforcer_common::{maps as names, sock::SockInfo};

use super::{BpfError, batch, maps::read_by_key};

/// The `CONNS` map. The programs write and remove its records; the daemon
/// only reads them.
pub struct Conns(pub(super) HashMap<MapData, u64, SockInfo>);

impl Conns {
    /// Every record, by cookie (no lock: a record read while its socket's
    /// hooks change it may be torn, which a count or a listing does not mind).
    pub fn all(&self) -> Result<Vec<(u64, SockInfo)>, BpfError> {
        if let Ok(all) = batch::lookup_all(self.0.map().fd().as_fd(), 0) {
            return Ok(all);
        }
        read_by_key(&self.0, names::CONNS, 0)
    }
}

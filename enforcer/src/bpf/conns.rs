//! The connection table (`CONNS`): the record of every admitted connect still
//! open, by socket cookie.

use aya::maps::{HashMap, MapData};
use enforcer_common::{maps as names, sock::SockInfo};

use super::{BpfError, maps::read_all};

/// The `CONNS` map. The programs write and remove its records; the daemon
/// only reads them.
pub struct Conns(pub(super) HashMap<MapData, u64, SockInfo>);

impl Conns {
    /// Every record, by cookie (no lock: a record read while its socket's
    /// hooks change it may be torn, which a count or a listing does not mind).
    pub fn all(&self) -> Result<Vec<(u64, SockInfo)>, BpfError> {
        read_all(&self.0, names::CONNS, 0)
    }
}

//! The packet plane's flows (`FLOWS`).

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, IterableMap as _, MapData};
use enforcer_common::{
    flow::{Flow, FlowKey},
    maps as names,
};

use super::{BpfError, batch, maps::read_by_key};

/// The `FLOWS` map: each admitted flow from its SYN to its first FIN or RST
/// (or its expiry).
pub struct Flows(pub(super) HashMap<MapData, FlowKey, Flow>);

impl Flows {
    /// Every flow the packet plane tracks (no lock: a flow's record is small
    /// and a torn read of it only delays its expiry to the next sweep).
    pub fn all(&self) -> Result<Vec<(FlowKey, Flow)>, BpfError> {
        if let Ok(all) = batch::lookup_all(self.0.map().fd().as_fd(), 0) {
            return Ok(all);
        }
        read_by_key(&self.0, names::FLOWS, 0)
    }
}

//! The packet plane's flows (`FLOWS`).

use aya::maps::{HashMap, IterableMap as _, MapData};
use enforcer_common::{
    flow::{Flow, FlowKey},
    maps as names,
};

use super::{
    BpfError,
    maps::{max_entries, read_all},
};

/// The `FLOWS` map: each admitted flow from its SYN to its first FIN or RST
/// (or its expiry).
pub struct Flows(pub(super) HashMap<MapData, FlowKey, Flow>);

impl Flows {
    /// Every flow the packet plane tracks (no lock: a flow's record is small
    /// and a torn read of it only delays its expiry to the next sweep).
    pub fn all(&self) -> Result<Vec<(FlowKey, Flow)>, BpfError> {
        read_all(&self.0, names::FLOWS, 0)
    }

    /// How many flows the kernel's map holds at most.
    pub fn capacity(&self) -> Result<u32, BpfError> {
        max_entries(self.0.map(), names::FLOWS)
    }
}

//! The state transitions the programs send (`EVENTS`, a ring buffer): never
//! one per packet, so the daemon reads them all.

use std::os::fd::{AsFd as _, OwnedFd};

use aya::maps::{MapData, MapError, RingBuf};
use enforcer_common::{event::Event, maps as names};

use super::BpfError;

/// The `EVENTS` ring buffer, mapped into this process once.
pub struct Events(pub(super) RingBuf<MapData>);

impl Events {
    /// Every event the kernel has sent since the last call.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(item) = self.0.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the kernel wrote an `Event` (repr(C), integers only)
                // here; read_unaligned makes no assumption about the record's
                // alignment.
                events.push(unsafe { item.as_ptr().cast::<Event>().read_unaligned() });
            }
        }
        events
    }

    /// A descriptor that becomes readable when events wait.
    pub fn fd(&self) -> Result<OwnedFd, BpfError> {
        self.0
            .as_fd()
            .try_clone_to_owned()
            .map_err(|io_error| BpfError::Map {
                name: names::EVENTS,
                source: MapError::from(aya::sys::SyscallError {
                    call: "dup",
                    io_error,
                }),
            })
    }
}

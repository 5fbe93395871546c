//! Global counters and the global switch.

use enforcer_common::counters::GlobalCounter;

use crate::{
    atomic,
    maps::{CONFIG, COUNTERS},
};

/// Adds one to a global counter.
#[inline(always)]
pub fn bump(counter: GlobalCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        atomic::add_u64(slot, 1);
    }
}

/// Whether the global switch says to pass everything untouched. A missing entry
/// cannot happen for an array; should it, the programs stay active.
#[inline(always)]
pub fn paused() -> bool {
    CONFIG.get(0).is_some_and(|c| c.is_paused())
}

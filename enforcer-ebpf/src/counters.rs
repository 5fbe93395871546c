//! Global counters and the global configuration.

use enforcer_common::{config::Config, counters::GlobalCounter};

use crate::{
    atomic,
    maps::{CONFIG, COUNTERS},
};

/// Adds one to a global counter.
#[inline(always)]
pub fn bump(counter: GlobalCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        atomic::add(slot, 1);
    }
}

/// The global configuration. A missing entry cannot happen for an array; should
/// it, the defaults (active, no overrides) apply.
#[inline(always)]
pub fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

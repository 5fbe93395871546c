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

/// The daemon's process id, whose connects pass untouched (0: none), read
/// from the configuration in place: a branch on a field of [`config`]'s copy
/// would split the verifier's view of that copy for everything after it.
#[inline(always)]
pub fn bypass_tgid() -> u32 {
    CONFIG.get_ptr(0).map_or(0, |c| {
        // SAFETY: a value of CONFIG, valid for the program's run; one field
        // read, not a copy.
        unsafe { core::ptr::read_volatile(&raw const (*c).bypass_tgid) }
    })
}

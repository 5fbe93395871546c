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

/// One `u32` field of the global configuration, read in place (0 without
/// a configuration): a branch on a field of [`config`]'s copy would split the
/// verifier's view of that copy for everything after it. `field` names the
/// field's place from the configuration's.
#[inline(always)]
pub fn config_field(field: impl FnOnce(*const Config) -> *const u32) -> u32 {
    CONFIG.get_ptr(0).map_or(0, |c| {
        // SAFETY: a place inside a value of CONFIG, valid for the program's
        // run; one field read, not a copy.
        unsafe { core::ptr::read_volatile(field(c)) }
    })
}

/// The daemon's process id, whose connects pass untouched (0: none).
#[inline(always)]
pub fn bypass_tgid() -> u32 {
    config_field(|c| {
        // SAFETY: the place of a field of the Config `c` points at; nothing
        // is read here.
        unsafe { &raw const (*c).bypass_tgid }
    })
}

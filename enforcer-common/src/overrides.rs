//! Per-destination overrides, written by the daemon (`trip`, `disable`).

use crate::impl_pod;

/// [`Override::kind`] values.
pub mod kind {
    /// Rejected as if OPEN until `until_ns`, whatever the state says.
    pub const FORCED_OPEN: u32 = 1;
    /// The destination passes untouched (no accounting, no rejection).
    pub const DISABLED: u32 = 2;
}

/// The value of [`crate::maps::OVERRIDES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Override {
    /// [`kind`].
    pub kind: u32,
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` ns at which the override lapses; 0 = never.
    pub until_ns: u64,
}
const _: () = assert!(size_of::<Override>() == 16);
impl_pod!(Override);

impl Override {
    /// Whether the override applies at `now`.
    #[inline(always)]
    pub const fn active(&self, now: u64) -> bool {
        self.until_ns == 0 || now < self.until_ns
    }
}

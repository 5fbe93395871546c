//! Per-destination overrides, written by the daemon (`trip`, `disable`).

use crate::{impl_pod, raw_enum};

raw_enum! {
    /// What an [`Override`] does ([`Override::kind`]).
    pub enum Kind {
        /// Rejected as if OPEN until `until_ns`, whatever the state says.
        ForcedOpen = 1,
        /// The destination passes untouched (no accounting, no rejection).
        Disabled = 2,
    }
}

/// The value of [`crate::maps::OVERRIDES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Override {
    /// A [`Kind`].
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

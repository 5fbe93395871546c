//! Events the kernel sends to the daemon through the ring buffer: state
//! transitions only, never one per connection.

use crate::{breaker::Transition, dest::DestKey, impl_pod};

/// [`Event::kind`] values.
pub mod kind {
    pub const TRIPPED: u32 = 1;
    pub const HALF_OPENED: u32 = 2;
    pub const CLOSED: u32 = 3;
    pub const REOPENED: u32 = 4;
}

/// One record of [`crate::maps::EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`kind`].
    pub kind: u32,
    pub policy_id: u32,
    pub dest: DestKey,
    /// Trip level after the transition.
    pub trips: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` of the transition.
    pub at_ns: u64,
    /// For TRIPPED and REOPENED: when the open period ends.
    pub open_until_ns: u64,
}
const _: () = assert!(size_of::<Event>() == 64);
impl_pod!(Event);

/// The event kind of a transition.
pub const fn kind_of(t: Transition) -> u32 {
    match t {
        Transition::Tripped => kind::TRIPPED,
        Transition::HalfOpened => kind::HALF_OPENED,
        Transition::Closed => kind::CLOSED,
        Transition::Reopened => kind::REOPENED,
    }
}

/// The name of an event kind, for logs and the CLI.
pub const fn kind_name(kind: u32) -> &'static str {
    match kind {
        kind::TRIPPED => "tripped",
        kind::HALF_OPENED => "half_opened",
        kind::CLOSED => "closed",
        kind::REOPENED => "reopened",
        _ => "unknown",
    }
}

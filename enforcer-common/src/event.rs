//! Events the kernel sends to the daemon through the ring buffer: state
//! transitions only, never one per connection.

use crate::{breaker::Transition, dest::DestKey, impl_pod, raw_enum};

raw_enum! {
    /// The transition an [`Event`] reports ([`Event::kind`]).
    pub enum Kind {
        Tripped = 1,
        HalfOpened = 2,
        Closed = 3,
        Reopened = 4,
        /// A priority class is refused at the destination while it degrades
        /// ([`Event::class`]).
        ClassShed = 5,
        /// That class is admitted again.
        ClassRestored = 6,
        /// Ejected as an outlier among its policy's peers (open until
        /// [`Event::open_until_ns`]).
        Ejected = 7,
    }
}

/// One record of [`crate::maps::EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// A [`Kind`].
    pub kind: u32,
    pub policy_id: u32,
    pub dest: DestKey,
    /// Trip level after the transition.
    pub trips: u32,
    /// CLASS_SHED, CLASS_RESTORED: the class's [`crate::class::Priority`].
    pub class: u32,
    /// `bpf_ktime_get_ns` of the transition.
    pub at_ns: u64,
    /// For TRIPPED and REOPENED: when the open period ends.
    pub open_until_ns: u64,
}
const _: () = assert!(size_of::<Event>() == 64);
impl_pod!(Event);

impl Kind {
    /// The event kind of a transition.
    pub const fn of(t: Transition) -> Self {
        match t {
            Transition::Tripped => Self::Tripped,
            Transition::HalfOpened => Self::HalfOpened,
            Transition::Closed => Self::Closed,
            Transition::Reopened => Self::Reopened,
            Transition::Ejected => Self::Ejected,
        }
    }

    /// The kind's name, for logs and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tripped => "tripped",
            Self::HalfOpened => "half_opened",
            Self::Closed => "closed",
            Self::Reopened => "reopened",
            Self::ClassShed => "class_shed",
            Self::ClassRestored => "class_restored",
            Self::Ejected => "ejected",
        }
    }
}

//! Global hot-path counters, one slot each in the per-CPU [`crate::maps::COUNTERS`]
//! array. The daemon sums the per-CPU values.

/// Index of a counter in [`crate::maps::COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalCounter {
    /// `connect()` calls on TCP sockets seen by the gate.
    TcpConnects = 0,
    /// `connect()` calls on other sockets (UDP, raw), passed untouched.
    OtherConnects,
    /// Connections passed untouched because the global switch is off.
    Paused,
    /// TCP connects to destinations no rule matches, passed untouched.
    Unmatched,
    /// TCP connects whose policy is `off`, passed untouched.
    PolicyOff,
    /// TCP connects from outside the cgroup a matching policy is scoped to.
    OutOfScope,
    /// The daemon's own connects (healing probes), passed untouched.
    Bypassed,
    /// TCP connects to destinations with a `disabled` override, passed untouched.
    Disabled,
    /// New destinations not tracked because the destination map was full.
    DestMapFull,
    /// Sockets not tracked because their socket storage could not be created.
    SockStorageFailed,
    /// Connects admitted (tracked).
    Admitted,
    /// Connects rejected because the circuit was open.
    RejectedCircuit,
    /// Connects rejected by a bulkhead cap.
    RejectedBulkhead,
    /// Connects that completed the handshake.
    Successes,
    /// Connects that failed (any reason).
    Failures,
    /// Connects abandoned by the application while in SYN_SENT.
    Abandoned,
    /// Events lost because the ring buffer was full.
    EventsDropped,
    /// Policy connect timeouts that could not be applied.
    SetsockoptFailed,
}

impl GlobalCounter {
    /// Every counter, in index order.
    pub const ALL: [Self; 18] = [
        Self::TcpConnects,
        Self::OtherConnects,
        Self::Paused,
        Self::Unmatched,
        Self::PolicyOff,
        Self::OutOfScope,
        Self::Bypassed,
        Self::Disabled,
        Self::DestMapFull,
        Self::SockStorageFailed,
        Self::Admitted,
        Self::RejectedCircuit,
        Self::RejectedBulkhead,
        Self::Successes,
        Self::Failures,
        Self::Abandoned,
        Self::EventsDropped,
        Self::SetsockoptFailed,
    ];
    /// Number of slots in the counters array.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The metric-friendly name of the counter.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TcpConnects => "tcp_connects",
            Self::OtherConnects => "other_connects",
            Self::Paused => "paused_passes",
            Self::Unmatched => "unmatched",
            Self::PolicyOff => "policy_off",
            Self::OutOfScope => "out_of_scope",
            Self::Bypassed => "bypassed",
            Self::Disabled => "disabled",
            Self::DestMapFull => "dest_map_full",
            Self::SockStorageFailed => "sock_storage_failed",
            Self::Admitted => "admitted",
            Self::RejectedCircuit => "rejected_circuit",
            Self::RejectedBulkhead => "rejected_bulkhead",
            Self::Successes => "successes",
            Self::Failures => "failures",
            Self::Abandoned => "abandoned",
            Self::EventsDropped => "events_dropped",
            Self::SetsockoptFailed => "setsockopt_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, c) in GlobalCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} out of order");
        }
    }
}

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
    /// New destinations not tracked because the destination map was full.
    DestMapFull,
    /// Sockets not tracked because their socket storage could not be created.
    SockStorageFailed,
    /// Connects that completed the handshake.
    Successes,
    /// Connects that failed (any reason).
    Failures,
    /// Connects abandoned by the application while in SYN_SENT.
    Abandoned,
}

impl GlobalCounter {
    /// Every counter, in index order.
    pub const ALL: [Self; 8] = [
        Self::TcpConnects,
        Self::OtherConnects,
        Self::Paused,
        Self::DestMapFull,
        Self::SockStorageFailed,
        Self::Successes,
        Self::Failures,
        Self::Abandoned,
    ];
    /// Number of slots in the counters array.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The metric-friendly name of the counter.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TcpConnects => "tcp_connects",
            Self::OtherConnects => "other_connects",
            Self::Paused => "paused_passes",
            Self::DestMapFull => "dest_map_full",
            Self::SockStorageFailed => "sock_storage_failed",
            Self::Successes => "successes",
            Self::Failures => "failures",
            Self::Abandoned => "abandoned",
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

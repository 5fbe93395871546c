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
    /// The daemon's own connects to destinations a rule covers (healing
    /// probes), passed untouched.
    Bypassed,
    /// TCP connects to destinations with a `disabled` override, passed untouched.
    Disabled,
    /// New destinations not tracked because the destination map was full.
    DestMapFull,
    /// Admitted connects not tracked because the connection table
    /// ([`crate::maps::CONNS`]) was full.
    ConnTableFull,
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
    /// Packet plane: SYNs from guests seen on a watched interface.
    PacketSyns,
    /// Packet plane: frames with truncated or invalid headers, passed untouched.
    PacketMalformed,
    /// Packet plane: IP fragments, passed untouched.
    PacketFragments,
    /// Packet plane: flows not tracked because the flow table was full.
    FlowTableFull,
    /// Packet plane: rejected SYNs answered with a RST crafted in the kernel.
    PacketResets,
    /// Packet plane: rejected SYNs that could not be answered in place (IPv4
    /// options, IPv6 extension headers, data on the SYN) and were dropped.
    PacketRejectsDropped,
    /// Connects that failed on this host before the destination had a say.
    LocalErrors,
    /// Ends of sockets admitted by a destination entry that was forgotten
    /// since, or found in a record removed meanwhile and written for another
    /// socket: ignored, so they cannot release a slot that is not theirs.
    StaleRecords,
    /// Sockets whose state callbacks could not be enabled (their end is
    /// recorded when they are released).
    CallbacksFailed,
    /// Packet plane: guests' SYNs with a checksum that does not verify (IPv4
    /// header or TCP, pseudo-header included) or an IP length past the end of
    /// the packet: nobody will answer them, so they pass untracked.
    PacketSynsCorrupt,
    /// Packet plane: guests' SYNs the packet plane cannot vouch for: with IPv4
    /// options or IPv6 extension headers (which routers may drop), or too
    /// long to verify from the copied headers (data on a SYN, its checksum
    /// complete): passed untracked.
    PacketSynsUnverified,
    /// Packet plane: guests' SYNs with TTL / hop limit 0 or 1, which the
    /// router drops: passed untracked.
    PacketSynsTtlExpiring,
    /// Packet plane: RSTs, FINs and answers to SYNs outside their flow's
    /// sequence window: ignored.
    PacketOutOfWindow,
    /// Packet plane: ICMP errors about a tracked flow that quote another
    /// sequence number than its SYN's: ignored.
    PacketIcmpMismatched,
    /// Packet plane: segments and ICMP errors of tracked flows going to a
    /// guest that came in through the watched interface (a guest's own,
    /// routed back): never an answer.
    PacketLoopedBack,
    /// Packet plane: guests' SYNs from a source address the host does not
    /// route back out of the interface they came in on (or does not route at
    /// all): the answers would go elsewhere, so silence says nothing about
    /// the destination; passed untracked.
    PacketSynsSpoofed,
    /// TCP connects refused before the breaker saw them, by an armed chaos
    /// fault or by another tool's program attached before the gate: never
    /// tracked, since they never leave.
    RefusedBefore,
}

impl GlobalCounter {
    /// Every counter, in index order.
    pub const ALL: [Self; 35] = [
        Self::TcpConnects,
        Self::OtherConnects,
        Self::Paused,
        Self::Unmatched,
        Self::PolicyOff,
        Self::OutOfScope,
        Self::Bypassed,
        Self::Disabled,
        Self::DestMapFull,
        Self::ConnTableFull,
        Self::Admitted,
        Self::RejectedCircuit,
        Self::RejectedBulkhead,
        Self::Successes,
        Self::Failures,
        Self::Abandoned,
        Self::EventsDropped,
        Self::SetsockoptFailed,
        Self::PacketSyns,
        Self::PacketMalformed,
        Self::PacketFragments,
        Self::FlowTableFull,
        Self::PacketResets,
        Self::PacketRejectsDropped,
        Self::LocalErrors,
        Self::StaleRecords,
        Self::CallbacksFailed,
        Self::PacketSynsCorrupt,
        Self::PacketSynsUnverified,
        Self::PacketSynsTtlExpiring,
        Self::PacketOutOfWindow,
        Self::PacketIcmpMismatched,
        Self::PacketLoopedBack,
        Self::PacketSynsSpoofed,
        Self::RefusedBefore,
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
            Self::ConnTableFull => "conn_table_full",
            Self::Admitted => "admitted",
            Self::RejectedCircuit => "rejected_circuit",
            Self::RejectedBulkhead => "rejected_bulkhead",
            Self::Successes => "successes",
            Self::Failures => "failures",
            Self::Abandoned => "abandoned",
            Self::EventsDropped => "events_dropped",
            Self::SetsockoptFailed => "setsockopt_failed",
            Self::PacketSyns => "packet_syns",
            Self::PacketMalformed => "packet_malformed",
            Self::PacketFragments => "packet_fragments",
            Self::FlowTableFull => "flow_table_full",
            Self::PacketResets => "packet_resets",
            Self::PacketRejectsDropped => "packet_rejects_dropped",
            Self::LocalErrors => "local_errors",
            Self::StaleRecords => "stale_records",
            Self::CallbacksFailed => "callbacks_failed",
            Self::PacketSynsCorrupt => "packet_syns_corrupt",
            Self::PacketSynsUnverified => "packet_syns_unverified",
            Self::PacketSynsTtlExpiring => "packet_syns_ttl_expiring",
            Self::PacketOutOfWindow => "packet_out_of_window",
            Self::PacketIcmpMismatched => "packet_icmp_mismatched",
            Self::PacketLoopedBack => "packet_looped_back",
            Self::PacketSynsSpoofed => "packet_syns_spoofed",
            Self::RefusedBefore => "refused_before",
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

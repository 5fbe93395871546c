//! Flows of the packet plane: TCP connections the socket hooks never see (a
//! guest behind a watched interface connecting through the host), followed
//! from their SYN to their first FIN or RST.
//!
//! A flow carries the same [`SockInfo`] record an admitted socket carries, so
//! both planes run one piece of logic (`DestState::admit`, `on_established`,
//! `on_failed`, `on_closed`) on one destination state, and the flags in the
//! record make every outcome and every slot count exactly once whichever
//! packet, timer or daemon sweep sees the end first.

use crate::{
    config::Config,
    dest::DestKey,
    impl_pod,
    outcome::{End, Outcome},
    packet::tcp_flags,
    sock::{SockInfo, flags},
};

/// A flow as the guest opened it: guest address and port → destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Where the guest connects to (the destination whose state the flow feeds).
    pub dest: DestKey,
    /// The guest's address, in [`DestKey::addr`]'s layout (IPv4 v4-mapped).
    pub client: [u32; 4],
    /// The guest's port, host order.
    pub client_port: u16,
    pub _pad: [u16; 3],
}
const _: () = assert!(size_of::<FlowKey>() == 56);
impl_pod!(FlowKey);

impl FlowKey {
    /// The flow a guest-sent segment belongs to.
    pub const fn from_guest(src: [u32; 4], sport: u16, dst: [u32; 4], dport: u16) -> Self {
        Self {
            dest: DestKey::from_ipv6_raw(dst, dport),
            client: src,
            client_port: sport,
            _pad: [0; 3],
        }
    }

    /// The same flow, its destination in the network namespace `netns`.
    pub const fn in_netns(self, netns: u64) -> Self {
        Self {
            dest: self.dest.in_netns(netns),
            ..self
        }
    }

    /// The flow a segment travelling to the guest belongs to.
    pub const fn to_guest(src: [u32; 4], sport: u16, dst: [u32; 4], dport: u16) -> Self {
        Self::from_guest(dst, dport, src, sport)
    }
}

/// The value of the flow table for one admitted flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// The admission record, exactly as a socket's storage holds it.
    pub sock: SockInfo,
    /// `bpf_ktime_get_ns` of the last packet seen either way (refreshed at most
    /// every [`LAST_SEEN_GRANULARITY_NS`]).
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<Flow>() == 88);
impl_pod!(Flow);

/// How stale `last_seen_ns` may get before a packet refreshes it: idle timeouts
/// are seconds to minutes, and skipping the write keeps the flow's cache line
/// clean on the per-packet path.
pub const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

/// Which way a segment crosses the watched interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the guest (ingress on the watched interface).
    FromGuest,
    /// Sent to the guest (egress on the watched interface).
    ToGuest,
}

impl Flow {
    /// Whether the flow's outcome (handshake or failure) is recorded.
    pub const fn has_outcome(&self) -> bool {
        self.sock.flags & flags::OUTCOME_RECORDED != 0
    }

    /// What a TCP segment of this flow with `tcp` flags means for it, if
    /// anything. A RST or FIN either way ends it (the first FIN gives the slot
    /// back: a half-closed connection is on its way out); the destination's
    /// answer to the SYN is its outcome.
    pub const fn on_segment(&self, direction: Direction, tcp: u8) -> Option<End> {
        let answered = self.has_outcome();
        if tcp & tcp_flags::RST != 0 {
            return Some(match (direction, answered) {
                (_, true) => End::Closed,
                // The destination refused the SYN.
                (Direction::ToGuest, false) => End::Failed(Outcome::Refused),
                // The guest gave up on its own connect.
                (Direction::FromGuest, false) => End::Failed(Outcome::Abandoned),
            });
        }
        match direction {
            Direction::ToGuest
                if !answered
                    && tcp & (tcp_flags::SYN | tcp_flags::ACK)
                        == (tcp_flags::SYN | tcp_flags::ACK) =>
            {
                Some(End::Established)
            }
            _ if answered && tcp & tcp_flags::FIN != 0 => Some(End::Closed),
            _ => None,
        }
    }

    /// What an ICMP destination-unreachable quoting this flow's SYN means.
    /// Once answered, ICMP errors are the connection's business, not an outcome.
    pub const fn on_unreachable(&self) -> Option<End> {
        if self.has_outcome() {
            None
        } else {
            Some(End::Failed(Outcome::Unreachable))
        }
    }

    /// Whether the flow has expired at `now`: no answer to its SYN within
    /// `syn_timeout_ns` is a timeout; no packet for `idle_timeout_ns` ends it
    /// (a timeout, if it never had an answer). 0 disables either.
    pub const fn expiry(&self, now: u64, syn_timeout_ns: u64, idle_timeout_ns: u64) -> Option<End> {
        let answered = self.has_outcome();
        let waited = now.saturating_sub(self.sock.start_ns);
        let idle = now.saturating_sub(self.last_seen_ns);
        let idle_expired = idle_timeout_ns != 0 && idle >= idle_timeout_ns;
        if !answered && (idle_expired || (syn_timeout_ns != 0 && waited >= syn_timeout_ns)) {
            Some(End::Failed(Outcome::Timeout))
        } else if answered && idle_expired {
            Some(End::Closed)
        } else {
            None
        }
    }

    /// Whether a packet at `now` should refresh `last_seen_ns`.
    pub const fn needs_refresh(&self, now: u64) -> bool {
        now.saturating_sub(self.last_seen_ns) >= LAST_SEEN_GRANULARITY_NS
    }
}

/// A flow's SYN and idle timeouts in ns (0 = none): the SYN timeout is its
/// policy's connect timeout (`policy_connect_timeout_ms`, 0 = unset), else the
/// packet plane's default. The kernel and the daemon's sweep decide alike.
pub const fn timeouts_ns(config: &Config, policy_connect_timeout_ms: u32) -> (u64, u64) {
    const MS: u64 = 1_000_000;
    let syn_ms = if policy_connect_timeout_ms != 0 {
        policy_connect_timeout_ms
    } else {
        config.flow_syn_timeout_ms
    };
    (syn_ms as u64 * MS, config.flow_idle_timeout_ms as u64 * MS)
}

/// Whether `end` finishes the flow (its entry can go), as opposed to recording
/// the handshake of a flow that goes on.
pub const fn finishes(end: End) -> bool {
    !matches!(end, End::Established)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::{ACK, FIN, RST, SYN};

    const SEC: u64 = 1_000_000_000;

    fn pending() -> Flow {
        Flow {
            sock: SockInfo {
                flags: flags::HOLDS_SLOT | flags::PENDING,
                start_ns: 10 * SEC,
                ..SockInfo::default()
            },
            last_seen_ns: 10 * SEC,
        }
    }

    fn answered() -> Flow {
        let mut flow = pending();
        flow.sock.flags = flags::HOLDS_SLOT | flags::OUTCOME_RECORDED;
        flow
    }

    #[test]
    fn syn_ack_to_the_guest_is_the_handshake() {
        let end = pending().on_segment(Direction::ToGuest, SYN | ACK);
        assert_eq!(end, Some(End::Established));
        // A retransmitted SYN-ACK after the outcome changes nothing.
        assert_eq!(answered().on_segment(Direction::ToGuest, SYN | ACK), None);
        // The guest's own SYN-ACK (it is the server) is not an answer to a SYN of ours.
        assert_eq!(pending().on_segment(Direction::FromGuest, SYN | ACK), None);
    }

    #[test]
    fn rst_to_a_pending_syn_is_refused_and_from_the_guest_abandoned() {
        let refused = pending().on_segment(Direction::ToGuest, RST | ACK);
        assert_eq!(refused, Some(End::Failed(Outcome::Refused)));
        let abandoned = pending().on_segment(Direction::FromGuest, RST);
        assert_eq!(abandoned, Some(End::Failed(Outcome::Abandoned)));
    }

    #[test]
    fn rst_or_fin_after_the_handshake_closes() {
        for direction in [Direction::ToGuest, Direction::FromGuest] {
            assert_eq!(answered().on_segment(direction, RST), Some(End::Closed));
            assert_eq!(
                answered().on_segment(direction, FIN | ACK),
                Some(End::Closed)
            );
        }
        // Data and bare ACKs leave the flow alone.
        assert_eq!(answered().on_segment(Direction::FromGuest, ACK), None);
        // A FIN before any answer is nonsense: ignored, the SYN timeout decides.
        assert_eq!(pending().on_segment(Direction::ToGuest, FIN), None);
    }

    #[test]
    fn unreachable_only_counts_before_the_answer() {
        assert_eq!(
            pending().on_unreachable(),
            Some(End::Failed(Outcome::Unreachable))
        );
        assert_eq!(answered().on_unreachable(), None);
    }

    #[test]
    fn syn_timeout_and_idle_expiry() {
        let flow = pending();
        assert_eq!(flow.expiry(12 * SEC, 3 * SEC, 60 * SEC), None);
        assert_eq!(
            flow.expiry(13 * SEC, 3 * SEC, 60 * SEC),
            Some(End::Failed(Outcome::Timeout))
        );
        // No SYN timeout: the idle timeout still ends it, as a timeout.
        assert_eq!(
            flow.expiry(70 * SEC, 0, 60 * SEC),
            Some(End::Failed(Outcome::Timeout))
        );
        let flow = answered();
        assert_eq!(flow.expiry(13 * SEC, 3 * SEC, 60 * SEC), None);
        assert_eq!(flow.expiry(70 * SEC, 3 * SEC, 60 * SEC), Some(End::Closed));
        assert_eq!(flow.expiry(u64::MAX, 0, 0), None);
    }

    #[test]
    fn keys_from_either_side_match() {
        let (guest, dest) = ([1, 2, 3, 4], [5, 6, 7, 8]);
        let sent = FlowKey::from_guest(guest, 40_000, dest, 80);
        let answer = FlowKey::to_guest(dest, 80, guest, 40_000);
        assert_eq!(sent, answer);
        assert_eq!(sent.dest, DestKey::from_ipv6_raw(dest, 80));
    }

    #[test]
    fn the_policy_connect_timeout_wins_over_the_default() {
        let config = Config {
            flow_syn_timeout_ms: 10_000,
            flow_idle_timeout_ms: 60_000,
            ..Config::default()
        };
        assert_eq!(timeouts_ns(&config, 0), (10 * SEC, 60 * SEC));
        assert_eq!(timeouts_ns(&config, 300), (SEC * 3 / 10, 60 * SEC));
    }

    #[test]
    fn refresh_is_coarse() {
        let flow = pending();
        assert!(!flow.needs_refresh(10 * SEC + SEC / 2));
        assert!(flow.needs_refresh(11 * SEC));
    }
}

//! Flows of the packet plane: TCP connections the socket hooks never see (a
//! guest behind a watched interface connecting through the host), followed
//! from their SYN to their first FIN or RST that fits their sequence window
//! ([`window`]), or to their expiry ([`Flow::expiry`]).
//!
//! A flow carries the same [`SockInfo`] record an admitted socket carries, so
//! both planes run one piece of logic (`DestState::admit`, `on_established`,
//! `on_failed`, `on_closed`) on one destination state, and the flags in the
//! record make every outcome and every slot count exactly once whichever
//! packet, timer or daemon sweep sees the end first.

mod expiry;
pub mod window;

pub use expiry::{SYN_RETRANSMIT_WAIT_NS, Timeouts, Watch};
pub use window::{Seen, Window};

use crate::{
    dest::DestKey,
    impl_pod,
    outcome::{End, Outcome},
    packet::Segment,
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
    /// The admission record, as a socket's holds it (its cookie 0).
    pub sock: SockInfo,
    /// `bpf_ktime_get_ns` of the last packet seen either way (refreshed at most
    /// every [`LAST_SEEN_GRANULARITY_NS`]).
    pub last_seen_ns: u64,
    /// Both sides' sequence numbers, for believing only the segments that fit.
    pub seq: Window,
}
const _: () = assert!(size_of::<Flow>() == 136);
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
    /// The flow an admitted `syn` opens at `now`, holding `sock`.
    pub const fn open(sock: SockInfo, syn: &Segment, now: u64) -> Self {
        Self {
            sock,
            last_seen_ns: now,
            seq: Window::opened_by(syn),
        }
    }

    /// Whether the flow's outcome (handshake or failure) is recorded.
    pub const fn has_outcome(&self) -> bool {
        self.sock.flags & flags::OUTCOME_RECORDED != 0
    }

    /// What a TCP segment of this flow going `direction` means for it, its
    /// numbers tracked on the way. The destination's answer to the SYN is the
    /// outcome; the first RST or FIN either way ends the flow (the first FIN
    /// gives the slot back: a half-closed connection is on its way out) — each
    /// only if it fits the flow's window ([`window`]'s table), and judged by
    /// what the flow may have missed ([`Watch::judge`]).
    pub fn on_segment(&mut self, direction: Direction, seg: &Segment, watch: Watch) -> Seen {
        let answered = self.has_outcome();
        let seen = match direction {
            Direction::FromGuest => self.seq.from_guest(seg, answered),
            Direction::ToGuest => self.seq.from_dest(seg, answered),
        };
        match seen {
            Seen::End(end) => Seen::End(watch.judge(self, end)),
            other => other,
        }
    }

    /// What an ICMP destination-unreachable quoting a segment of this flow
    /// with sequence number `quoted_seq` means: unreachable if it quotes the
    /// SYN (any other number was never sent before the answer). Once
    /// answered, ICMP errors are the connection's business, not an outcome.
    pub const fn on_unreachable(&self, quoted_seq: u32, watch: Watch) -> Seen {
        if self.has_outcome() {
            Seen::Nothing
        } else if quoted_seq != self.seq.syn {
            Seen::OutOfWindow
        } else {
            Seen::End(watch.judge(self, End::Failed(Outcome::Unreachable)))
        }
    }

    /// Whether a SYN with sequence number `seq` is this flow's SYN sent again
    /// while unanswered: silence the destination is responsible for. A SYN
    /// with another number on the same ports is not (a new connection the
    /// flow knows nothing of).
    pub const fn is_syn_again(&self, seq: u32) -> bool {
        !self.has_outcome() && seq == self.seq.syn
    }

    /// Whether a packet at `now` should refresh `last_seen_ns`.
    pub const fn needs_refresh(&self, now: u64) -> bool {
        now.saturating_sub(self.last_seen_ns) >= LAST_SEEN_GRANULARITY_NS
    }
}

#[cfg(test)]
mod tests;

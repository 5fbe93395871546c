//! The response latency of a connection, as pure code: which of its packets
//! start and stop the clock ([`crate::policy::Signal::Response`]).
//!
//! The clock starts at the first packet the caller sends with data (its
//! request) and stops at the first packet with data that arrives after it (the
//! beginning of the answer). Data the destination sends first (a greeting) is
//! not an answer: the clock has not started. One measure per connection.
//!
//! The packet hooks see packets from the network header on (cgroup_skb), so
//! the payload is what the IP length leaves after the IP and TCP headers.

use network_types::{
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use crate::sock::marks;

/// Bytes of TCP payload in an IPv4 packet with these headers.
#[inline(always)]
pub fn payload_v4(ip: &Ipv4Hdr, tcp: &TcpHdr) -> u16 {
    ip.tot_len()
        .saturating_sub(u16::from(ip.ihl()))
        .saturating_sub(tcp.doff() * 4)
}

/// Bytes of TCP payload in an IPv6 packet with these headers; `None` when
/// extension headers come first (TCP is not right after the fixed header).
#[inline(always)]
pub fn payload_v6(ip: &Ipv6Hdr, tcp: &TcpHdr) -> Option<u16> {
    if ip.next_hdr != IpProto::Tcp as u8 {
        return None;
    }
    Some(ip.payload_len().saturating_sub(tcp.doff() * 4))
}

/// What a socket's packet means for its measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    None,
    /// The caller's first data is leaving: start the clock now.
    Start,
    /// The answer began: the latency since the clock started.
    Answered(u64),
}

/// An outgoing packet of a socket whose marks are `marks`, after which the
/// socket has sent `data_segs_out` data segments (the kernel counts a segment
/// before it passes the egress hook).
#[inline(always)]
pub const fn on_sent(marks: u64, data_segs_out: u32) -> Step {
    if marks & (marks::REQUEST_SENT | marks::RESPONSE_DONE) == 0 && data_segs_out > 0 {
        Step::Start
    } else {
        Step::None
    }
}

/// An incoming packet carrying `payload` bytes at `now`, of a socket whose
/// marks are `marks` and whose clock started at `sent_ns`.
#[inline(always)]
pub const fn on_received(marks: u64, payload: u16, sent_ns: u64, now: u64) -> Step {
    if payload == 0 || marks & marks::REQUEST_SENT == 0 || marks & marks::RESPONSE_DONE != 0 {
        return Step::None;
    }
    Step::Answered(now.saturating_sub(sent_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(tot_len: u16, ihl_words: u8, doff: u16) -> (Ipv4Hdr, TcpHdr) {
        // SAFETY: plain-old-data headers, all-zero is a valid value.
        let (mut ip, mut tcp): (Ipv4Hdr, TcpHdr) = unsafe { core::mem::zeroed() };
        ip.vihl = 0x40 | ihl_words;
        ip.tot_len = tot_len.to_be_bytes();
        tcp.set_doff(doff);
        (ip, tcp)
    }

    #[test]
    fn the_payload_is_what_the_ip_length_leaves_after_the_headers() {
        let (ip, tcp) = v4(20 + 32 + 100, 5, 8);
        assert_eq!(payload_v4(&ip, &tcp), 100);
        let (ip, tcp) = v4(24 + 20, 6, 5);
        assert_eq!(payload_v4(&ip, &tcp), 0, "a bare ACK with IP options");
        let (ip, tcp) = v4(10, 15, 15);
        assert_eq!(payload_v4(&ip, &tcp), 0, "lengths that lie do not wrap");

        // SAFETY: as above.
        let (mut ip6, mut tcp): (Ipv6Hdr, TcpHdr) = unsafe { core::mem::zeroed() };
        ip6.next_hdr = IpProto::Tcp as u8;
        ip6.payload_len = (32u16 + 7).to_be_bytes();
        tcp.set_doff(8);
        assert_eq!(payload_v6(&ip6, &tcp), Some(7));
        ip6.next_hdr = IpProto::Ipv6Route as u8;
        assert_eq!(payload_v6(&ip6, &tcp), None);
    }

    #[test]
    fn the_clock_runs_from_the_first_request_byte_to_the_first_answer_byte() {
        // Handshake packets carry no data: nothing starts.
        assert_eq!(on_sent(0, 0), Step::None);
        assert_eq!(on_sent(0, 1), Step::Start);
        // Later data of the same request does not restart the clock.
        assert_eq!(on_sent(marks::REQUEST_SENT, 2), Step::None);
        // A greeting before the request is not an answer.
        assert_eq!(on_received(0, 100, 0, 5_000), Step::None);
        // A bare ACK of the request is not an answer either.
        assert_eq!(
            on_received(marks::REQUEST_SENT, 0, 1_000, 5_000),
            Step::None
        );
        assert_eq!(
            on_received(marks::REQUEST_SENT, 1, 1_000, 5_000),
            Step::Answered(4_000)
        );
        // Measured once.
        let done = marks::REQUEST_SENT | marks::RESPONSE_DONE;
        assert_eq!(on_received(done, 1, 1_000, 9_000), Step::None);
        assert_eq!(on_sent(marks::RESPONSE_DONE, 3), Step::None);
    }
}

//! ICMP destination-unreachable errors that quote a TCP segment.
//!
//! A router or host that cannot deliver a SYN answers with an ICMP error quoting the
//! SYN's IP header and at least the first 8 bytes after it (RFC 792, RFC 4443): the
//! ports and sequence number, enough to find the local connect that failed. Routers
//! may cut the quote short of what its IP length says, so only those 8 bytes are
//! required; anything past them is never read.

use super::{
    Parsed, Quoted,
    frame::{Copied, fresh},
    parse::Network,
    wire::{icmp, ipv4, ipv6, proto, tcp},
};

#[inline(always)]
pub(super) fn parse_v4_error(copied: Copied, network: &Network) -> Option<Parsed> {
    let message = copied.window::<{ icmp::HEADER_LEN }>(network.l4)?;
    let kind = message.u8(icmp::TYPE)?;
    let code = message.u8(icmp::CODE)?;
    if kind != icmp::V4_DEST_UNREACHABLE || code == icmp::V4_FRAG_NEEDED {
        return Some(Parsed::Other);
    }
    // No `fresh`: the outer l4 is at most 82, so the quote lies far inside the array.
    let quote_at = network.l4 + icmp::HEADER_LEN;
    let quote = copied.window::<{ ipv4::HEADER_LEN }>(quote_at)?;
    let version_ihl = quote.u8(0)?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != ipv4::VERSION || header_len < ipv4::HEADER_LEN {
        return Some(Parsed::Malformed);
    }
    // A non-first fragment does not start with the TCP header.
    let not_first_fragment = quote.u16(ipv4::FRAG)? & ipv4::OFFSET_MASK != 0;
    if not_first_fragment || quote.u8(ipv4::PROTOCOL)? != proto::TCP {
        return Some(Parsed::Other);
    }
    let src = quote.ipv4_addr(ipv4::SRC)?;
    let dst = quote.ipv4_addr(ipv4::DST)?;
    quoted_tcp(copied, network, header_len, src, dst)
}

/// The quoted IPv6 header is not walked for extension headers: our SYNs carry none,
/// and one that does is `Other`.
#[inline(always)]
pub(super) fn parse_v6_error(copied: Copied, network: &Network) -> Option<Parsed> {
    let message = copied.window::<{ icmp::HEADER_LEN }>(network.l4)?;
    if message.u8(icmp::TYPE)? != icmp::V6_DEST_UNREACHABLE {
        return Some(Parsed::Other);
    }
    // After extension headers l4 may be anywhere in the array (see `fresh`).
    let quote = copied.window::<{ ipv6::HEADER_LEN }>(fresh(network.l4 + icmp::HEADER_LEN))?;
    if quote.u8(0)? >> 4 != ipv6::VERSION {
        return Some(Parsed::Malformed);
    }
    if quote.u8(ipv6::NEXT_HEADER)? != proto::TCP {
        return Some(Parsed::Other);
    }
    let src = quote.ipv6_addr(ipv6::SRC)?;
    let dst = quote.ipv6_addr(ipv6::DST)?;
    quoted_tcp(copied, network, ipv6::HEADER_LEN, src, dst)
}

/// The quoted segment's ports and sequence number, which follow the quoted IP
/// header of `quoted_ip_len` bytes.
#[inline(always)]
fn quoted_tcp(
    copied: Copied,
    network: &Network,
    quoted_ip_len: usize,
    src: [u32; 4],
    dst: [u32; 4],
) -> Option<Parsed> {
    // The 8 bytes must be inside the ICMP message as the outer IP length counts
    // it, not just inside the copy (which may include Ethernet padding).
    if icmp::HEADER_LEN + quoted_ip_len + tcp::QUOTED_LEN > network.l4_len {
        return Some(Parsed::Malformed);
    }
    let segment_at = network.l4 + icmp::HEADER_LEN + quoted_ip_len;
    // `fresh`: behind a quoted header of variable length (IPv4) or after extension
    // headers (IPv6), beyond the quote's own window.
    let segment = copied.window::<{ tcp::QUOTED_LEN }>(fresh(segment_at))?;
    Some(Parsed::Unreachable(Quoted {
        src,
        dst,
        sport: segment.u16(tcp::SPORT)?,
        dport: segment.u16(tcp::DPORT)?,
        seq: segment.u32(tcp::SEQ)?,
    }))
}

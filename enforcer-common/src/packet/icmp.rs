//! ICMP destination-unreachable errors that quote a TCP segment.
//!
//! A router or host that cannot deliver a SYN answers with an ICMP error quoting the
//! SYN's IP header and at least the first 8 bytes after it (RFC 792, RFC 4443): the
//! ports and sequence number, enough to find the local connect that failed. Routers
//! may cut the quote short of what its IP length says, so only those 8 bytes are
//! required; anything past them is never read.

use core::mem::offset_of;

use network_types::{
    icmp::{Icmpv4Hdr, Icmpv4Type, Icmpv6Hdr},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use super::{
    Parsed, Quoted,
    frame::{Copied, fresh},
    parse::Network,
    wire::{icmp, ipv4, ipv6},
};

/// What an ICMP error must quote of a segment: the ports and the sequence number,
/// all that comes before the acknowledgment number.
const QUOTED_TCP_LEN: usize = offset_of!(TcpHdr, ack_seq);

#[inline(always)]
pub(super) fn parse_v4_error(copied: Copied, network: &Network) -> Option<Parsed> {
    let message = copied.window::<{ Icmpv4Hdr::LEN }>(network.l4)?;
    let kind = message.u8(offset_of!(Icmpv4Hdr, type_))?;
    let code = message.u8(offset_of!(Icmpv4Hdr, code))?;
    if kind != Icmpv4Type::DestinationUnreachable as u8 || code == icmp::V4_FRAG_NEEDED {
        return Some(Parsed::Other);
    }
    // No `fresh`: the outer l4 is at most 82, so the quote lies far inside the array.
    let quote_at = network.l4 + Icmpv4Hdr::LEN;
    let quote = copied.window::<{ Ipv4Hdr::LEN }>(quote_at)?;
    let version_ihl = quote.u8(offset_of!(Ipv4Hdr, vihl))?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != ipv4::VERSION || header_len < Ipv4Hdr::LEN {
        return Some(Parsed::Malformed);
    }
    // A non-first fragment does not start with the TCP header.
    let not_first_fragment = quote.u16(offset_of!(Ipv4Hdr, frags))? & ipv4::OFFSET_MASK != 0;
    if not_first_fragment || quote.u8(offset_of!(Ipv4Hdr, proto))? != IpProto::Tcp as u8 {
        return Some(Parsed::Other);
    }
    let src = quote.ipv4_addr(offset_of!(Ipv4Hdr, src_addr))?;
    let dst = quote.ipv4_addr(offset_of!(Ipv4Hdr, dst_addr))?;
    quoted_tcp(copied, network, Icmpv4Hdr::LEN, header_len, src, dst)
}

/// The quoted IPv6 header is not walked for extension headers: our SYNs carry none,
/// and one that does is `Other`.
#[inline(always)]
pub(super) fn parse_v6_error(copied: Copied, network: &Network) -> Option<Parsed> {
    let message = copied.window::<{ Icmpv6Hdr::LEN }>(network.l4)?;
    if message.u8(offset_of!(Icmpv6Hdr, type_))? != icmp::V6_DEST_UNREACHABLE {
        return Some(Parsed::Other);
    }
    // After extension headers l4 may be anywhere in the array (see `fresh`).
    let quote = copied.window::<{ Ipv6Hdr::LEN }>(fresh(network.l4 + Icmpv6Hdr::LEN))?;
    if quote.u8(offset_of!(Ipv6Hdr, vcf))? >> 4 != ipv6::VERSION {
        return Some(Parsed::Malformed);
    }
    if quote.u8(offset_of!(Ipv6Hdr, next_hdr))? != IpProto::Tcp as u8 {
        return Some(Parsed::Other);
    }
    let src = quote.ipv6_addr(offset_of!(Ipv6Hdr, src_addr))?;
    let dst = quote.ipv6_addr(offset_of!(Ipv6Hdr, dst_addr))?;
    quoted_tcp(copied, network, Icmpv6Hdr::LEN, Ipv6Hdr::LEN, src, dst)
}

/// The quoted segment's ports and sequence number, which follow the ICMP header
/// of `icmp_len` bytes and the quoted IP header of `quoted_ip_len` bytes.
#[inline(always)]
fn quoted_tcp(
    copied: Copied,
    network: &Network,
    icmp_len: usize,
    quoted_ip_len: usize,
    src: [u32; 4],
    dst: [u32; 4],
) -> Option<Parsed> {
    // The 8 bytes must be inside the ICMP message as the outer IP length counts
    // it, not just inside the copy (which may include Ethernet padding).
    if icmp_len + quoted_ip_len + QUOTED_TCP_LEN > network.l4_len {
        return Some(Parsed::Malformed);
    }
    let segment_at = network.l4 + icmp_len + quoted_ip_len;
    // `fresh`: behind a quoted header of variable length (IPv4) or after extension
    // headers (IPv6), beyond the quote's own window.
    let segment = copied.window::<QUOTED_TCP_LEN>(fresh(segment_at))?;
    Some(Parsed::Unreachable(Quoted {
        src,
        dst,
        sport: segment.u16(offset_of!(TcpHdr, source))?,
        dport: segment.u16(offset_of!(TcpHdr, dest))?,
        seq: segment.u32(offset_of!(TcpHdr, seq))?,
    }))
}

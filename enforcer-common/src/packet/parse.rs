//! [`parse`]: Ethernet and VLAN tags, IPv4 or IPv6, then TCP or an ICMP error.
//!
//! Each step returns `Option<Parsed>`: `Some` is a verdict, `None` means the headers
//! ran past the copied bytes, which [`parse`] turns into `Malformed` or `Other`
//! depending on whether the copy is the whole packet.

use super::{
    HEADER_BYTES, Layout, Parsed, Segment,
    frame::{Copied, fresh},
    icmp,
    wire::{eth, ipv4, ipv6, proto, tcp},
};

/// Parses the first `len` bytes of `frame`; bytes beyond `len` are never looked at.
/// `len` may be smaller than the packet when the copy stopped at [`HEADER_BYTES`].
#[inline(always)]
pub fn parse(frame: &[u8; HEADER_BYTES], len: usize) -> Parsed {
    let copied = Copied::new(frame, len);
    match parse_ethernet(copied) {
        Some(parsed) => parsed,
        // The copy stopped at HEADER_BYTES: the headers go on deeper than we look.
        None if copied.is_capped() => Parsed::Other,
        // The copy is the whole packet, and the packet is shorter than its headers.
        None => Parsed::Malformed,
    }
}

/// The IP header as far as the transport header after it cares.
pub(super) struct Network {
    pub src: [u32; 4],
    /// TTL / hop limit.
    pub hop_limit: u8,
    pub dst: [u32; 4],
    pub l3: usize,
    pub l4: usize,
    /// Bytes from `l4` to the end of the IP packet, per the IP length fields.
    pub l4_len: usize,
    pub ipv6: bool,
    /// No IPv4 options, no IPv6 extension headers.
    pub plain: bool,
}

/// Bytes of the ethertype field (and of a VLAN tag's TPID, which stands in its place).
const ETHERTYPE_LEN: usize = 2;

#[inline(always)]
fn parse_ethernet(copied: Copied) -> Option<Parsed> {
    let mut type_at = eth::TYPE;
    let mut ethertype = copied.u16(type_at)?;
    for _ in 0..eth::MAX_VLAN_TAGS {
        if ethertype != eth::P_8021Q && ethertype != eth::P_8021AD {
            break;
        }
        type_at += eth::VLAN_TAG_LEN;
        ethertype = copied.u16(type_at)?;
    }
    let l3 = type_at + ETHERTYPE_LEN;
    match ethertype {
        eth::P_IPV4 => parse_ipv4(copied, l3),
        eth::P_IPV6 => parse_ipv6(copied, l3),
        // ARP, LLDP, ... and a third VLAN tag.
        _ => Some(Parsed::Other),
    }
}

#[inline(always)]
fn parse_ipv4(copied: Copied, l3: usize) -> Option<Parsed> {
    let ip = copied.window::<{ ipv4::HEADER_LEN }>(l3)?;
    let version_ihl = ip.u8(0)?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != ipv4::VERSION || header_len < ipv4::HEADER_LEN {
        return Some(Parsed::Malformed);
    }
    // Options are skipped, never read, but a header is all there or not at all.
    if !copied.has(l3, header_len) {
        return None;
    }
    let total_len = usize::from(ip.u16(ipv4::TOTAL_LEN)?);
    if total_len < header_len {
        return Some(Parsed::Malformed);
    }
    if ip.u16(ipv4::FRAG)? & (ipv4::MORE_FRAGMENTS | ipv4::OFFSET_MASK) != 0 {
        return Some(Parsed::Fragment);
    }
    // No `fresh` for l4: l3 <= 22 and IHL <= 15 bound it to 82, far inside the array.
    let network = Network {
        src: ip.ipv4_addr(ipv4::SRC)?,
        hop_limit: ip.u8(ipv4::TTL)?,
        dst: ip.ipv4_addr(ipv4::DST)?,
        l3,
        l4: l3 + header_len,
        l4_len: total_len - header_len,
        ipv6: false,
        plain: header_len == ipv4::HEADER_LEN,
    };
    match ip.u8(ipv4::PROTOCOL)? {
        proto::TCP => parse_tcp(copied, &network),
        proto::ICMP => icmp::parse_v4_error(copied, &network),
        _ => Some(Parsed::Other),
    }
}

#[inline(always)]
fn parse_ipv6(copied: Copied, l3: usize) -> Option<Parsed> {
    let ip = copied.window::<{ ipv6::HEADER_LEN }>(l3)?;
    if ip.u8(0)? >> 4 != ipv6::VERSION {
        return Some(Parsed::Malformed);
    }
    let payload_len = usize::from(ip.u16(ipv6::PAYLOAD_LEN)?);
    let first_after_fixed = l3 + ipv6::HEADER_LEN;
    let next_header = ip.u8(ipv6::NEXT_HEADER)?;
    let (upper, l4) = skip_extension_headers(copied, next_header, first_after_fixed)?;
    if upper == ipv6::FRAGMENT {
        return Some(Parsed::Fragment);
    }
    let ext_len = l4 - first_after_fixed;
    if ext_len > payload_len {
        return Some(Parsed::Malformed);
    }
    if !copied.has(l4, 0) {
        return None;
    }
    let network = Network {
        src: ip.ipv6_addr(ipv6::SRC)?,
        hop_limit: ip.u8(ipv6::HOP_LIMIT)?,
        dst: ip.ipv6_addr(ipv6::DST)?,
        l3,
        // Up to four extension headers of up to 2 KiB each: far wider than the array.
        l4: fresh(l4),
        l4_len: payload_len - ext_len,
        ipv6: true,
        plain: ext_len == 0,
    };
    match upper {
        proto::TCP => parse_tcp(copied, &network),
        proto::ICMPV6 => icmp::parse_v6_error(copied, &network),
        // UDP, ESP, AH, "no next header", or more extension headers than we walk.
        _ => Some(Parsed::Other),
    }
}

/// Walks hop-by-hop, routing and destination options headers from `at`; returns the
/// first other next-header value and its offset. A fragment header stops the walk,
/// so the caller sees [`ipv6::FRAGMENT`].
#[inline(always)]
fn skip_extension_headers(copied: Copied, mut next: u8, mut at: usize) -> Option<(u8, usize)> {
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        if !matches!(next, ipv6::HOP_BY_HOP | ipv6::ROUTING | ipv6::DEST_OPTIONS) {
            break;
        }
        // Next header and length: the first two bytes of each of these headers.
        let ext = copied.window::<2>(fresh(at))?;
        next = ext.u8(0)?;
        at += (usize::from(ext.u8(1)?) + 1) * ipv6::EXT_UNIT;
    }
    Some((next, at))
}

#[inline(always)]
fn parse_tcp(copied: Copied, network: &Network) -> Option<Parsed> {
    let l4 = network.l4;
    let tcp = copied.window::<{ tcp::HEADER_LEN }>(l4)?;
    let header_len = usize::from(tcp.u8(tcp::DATA_OFFSET)? >> 4) * 4;
    if header_len < tcp::HEADER_LEN || header_len > network.l4_len {
        return Some(Parsed::Malformed);
    }
    // Options are not read, but they are part of the header a Tcp result promises.
    if !copied.has(l4, header_len) {
        return None;
    }
    // The casts cannot truncate: `has` bounded l4 + header_len by HEADER_BYTES, and
    // the IP length fields are 16 bits.
    let layout = Layout {
        l3: network.l3 as u16,
        l4: l4 as u16,
        tcp_len: header_len as u16,
        ipv6: network.ipv6,
        plain: network.plain,
    };
    Some(Parsed::Tcp(Segment {
        src: network.src,
        dst: network.dst,
        sport: tcp.u16(tcp::SPORT)?,
        dport: tcp.u16(tcp::DPORT)?,
        seq: tcp.u32(tcp::SEQ)?,
        ack: tcp.u32(tcp::ACK)?,
        flags: tcp.u8(tcp::FLAGS)?,
        payload_len: (network.l4_len - header_len) as u32,
        hop_limit: network.hop_limit,
        layout,
    }))
}

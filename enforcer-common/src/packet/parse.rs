//! [`parse`]: Ethernet and VLAN tags, IPv4 or IPv6, then TCP or an ICMP error.
//!
//! Each step returns `Option<Parsed>`: `Some` is a verdict, `None` means the headers
//! ran past the copied bytes, which [`parse`] turns into `Malformed` or `Other`
//! depending on whether the copy is the whole packet.

use core::mem::offset_of;

use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    vlan::VlanHdr,
};

use super::{
    HEADER_BYTES, Layout, Parsed, Segment,
    frame::{Copied, fresh},
    icmp,
    wire::{MAX_VLAN_TAGS, field_len, ipv4, ipv6, tcp},
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

// Ethertypes in host order, as `Copied::u16` reads them: `EtherType`'s values are
// the field's network-order bytes read native-endian.
const P_IPV4: u16 = u16::from_be(EtherType::Ipv4 as u16);
const P_IPV6: u16 = u16::from_be(EtherType::Ipv6 as u16);
const P_8021Q: u16 = u16::from_be(EtherType::Ieee8021q as u16);
const P_8021AD: u16 = u16::from_be(EtherType::Ieee8021ad as u16);

// Protocol numbers as `match` patterns, which take constants only.
const TCP: u8 = IpProto::Tcp as u8;
const ICMP: u8 = IpProto::Icmp as u8;
const ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
const HOP_BY_HOP: u8 = IpProto::HopOpt as u8;
const ROUTING: u8 = IpProto::Ipv6Route as u8;
const DEST_OPTIONS: u8 = IpProto::Ipv6Opts as u8;
/// Marks a fragment: never walked past.
const FRAGMENT: u8 = IpProto::Ipv6Frag as u8;

/// How many IPv6 extension headers are walked; more means `Other`. Real stacks send
/// at most hop-by-hop, routing and destination options before TCP.
const MAX_EXT_HEADERS: usize = 4;

#[inline(always)]
fn parse_ethernet(copied: Copied) -> Option<Parsed> {
    let mut type_at = offset_of!(EthHdr, ether_type);
    let mut ethertype = copied.u16(type_at)?;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != P_8021Q && ethertype != P_8021AD {
            break;
        }
        // A tag: its TPID stands in the ethertype's place and a `VlanHdr` (TCI, then
        // the next ethertype) follows, so the next ethertype lies a `VlanHdr` further.
        type_at += VlanHdr::LEN;
        ethertype = copied.u16(type_at)?;
    }
    let l3 = type_at + field_len(|eth: &EthHdr| &eth.ether_type);
    match ethertype {
        P_IPV4 => parse_ipv4(copied, l3),
        P_IPV6 => parse_ipv6(copied, l3),
        // ARP, LLDP, ... and a third VLAN tag.
        _ => Some(Parsed::Other),
    }
}

#[inline(always)]
fn parse_ipv4(copied: Copied, l3: usize) -> Option<Parsed> {
    let ip = copied.window::<{ Ipv4Hdr::LEN }>(l3)?;
    let version_ihl = ip.u8(offset_of!(Ipv4Hdr, vihl))?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != ipv4::VERSION || header_len < Ipv4Hdr::LEN {
        return Some(Parsed::Malformed);
    }
    // Options are skipped, never read, but a header is all there or not at all.
    if !copied.has(l3, header_len) {
        return None;
    }
    let total_len = usize::from(ip.u16(offset_of!(Ipv4Hdr, tot_len))?);
    if total_len < header_len {
        return Some(Parsed::Malformed);
    }
    if ip.u16(offset_of!(Ipv4Hdr, frags))? & (ipv4::MORE_FRAGMENTS | ipv4::OFFSET_MASK) != 0 {
        return Some(Parsed::Fragment);
    }
    // No `fresh` for l4: l3 <= 22 and IHL <= 15 bound it to 82, far inside the array.
    let network = Network {
        src: ip.ipv4_addr(offset_of!(Ipv4Hdr, src_addr))?,
        hop_limit: ip.u8(offset_of!(Ipv4Hdr, ttl))?,
        dst: ip.ipv4_addr(offset_of!(Ipv4Hdr, dst_addr))?,
        l3,
        l4: l3 + header_len,
        l4_len: total_len - header_len,
        ipv6: false,
        plain: header_len == Ipv4Hdr::LEN,
    };
    match ip.u8(offset_of!(Ipv4Hdr, proto))? {
        TCP => parse_tcp(copied, &network),
        ICMP => icmp::parse_v4_error(copied, &network),
        _ => Some(Parsed::Other),
    }
}

#[inline(always)]
fn parse_ipv6(copied: Copied, l3: usize) -> Option<Parsed> {
    let ip = copied.window::<{ Ipv6Hdr::LEN }>(l3)?;
    if ip.u8(offset_of!(Ipv6Hdr, vcf))? >> 4 != ipv6::VERSION {
        return Some(Parsed::Malformed);
    }
    let payload_len = usize::from(ip.u16(offset_of!(Ipv6Hdr, payload_len))?);
    let first_after_fixed = l3 + Ipv6Hdr::LEN;
    let next_header = ip.u8(offset_of!(Ipv6Hdr, next_hdr))?;
    let (upper, l4) = skip_extension_headers(copied, next_header, first_after_fixed)?;
    if upper == FRAGMENT {
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
        src: ip.ipv6_addr(offset_of!(Ipv6Hdr, src_addr))?,
        hop_limit: ip.u8(offset_of!(Ipv6Hdr, hop_limit))?,
        dst: ip.ipv6_addr(offset_of!(Ipv6Hdr, dst_addr))?,
        l3,
        // Up to four extension headers of up to 2 KiB each: far wider than the array.
        l4: fresh(l4),
        l4_len: payload_len - ext_len,
        ipv6: true,
        plain: ext_len == 0,
    };
    match upper {
        TCP => parse_tcp(copied, &network),
        ICMPV6 => icmp::parse_v6_error(copied, &network),
        // UDP, ESP, AH, "no next header", or more extension headers than we walk.
        _ => Some(Parsed::Other),
    }
}

/// Walks hop-by-hop, routing and destination options headers from `at`; returns the
/// first other next-header value and its offset. A fragment header stops the walk,
/// so the caller sees [`FRAGMENT`].
#[inline(always)]
fn skip_extension_headers(copied: Copied, mut next: u8, mut at: usize) -> Option<(u8, usize)> {
    for _ in 0..MAX_EXT_HEADERS {
        if !matches!(next, HOP_BY_HOP | ROUTING | DEST_OPTIONS) {
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
    let tcp = copied.window::<{ TcpHdr::LEN }>(l4)?;
    let header_len = usize::from(tcp.u8(tcp::DATA_OFFSET)? >> 4) * 4;
    if header_len < TcpHdr::LEN || header_len > network.l4_len {
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
        sport: tcp.u16(offset_of!(TcpHdr, source))?,
        dport: tcp.u16(offset_of!(TcpHdr, dest))?,
        seq: tcp.u32(offset_of!(TcpHdr, seq))?,
        ack: tcp.u32(offset_of!(TcpHdr, ack_seq))?,
        flags: tcp.u8(tcp::FLAGS)?,
        payload_len: (network.l4_len - header_len) as u32,
        hop_limit: network.hop_limit,
        layout,
    }))
}

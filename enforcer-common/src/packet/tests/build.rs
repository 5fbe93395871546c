//! Hand-written frame builders and an Internet checksum independent of the module's.
//!
//! The frames tell one story: a client in a container (`CLIENT_*`) sends a SYN to a
//! server (`SERVER_*`) through the host, whose TC program sees it; ICMP errors come
//! from a router (`ROUTER_*`) back to the client, quoting the client's SYN.

use std::{net::SocketAddr, vec, vec::Vec};

use super::super::{HEADER_BYTES, Parsed, Segment, parse, tcp_flags};
use crate::dest::DestKey;

pub const MAC_HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_V4: [u8; 4] = [10, 1, 0, 2];
pub const SERVER_V4: [u8; 4] = [192, 0, 2, 10];
pub const ROUTER_V4: [u8; 4] = [10, 1, 0, 1];
pub const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const SERVER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
pub const ROUTER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const CLIENT_PORT: u16 = 40_000;
pub const SERVER_PORT: u16 = 443;
pub const ISN: u32 = 0x1234_5678;

/// What Linux puts in a SYN: MSS 1460, SACK permitted, timestamps, NOP, window
/// scale 7.
pub const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 1, 3, 3, 7,
];

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
}

pub mod protocol {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const DEST_OPTIONS: u8 = 60;
}

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;

/// A TCP segment; the checksum is filled in by the IP builders.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// The client's SYN, with Linux's options.
    pub fn syn() -> Self {
        Self {
            sport: CLIENT_PORT,
            dport: SERVER_PORT,
            seq: ISN,
            ack: 0,
            flags: tcp_flags::SYN,
            window: 64_240,
            options: LINUX_SYN_OPTIONS.to_vec(),
            payload: Vec::new(),
        }
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        let data_offset = ((20 + self.options.len()) / 4) as u8;
        let mut out = Vec::new();
        out.extend(self.sport.to_be_bytes());
        out.extend(self.dport.to_be_bytes());
        out.extend(self.seq.to_be_bytes());
        out.extend(self.ack.to_be_bytes());
        out.extend([data_offset << 4, self.flags]);
        out.extend(self.window.to_be_bytes());
        out.extend([0, 0, 0, 0]); // checksum, urgent pointer
        out.extend(&self.options);
        out.extend(&self.payload);
        out
    }
}

/// An IPv4 header; [`V4::packet`] fills in lengths and checksums.
#[derive(Clone, Debug)]
pub struct V4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub options: Vec<u8>,
    /// Flags and fragment offset.
    pub frag: u16,
}

impl V4 {
    /// Client to server, DF set, as Linux sends a SYN.
    pub fn tcp() -> Self {
        Self {
            src: CLIENT_V4,
            dst: SERVER_V4,
            protocol: protocol::TCP,
            options: Vec::new(),
            frag: 0x4000,
        }
    }

    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// The header and `payload`; a TCP header gets its checksum.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert!(self.options.len().is_multiple_of(4));
        let header_len = IPV4_LEN + self.options.len();
        let total_len = (header_len + payload.len()) as u16;
        let mut out = vec![0x40 | (header_len / 4) as u8, 0];
        out.extend(total_len.to_be_bytes());
        out.extend([0x1c, 0x46]); // identification
        out.extend(self.frag.to_be_bytes());
        out.extend([63, self.protocol, 0, 0]);
        out.extend(self.src);
        out.extend(self.dst);
        out.extend(&self.options);
        let checksum = checksum(&[&out]);
        out[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut payload = payload.to_vec();
        if self.protocol == protocol::TCP && payload.len() >= 20 {
            let pseudo = pseudo_v4(self.src, self.dst, payload.len());
            fill_tcp_checksum(&pseudo, &mut payload);
        }
        out.extend(payload);
        out
    }
}

/// An IPv6 header; [`V6::packet`] fills in the payload length.
#[derive(Clone, Debug)]
pub struct V6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub next_header: u8,
}

impl V6 {
    pub fn tcp() -> Self {
        Self {
            src: CLIENT_V6,
            dst: SERVER_V6,
            next_header: protocol::TCP,
        }
    }

    pub fn next_header(mut self, next_header: u8) -> Self {
        self.next_header = next_header;
        self
    }

    /// The header and `payload` (extension headers included); a TCP header right
    /// after the fixed header gets its checksum.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x60, 0x0a, 0xbc, 0xde]; // traffic class 0, flow label
        out.extend((payload.len() as u16).to_be_bytes());
        out.extend([self.next_header, 63]);
        out.extend(self.src);
        out.extend(self.dst);
        let mut payload = payload.to_vec();
        if self.next_header == protocol::TCP && payload.len() >= 20 {
            let pseudo = pseudo_v6(self.src, self.dst, payload.len());
            fill_tcp_checksum(&pseudo, &mut payload);
        }
        out.extend(payload);
        out
    }
}

/// A hop-by-hop, routing or destination options header of `(units + 1) * 8` bytes,
/// padded with a PadN option.
pub fn ext_header(next_header: u8, units: u8) -> Vec<u8> {
    let len = (usize::from(units) + 1) * 8;
    let mut out = vec![next_header, units, 1, (len - 4) as u8];
    out.resize(len, 0);
    out
}

/// An IPv6 fragment header: first fragment, more to come.
pub fn fragment_header(next_header: u8) -> Vec<u8> {
    vec![next_header, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]
}

/// An ICMP message; the checksum is left zero (the parser does not check it).
pub fn icmp(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, code, 0, 0, 0, 0, 0, 0];
    out.extend(quote);
    out
}

/// An Ethernet frame from the client to the host, with VLAN tags of the given TPIDs.
pub fn ethernet(tpids: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(MAC_HOST);
    out.extend(MAC_CLIENT);
    for (i, tpid) in tpids.iter().enumerate() {
        out.extend(tpid.to_be_bytes());
        out.extend((100 + i as u16).to_be_bytes()); // VLAN id
    }
    out.extend(ethertype.to_be_bytes());
    out.extend(payload);
    out
}

pub fn v4_tcp(tcp: &Tcp) -> Vec<u8> {
    ethernet(&[], ethertype::IPV4, &V4::tcp().packet(&tcp.bytes()))
}

pub fn v6_tcp(tcp: &Tcp) -> Vec<u8> {
    ethernet(&[], ethertype::IPV6, &V6::tcp().packet(&tcp.bytes()))
}

/// What the router sends the client when the client's SYN cannot be delivered.
pub fn icmpv4_unreachable(code: u8) -> Vec<u8> {
    let quote = V4::tcp().packet(&Tcp::syn().bytes());
    icmpv4_error(3, code, &quote)
}

pub fn icmpv4_error(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let outer = V4 {
        src: ROUTER_V4,
        dst: CLIENT_V4,
        protocol: protocol::ICMP,
        options: Vec::new(),
        frag: 0,
    };
    ethernet(
        &[],
        ethertype::IPV4,
        &outer.packet(&icmp(kind, code, quote)),
    )
}

pub fn icmpv6_unreachable(code: u8) -> Vec<u8> {
    let quote = V6::tcp().packet(&Tcp::syn().bytes());
    icmpv6_error(1, code, &quote)
}

pub fn icmpv6_error(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let outer = V6 {
        src: ROUTER_V6,
        dst: CLIENT_V6,
        next_header: protocol::ICMPV6,
    };
    ethernet(
        &[],
        ethertype::IPV6,
        &outer.packet(&icmp(kind, code, quote)),
    )
}

/// What a program copies from `frame`: at most [`HEADER_BYTES`], zero beyond.
pub fn copy(frame: &[u8]) -> ([u8; HEADER_BYTES], usize) {
    let len = frame.len().min(HEADER_BYTES);
    let mut buf = [0; HEADER_BYTES];
    buf[..len].copy_from_slice(&frame[..len]);
    (buf, len)
}

pub fn parse_frame(frame: &[u8]) -> Parsed {
    let (buf, len) = copy(frame);
    parse(&buf, len)
}

#[track_caller]
pub fn segment(frame: &[u8]) -> Segment {
    match parse_frame(frame) {
        Parsed::Tcp(segment) => segment,
        other => panic!("expected a TCP segment, parsed {other:?}"),
    }
}

/// An address in `DestKey::addr`'s layout, by way of std's own conversions.
pub fn v4_words(addr: [u8; 4]) -> [u32; 4] {
    DestKey::from(SocketAddr::from((addr, 0))).addr
}

pub fn v6_words(addr: [u8; 16]) -> [u32; 4] {
    DestKey::from(SocketAddr::from((addr, 0))).addr
}

/// RFC 1071 the plain way: a wide accumulator, folded at the end. Returns the folded
/// sum (0xffff over a region with a correct checksum).
pub fn ones_sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|pair| u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

pub fn checksum(parts: &[&[u8]]) -> u16 {
    !ones_sum(parts)
}

pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], tcp_len: usize) -> Vec<u8> {
    [
        &src[..],
        &dst,
        &[0, protocol::TCP],
        &(tcp_len as u16).to_be_bytes(),
    ]
    .concat()
}

pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], tcp_len: usize) -> Vec<u8> {
    [
        &src[..],
        &dst,
        &(tcp_len as u32).to_be_bytes(),
        &[0, 0, 0, protocol::TCP],
    ]
    .concat()
}

pub fn fill_tcp_checksum(pseudo: &[u8], segment: &mut [u8]) {
    segment[16..18].fill(0);
    let checksum = checksum(&[pseudo, segment]);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
}

/// The kernel's `inet_proto_csum_replace_by_diff` on a packet that is not
/// `CHECKSUM_PARTIAL`: `*sum = csum_fold(csum_add(diff, ~csum_unfold(*sum)))`, on
/// the field as it lies in memory (native-endian).
pub fn kernel_replace_by_diff(field: [u8; 2], diff: u32) -> [u8; 2] {
    let csum_add = |a: u32, b: u32| {
        let (sum, carry) = a.overflowing_add(b);
        sum + u32::from(carry)
    };
    let csum_fold = |sum: u32| {
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    };
    let unfolded = u32::from(u16::from_ne_bytes(field));
    csum_fold(csum_add(diff, !unfolded)).to_ne_bytes()
}

//! Hand-built Ethernet frames for running the packet programs with
//! `BPF_PROG_TEST_RUN`, and an independent reading of what they answer.

use std::net::IpAddr;

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;

const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// The destination's initial sequence number in [`Tcp::answer`].
pub const ANSWER_ISN: u32 = 0x0abc_def0;
/// Ethernet header bytes of the frames built here (untagged).
const ETH_LEN: usize = 14;

/// A TCP segment to build.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Options bytes (a multiple of 4).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// A SYN from `src:sport` to `dst:dport` with the options Linux sends.
    pub fn syn(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            seq: 0x1234_5678,
            ack: 0,
            flags: SYN,
            // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
            options: vec![
                2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
            ],
            payload: Vec::new(),
        }
    }

    /// The same segment's answer direction with other flags: the
    /// destination's first segment, acknowledging this SYN.
    pub fn answer(&self, flags: u8) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            seq: ANSWER_ISN,
            ack: self.seq.wrapping_add(1),
            flags,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The guest's next segment after this SYN was answered by
    /// [`Self::answer`]: one past the SYN, acknowledging the SYN-ACK.
    pub fn established(&self, flags: u8) -> Self {
        Self {
            seq: self.seq.wrapping_add(1),
            ack: ANSWER_ISN.wrapping_add(1),
            flags,
            options: Vec::new(),
            payload: Vec::new(),
            ..self.clone()
        }
    }

    /// The destination's next segment after its SYN-ACK ([`Self::answer`]).
    pub fn answer_established(&self, flags: u8) -> Self {
        Self {
            seq: ANSWER_ISN.wrapping_add(1),
            ..self.answer(flags)
        }
    }

    /// The segment in an Ethernet frame (IPv4 or IPv6 by its addresses).
    pub fn frame(&self) -> Vec<u8> {
        ethernet(self.packet())
    }

    /// The segment in an IP packet, as a raw socket sends it.
    pub fn packet(&self) -> Vec<u8> {
        ip(self.src, self.dst, 6, &self.segment())
    }

    fn segment(&self) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        let words = (20 + self.options.len()) / 4;
        t.push((words as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&self.options);
        t.extend_from_slice(&self.payload);
        let sum = checksum(&pseudo_header(self.src, self.dst, 6, t.len()), &t);
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        t
    }
}

/// An ICMP destination-unreachable sent by `from` about `quoted` (the first
/// bytes of the packet it could not deliver).
pub fn unreachable(from: IpAddr, quoted: &Tcp) -> Vec<u8> {
    ethernet(unreachable_packet(from, quoted))
}

/// [`unreachable`] as an IP packet.
pub fn unreachable_packet(from: IpAddr, quoted: &Tcp) -> Vec<u8> {
    let original = ip(quoted.src, quoted.dst, 6, &quoted.segment());
    let quote = &original[..original.len().min(if from.is_ipv4() { 28 } else { 48 })];
    let mut icmp = if from.is_ipv4() {
        vec![3, 3, 0, 0, 0, 0, 0, 0]
    } else {
        vec![1, 4, 0, 0, 0, 0, 0, 0]
    };
    icmp.extend_from_slice(quote);
    let (proto, pseudo) = match from {
        IpAddr::V4(_) => (1, Vec::new()),
        IpAddr::V6(_) => (58, pseudo_header(from, quoted.src, 58, icmp.len())),
    };
    let sum = checksum(&pseudo, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ip(from, quoted.src, proto, &icmp)
}

/// Offset of the TCP header in an untagged frame built here.
fn tcp_at(frame: &[u8]) -> usize {
    let ip = &frame[ETH_LEN..];
    ETH_LEN
        + if ip[0] >> 4 == 4 {
            usize::from(ip[0] & 0xf) * 4
        } else {
            40
        }
}

/// `frame` (untagged) with TTL / hop limit `hops`, its IPv4 header checksum
/// fixed: a router forwarding it drops it when `hops` is 0 or 1.
pub fn with_hop_limit(frame: &[u8], hops: u8) -> Vec<u8> {
    let mut frame = frame.to_vec();
    if frame[ETH_LEN] >> 4 == 4 {
        frame[ETH_LEN + 8] = hops;
        fix_ipv4_checksum(&mut frame);
    } else {
        frame[ETH_LEN + 7] = hops;
    }
    frame
}

/// `frame` (untagged) with a TCP checksum that does not verify: the
/// destination drops it.
pub fn with_bad_tcp_checksum(frame: &[u8]) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let at = tcp_at(&frame);
    frame[at + 17] ^= 0x5a;
    frame
}

/// `frame` (untagged) with its TCP checksum field holding only the
/// pseudo-header's sum: what a stack leaves for checksum offload, and, sent
/// as it is, a checksum that does not verify.
pub fn with_offload_checksum(frame: &[u8]) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let at = tcp_at(&frame);
    let p = parse(&frame);
    let pseudo = pseudo_header(p.src, p.dst, 6, frame.len() - at);
    let partial = !checksum(&pseudo, &[]);
    frame[at + 16..at + 18].copy_from_slice(&partial.to_be_bytes());
    frame
}

/// `frame` with other Ethernet addresses, to go out of a real interface.
pub fn with_macs(frame: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut frame = frame.to_vec();
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// An IPv6 SYN with a hop-by-hop options header (PadN) before TCP.
pub fn syn_v6_with_hop_by_hop(syn: &Tcp) -> Vec<u8> {
    let segment = syn.segment();
    let mut ext = vec![6, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&segment);
    // Next header 0: hop-by-hop.
    ethernet(ip(syn.src, syn.dst, 0, &ext))
}

/// An IPv4 fragment (more fragments set) carrying the start of a SYN.
pub fn syn_v4_fragment(syn: &Tcp) -> Vec<u8> {
    let mut frame = syn.frame();
    // Flags/fragment offset of the IPv4 header: MF.
    frame[14 + 6] = 0x20;
    fix_ipv4_checksum(&mut frame);
    frame
}

/// Ethernet + IPv4/IPv6 header around `payload`.
fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload.len()) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let sum = checksum(&[], &out);
            out[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(&[proto, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    }
    out.extend_from_slice(payload);
    out
}

fn ethernet(ip_packet: Vec<u8>) -> Vec<u8> {
    let ethertype: u16 = if ip_packet[0] >> 4 == 4 {
        0x0800
    } else {
        0x86dd
    };
    let mut out = Vec::with_capacity(14 + ip_packet.len());
    out.extend_from_slice(&ROUTER_MAC);
    out.extend_from_slice(&GUEST_MAC);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(&ip_packet);
    out
}

fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&[], &frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    p
}

/// The Internet checksum over `a` then `b`.
pub fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in a.chunks(2).chain(b.chunks(2)) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP segment read back from a frame, with its checksums verified.
#[derive(Debug)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// TCP checksum (and IPv4 header checksum) verify.
    pub checksums_ok: bool,
}

/// Reads the TCP segment of an untagged IPv4/IPv6 frame.
pub fn parse(frame: &[u8]) -> Parsed {
    let (dst_mac, src_mac) = (
        frame[0..6].try_into().unwrap(),
        frame[6..12].try_into().unwrap(),
    );
    let ip = &frame[14..];
    let (src, dst, tcp, ip_ok) = if ip[0] >> 4 == 4 {
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let s: [u8; 4] = ip[12..16].try_into().unwrap();
        let d: [u8; 4] = ip[16..20].try_into().unwrap();
        let ok = checksum(&[], &ip[..ihl]) == 0;
        (IpAddr::from(s), IpAddr::from(d), &ip[ihl..total], ok)
    } else {
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let s: [u8; 16] = ip[8..24].try_into().unwrap();
        let d: [u8; 16] = ip[24..40].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), &ip[40..40 + len], true)
    };
    let tcp_ok = checksum(&pseudo_header(src, dst, 6, tcp.len()), tcp) == 0;
    Parsed {
        src,
        dst,
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
        flags: tcp[13],
        dst_mac,
        src_mac,
        checksums_ok: ip_ok && tcp_ok,
    }
}

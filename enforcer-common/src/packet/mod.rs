//! Packet parsing and TCP RST crafting for the packet plane, as pure code.
//!
//! The TC/XDP programs copy the first `min(packet_len, HEADER_BYTES)` bytes of a
//! frame into a zeroed stack array and call [`parse`]. Before a guest's SYN may
//! open a flow, [`vet_syn`] checks that it can reach its destination at all
//! (hop limit, checksums, lengths). To refuse a SYN to an open destination they
//! call [`rst_reply`] on the same array and write the reply back into the
//! packet. All are plain functions over that array, so every case is
//! unit-tested on the host and the kernel runs the same code.
//!
//! # Written for the verifier
//! They inline into the hook. `parse` and `rst_reply` were checked by loading a TC
//! program that calls them into the kernel's verifier, once with the array on the
//! stack and once with the array in a 192-byte map value (where every access is checked
//! against exactly 192 bytes), and by running it on crafted frames.
//! - No panic is reachable: no `[]` on a runtime index, no `unwrap`, no arithmetic
//!   that can overflow. Every access at a runtime offset goes through `frame`, which
//!   yields `None` instead. A reachable panic would fail the link or the verifier.
//! - The verifier bounds a pointer by what it knew of the offset when the pointer
//!   was formed. So each header's fixed part is read as one window, checked against
//!   the array before any byte of it is read, and an offset derived far beyond an
//!   earlier window is laundered first (`frame::fresh`); see `frame`.
//! - Loops have small constant bounds (2 VLAN tags, 4 IPv6 extension headers, 10
//!   option words, 16 words per checksum run); no recursion, no allocation.
//!   `rst_reply` does not branch on the TCP header length (option words past the
//!   header are masked out), so the verifier walks it once, not once per length.
//! - Small functions are `#[inline(always)]`, as in the rest of the crate.
//! - Stack: besides the array, parsing and crafting a reply take about 150-210
//!   bytes of the 512-byte BPF stack (LLVM 22). A hook with many other locals can
//!   keep the array in a per-CPU array map instead.
//!
//! # Copied length vs packet length
//! When headers run past the copied bytes, it matters why: a copy shorter than
//! [`HEADER_BYTES`] is the whole packet, so the packet is shorter than its own
//! headers ([`Parsed::Malformed`]); a copy of exactly [`HEADER_BYTES`] may stop
//! inside a longer packet, whose headers are merely deeper than the packet plane
//! looks ([`Parsed::Other`]). Payload lengths always come from the IP length
//! fields, never from the copy (which may end early, or include Ethernet padding).
//!
//! # The reply is crafted in place
//! A RST answering a SYN reuses the SYN's own headers: MACs, addresses and ports
//! swapped, fields rewritten per RFC 9293 "reset generation". The SYN's TCP options
//! are overwritten with NOPs instead of being removed, so the reply has exactly the
//! SYN's length and the program needs no `bpf_skb_change_tail`/`bpf_xdp_adjust_tail`
//! and no byte moves (NOP padding is valid TCP; the peer ignores it). Only "plain"
//! packets (no IPv4 options, no IPv6 extension headers) are answered, so the IP
//! header is rewritten without walking or dropping options.

mod checksum;
mod frame;
mod icmp;
mod parse;
mod reply;
mod route;
mod verify;
mod wire;

#[cfg(test)]
mod tests;

pub use parse::parse;
pub use reply::rst_reply;
pub use route::{ReversePath, fib_result, reverse_path};
pub use verify::{Vetted, vet_syn};

/// Bytes of a frame the programs copy and parse: Ethernet + 2 VLAN tags + IPv6
/// with extension headers + TCP with options, or + ICMP + quoted IP header + 8 TCP
/// bytes.
pub const HEADER_BYTES: usize = 192;

/// TCP flag bits, as in [`Segment::flags`].
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// What a frame is, as far as the packet plane cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A TCP segment in an unfragmented IPv4/IPv6 packet.
    Tcp(Segment),
    /// ICMPv4 destination unreachable (type 3, any code except 4 "fragmentation
    /// needed") or ICMPv6 destination unreachable (type 1), quoting a TCP
    /// segment's first 8 bytes.
    Unreachable(Quoted),
    /// Anything the parser understands and the packet plane ignores: not
    /// IPv4/IPv6 (ARP, ...), not TCP or ICMP, other ICMP types, an ICMP error
    /// quoting something other than TCP, headers deeper than [`HEADER_BYTES`].
    Other,
    /// An IPv4 fragment (MF set or offset != 0) or an IPv6 packet with a Fragment
    /// extension header.
    Fragment,
    /// Truncated or invalid: frame shorter than its headers, IPv4 IHL < 5, wrong IP
    /// version nibble, IP total/payload length shorter than the headers, TCP data
    /// offset < 5, TCP header extending past the IP length, ICMP error too short
    /// to quote the TCP ports and sequence number.
    Malformed,
}

/// Where the headers of a parsed TCP segment are in the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header.
    pub l3: u16,
    /// Offset of the TCP header.
    pub l4: u16,
    /// TCP header length (data offset * 4), options included.
    pub tcp_len: u16,
    pub ipv6: bool,
    /// No IPv4 options and no IPv6 extension headers: a reply can be crafted in
    /// place.
    pub plain: bool,
}

impl Layout {
    /// Offset of the TCP checksum field in the frame.
    pub const fn tcp_checksum(&self) -> usize {
        self.l4 as usize + core::mem::offset_of!(network_types::tcp::TcpHdr, check)
    }
}

/// A TCP segment's addressing, sequence numbers and flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Source address: the 16 bytes of an IPv6 address (IPv4 as v4-mapped
    /// `::ffff:a.b.c.d`) as four native-endian words, exactly like
    /// [`crate::dest::DestKey::addr`].
    pub src: [u32; 4],
    /// Destination address, laid out like `src`.
    pub dst: [u32; 4],
    /// Host order.
    pub sport: u16,
    /// Host order.
    pub dport: u16,
    /// Host order.
    pub seq: u32,
    /// Host order.
    pub ack: u32,
    /// [`tcp_flags`] bits.
    pub flags: u8,
    /// TCP payload bytes, from the IP length fields (not the copied length).
    pub payload_len: u32,
    /// IPv4 TTL or IPv6 hop limit, as received.
    pub hop_limit: u8,
    pub layout: Layout,
}

/// The segment an ICMP error quotes: the one the local side (the receiver of the
/// ICMP error) sent. Addresses laid out like [`Segment::src`], the rest host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quoted {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
}

/// A TCP RST crafted in place, answering a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the frame, from offset 0, to write back into the packet (Ethernet
    /// + IP + TCP header with options).
    pub len: usize,
    /// Offset of the TCP checksum field in the frame.
    pub csum_at: usize,
    /// The TCP checksum field of the original SYN (network-order bytes).
    pub old_csum: [u8; 2],
    /// Ones'-complement difference between the new and the old TCP header (all
    /// words but the checksum field), for programs that let the kernel update the
    /// checksum: `bpf_l4_csum_replace(skb, csum_at, 0, diff, 0)` over a field that
    /// still holds `old_csum` computes exactly the checksum [`rst_reply`] wrote.
    ///
    /// In the kernel's representation (what `bpf_csum_diff` returns): words as they
    /// lie in memory, read native-endian. The pseudo-header needs no diff: the
    /// addresses are swapped and the length is kept.
    pub diff: u32,
}

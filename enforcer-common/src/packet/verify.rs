//! [`vet_syn`]: whether a guest's SYN reaches its destination as sent.
//!
//! Silence after a SYN says something about the destination only if the SYN
//! could have been answered. A router drops a packet whose TTL runs out, whose
//! IPv4 header checksum is wrong or whose IP length runs past its end, and
//! often one with IPv4 options or IPv6 extension headers (source routes,
//! options it does not know: RFC 7126, RFC 7872); the destination drops a
//! segment whose TCP checksum is wrong. Tracking such a SYN would let a guest
//! turn its own garbage into timeouts of a destination everyone shares, so the
//! packet plane leaves it alone, as it leaves fragments alone.
//!
//! Only plain headers (no IPv4 options, no IPv6 extension headers) are vetted:
//! real stacks send nothing else on a SYN, the IPv4 header is then 20 bytes at
//! a known place, and the verifier walks the vetting for a handful of layouts
//! instead of every one the parser reads.

use core::mem::offset_of;

use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use super::{
    HEADER_BYTES, Segment,
    checksum::{add, fold, pseudo_header, sum_words},
    frame::{fresh, read},
    wire::MAX_L3,
};

/// What a guest's SYN is, as far as delivery goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vetted {
    /// Its headers check out: it reaches the destination as sent.
    Deliverable,
    /// Its TCP checksum field holds the pseudo-header's sum only: what a
    /// sender's stack leaves for the device or the kernel to complete
    /// (checksum offload, `CHECKSUM_PARTIAL`), as every SYN from a container
    /// behind a veth or a VM with offloads does. Deliverable if the frame
    /// really is such a packet, which only the hook can tell: a packet sent
    /// with that value as its final checksum is dropped by the destination.
    ChecksumOffloaded,
    /// TTL or hop limit 0 or 1: the router that would forward it drops it.
    HopLimitExpiring,
    /// An IPv4 header checksum or a TCP checksum that does not verify, or an
    /// IP length past the end of the packet.
    Corrupt,
    /// IPv4 options or IPv6 extension headers, which routers may drop, or a
    /// segment running past the copied bytes (data on a SYN), whose checksum
    /// cannot be verified here.
    Unverifiable,
}

/// Vets the SYN in the first `len` bytes of `frame`, as [`super::parse`]
/// parsed it into `syn`.
#[inline(always)]
pub fn vet_syn(frame: &[u8; HEADER_BYTES], len: usize, syn: &Segment) -> Vetted {
    if !syn.layout.plain {
        return Vetted::Unverifiable;
    }
    if syn.hop_limit <= 1 {
        return Vetted::HopLimitExpiring;
    }
    let copied = if len < HEADER_BYTES {
        len
    } else {
        HEADER_BYTES
    };
    let (l3, l4) = (usize::from(syn.layout.l3), usize::from(syn.layout.l4));
    let ipv6 = syn.layout.ipv6;
    let ip_len = if ipv6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN };
    // What `parse` gives a plain packet; also bounds the offsets for the
    // verifier, whatever reached here through the stack.
    if l3 > MAX_L3 || l4 != l3 + ip_len {
        return Vetted::Corrupt;
    }
    if !ipv6 && sum_words(frame, l3, Ipv4Hdr::LEN).map(fold) != Some(0xffff) {
        return Vetted::Corrupt;
    }
    // Cannot overflow: a data offset and a 16-bit IP length.
    let tcp_bytes = u32::from(syn.layout.tcp_len) + syn.payload_len;
    let end = l4 + tcp_bytes as usize;
    // A copy shorter than HEADER_BYTES is the whole packet.
    if end > copied && copied < HEADER_BYTES {
        return Vetted::Corrupt;
    }
    let Some(pseudo) = pseudo_header(frame, l3, ipv6, tcp_bytes) else {
        return Vetted::Corrupt;
    };
    if end <= copied && sum_span(frame, l4, end).map(|sum| fold(add(pseudo, sum))) == Some(0xffff) {
        return Vetted::Deliverable;
    }
    match read::<2>(frame, l4 + offset_of!(TcpHdr, check)) {
        Some(field) if u16::from_be_bytes(field) == fold(pseudo) => Vetted::ChecksumOffloaded,
        _ if end <= copied => Vetted::Corrupt,
        _ => Vetted::Unverifiable,
    }
}

/// Sum of the network-order words of the bytes in `start..end`, an odd last
/// byte padded with zero (RFC 1071); `None` if they leave the array.
///
/// Written so the verifier walks what follows once, not once per length: the
/// loop exits on a word count that nothing reads afterwards, so the states
/// after each possible exit differ only in the sum, which it need not track
/// precisely, and prune to one. Compared on the offsets instead, each exit
/// would narrow `end` (live afterwards) to another value. (Masking the words
/// of a fixed range does not survive LLVM, which turns each mask back into a
/// branch inside the loop.)
#[inline(always)]
fn sum_span(buf: &[u8; HEADER_BYTES], start: usize, end: usize) -> Option<u32> {
    let len = end.checked_sub(start)?;
    // Opaque, so that LLVM cannot fold the count back into the offsets.
    let words = fresh(len / 2);
    // At most 96 words of 16 bits: no carry out of 32 bits to fold back in.
    let mut sum = 0u32;
    for word in 0..HEADER_BYTES / 2 {
        if word >= words {
            break;
        }
        // `fresh`: checked on its own, not as an offset from `start`'s pointer.
        sum += u32::from(u16::from_be_bytes(read(buf, fresh(start + 2 * word))?));
    }
    if len % 2 == 1 {
        let [last] = read::<1>(buf, fresh(end - 1))?;
        sum += u32::from(last) << 8;
    }
    Some(sum)
}

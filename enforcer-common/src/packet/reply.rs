//! [`rst_reply`]: the RST a closed port would send, crafted over the SYN in place.

use core::mem::offset_of;

use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use super::{
    HEADER_BYTES, Layout, Reply, Segment,
    checksum::{add, fold, pseudo_header, sum_array, sum_header},
    frame::{read, write},
    tcp_flags,
    wire::{MAX_L3, field_len, tcp},
};

/// TTL / hop limit of a reply: Linux's default for locally generated packets.
const REPLY_TTL: u8 = 64;

/// Rewrites the SYN in `frame`, as [`super::parse`] parsed it into `syn`, into the
/// RST a closed port would send back (RFC 9293 3.10.7.1), with complete TCP and
/// IPv4 header checksums.
///
/// `None`, with the frame untouched, unless the layout is plain, SYN is set, RST is
/// not, and there is no payload (a RST over a SYN carrying data would have to drop
/// it, i.e. resize the packet).
#[inline(always)]
pub fn rst_reply(frame: &mut [u8; HEADER_BYTES], syn: &Segment) -> Option<Reply> {
    if !is_answerable_syn(syn) {
        return None;
    }
    let at = Offsets::of(&syn.layout)?;
    // Everything below reads and writes below `at.l4 + 60`, which `Offsets::of`
    // bounds inside the array: no `?` from here on can fire and leave a
    // half-written frame.
    let old_csum = read(frame, at.tcp_checksum())?;

    swap::<{ field_len(|eth: &EthHdr| &eth.dst_addr) }>(
        frame,
        offset_of!(EthHdr, dst_addr),
        offset_of!(EthHdr, src_addr),
    )?;
    if at.ipv6 {
        rewrite_ipv6(frame, &at)?;
    } else {
        rewrite_ipv4(frame, &at)?;
    }
    let (old_header, new_header) = rewrite_tcp(frame, &at, syn)?;

    let checksum = !fold(add(pseudo_header_sum(frame, &at)?, new_header));
    write(frame, at.tcp_checksum(), checksum.to_be_bytes())?;
    Some(Reply {
        len: at.end(),
        csum_at: at.tcp_checksum(),
        old_csum,
        diff: kernel_diff(old_header, new_header),
    })
}

#[inline(always)]
fn is_answerable_syn(segment: &Segment) -> bool {
    segment.layout.plain
        && segment.flags & tcp_flags::SYN != 0
        && segment.flags & tcp_flags::RST == 0
        && segment.payload_len == 0
}

/// Header offsets of a plain packet, checked.
struct Offsets {
    l3: usize,
    l4: usize,
    tcp_len: usize,
    ipv6: bool,
    /// Bit `i` set for each option word `i` inside the TCP header.
    option_words: u32,
}

/// Option words of the longest TCP header.
const MAX_OPTION_WORDS: usize = (tcp::MAX_HEADER_LEN - TcpHdr::LEN) / 4;

// The longest TCP header of any plain packet lies inside the array, so the option
// words can be visited whatever the header's length (see `nop_options`).
const _: () = assert!(MAX_L3 + Ipv6Hdr::LEN + tcp::MAX_HEADER_LEN <= HEADER_BYTES);

impl Offsets {
    /// `None` for a layout that no plain packet from `parse` has, so that a stray
    /// `Segment` cannot steer writes outside the headers.
    ///
    /// The constant bounds also matter to the verifier: the layout may reach
    /// `rst_reply` through the stack as bare `u16`s, and these comparisons bound
    /// every offset by 22 + 40 + 60 without relying on what `parse` checked.
    #[inline(always)]
    fn of(layout: &Layout) -> Option<Self> {
        let l3 = usize::from(layout.l3);
        let l4 = usize::from(layout.l4);
        let tcp_len = usize::from(layout.tcp_len);
        let ip_len = if layout.ipv6 {
            Ipv6Hdr::LEN
        } else {
            Ipv4Hdr::LEN
        };
        let sane = layout.plain
            && (EthHdr::LEN..=MAX_L3).contains(&l3)
            && l4 == l3 + ip_len
            && (TcpHdr::LEN..=tcp::MAX_HEADER_LEN).contains(&tcp_len)
            && tcp_len.is_multiple_of(4);
        if !sane {
            return None;
        }
        let option_word_count = ((tcp_len - TcpHdr::LEN) / 4) as u32;
        Some(Self {
            l3,
            l4,
            tcp_len,
            ipv6: layout.ipv6,
            option_words: (1 << option_word_count) - 1,
        })
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.l4 + self.tcp_len
    }

    #[inline(always)]
    fn tcp_checksum(&self) -> usize {
        self.l4 + offset_of!(TcpHdr, check)
    }

    /// Offset of option word `word` (0..10), which may lie beyond the header.
    #[inline(always)]
    fn option_word(&self, word: usize) -> usize {
        self.l4 + TcpHdr::LEN + word * 4
    }

    /// All ones if option word `word` is inside the header, else zero: computed,
    /// not branched on (see `nop_options`).
    #[inline(always)]
    fn option_mask(&self, word: usize) -> u32 {
        ((self.option_words >> word) & 1).wrapping_neg()
    }
}

/// Exchanges the `N` bytes at `a` with the `N` bytes at `b` (`N` a multiple of 2),
/// two bytes at a time: whole 16-byte addresses in registers would be spilled.
#[inline(always)]
fn swap<const N: usize>(frame: &mut [u8; HEADER_BYTES], a: usize, b: usize) -> Option<()> {
    for offset in (0..N).step_by(2) {
        let at_a: [u8; 2] = read(frame, a + offset)?;
        let at_b: [u8; 2] = read(frame, b + offset)?;
        write(frame, a + offset, at_b)?;
        write(frame, b + offset, at_a)?;
    }
    Some(())
}

/// Addresses swapped, fresh TTL and identification, length of a bare TCP header,
/// header checksum. Flags (DF) stay: the fragment offset of a parsed TCP segment is 0.
#[inline(always)]
fn rewrite_ipv4(frame: &mut [u8; HEADER_BYTES], at: &Offsets) -> Option<()> {
    const CHECKSUM: usize = offset_of!(Ipv4Hdr, check);
    let l3 = at.l3;
    swap::<{ field_len(|ip: &Ipv4Hdr| &ip.src_addr) }>(
        frame,
        l3 + offset_of!(Ipv4Hdr, src_addr),
        l3 + offset_of!(Ipv4Hdr, dst_addr),
    )?;
    let total_len = (Ipv4Hdr::LEN + at.tcp_len) as u16;
    write(
        frame,
        l3 + offset_of!(Ipv4Hdr, tot_len),
        total_len.to_be_bytes(),
    )?;
    write(frame, l3 + offset_of!(Ipv4Hdr, id), [0, 0])?;
    write(frame, l3 + offset_of!(Ipv4Hdr, ttl), [REPLY_TTL])?;
    let checksum = !fold(sum_header(frame, l3, Ipv4Hdr::LEN, CHECKSUM)?);
    write(frame, l3 + CHECKSUM, checksum.to_be_bytes())
}

/// Addresses swapped, fresh hop limit, length of a bare TCP header; traffic class
/// and flow label stay.
#[inline(always)]
fn rewrite_ipv6(frame: &mut [u8; HEADER_BYTES], at: &Offsets) -> Option<()> {
    let l3 = at.l3;
    swap::<{ field_len(|ip: &Ipv6Hdr| &ip.src_addr) }>(
        frame,
        l3 + offset_of!(Ipv6Hdr, src_addr),
        l3 + offset_of!(Ipv6Hdr, dst_addr),
    )?;
    write(
        frame,
        l3 + offset_of!(Ipv6Hdr, payload_len),
        (at.tcp_len as u16).to_be_bytes(),
    )?;
    write(frame, l3 + offset_of!(Ipv6Hdr, hop_limit), [REPLY_TTL])
}

/// Rewrites the TCP header but its checksum field; returns the sums of the old
/// and the new header, checksum field left out.
///
/// Fields are written one by one and each part is summed right where it is read or
/// written, so that little stays live: LLVM would otherwise keep the header's bytes
/// in registers across the rewrite and spill them onto the 512-byte BPF stack.
#[inline(always)]
fn rewrite_tcp(frame: &mut [u8; HEADER_BYTES], at: &Offsets, syn: &Segment) -> Option<(u32, u32)> {
    const CHECKSUM: usize = offset_of!(TcpHdr, check);
    let l4 = at.l4;
    let old_fixed = sum_header(frame, l4, TcpHdr::LEN, CHECKSUM)?;
    let (seq, ack, flags) = rst_numbers(syn);
    // The SYN's ports, swapped.
    let (sport, dport) = (syn.dport, syn.sport);
    write(frame, l4 + offset_of!(TcpHdr, source), sport.to_be_bytes())?;
    write(frame, l4 + offset_of!(TcpHdr, dest), dport.to_be_bytes())?;
    write(frame, l4 + offset_of!(TcpHdr, seq), seq.to_be_bytes())?;
    write(frame, l4 + offset_of!(TcpHdr, ack_seq), ack.to_be_bytes())?;
    // The data offset is the length we checksum and hand back; the reserved bits
    // (AE included) are zero.
    let data_offset = ((at.tcp_len / 4) as u8) << 4;
    write(frame, l4 + tcp::DATA_OFFSET, [data_offset, flags])?;
    write(frame, l4 + offset_of!(TcpHdr, window), [0, 0])?;
    write(frame, l4 + offset_of!(TcpHdr, urg_ptr), [0, 0])?;
    let new_fixed = sum_header(frame, l4, TcpHdr::LEN, CHECKSUM)?;
    let (old_options, new_options) = nop_options(frame, at)?;
    Some((add(old_fixed, old_options), add(new_fixed, new_options)))
}

/// Sequence number, acknowledgment number and flags of the RST (RFC 9293 3.10.7.1):
/// a SYN that acknowledges something is answered at that number, without an ACK;
/// otherwise the RST acknowledges the SYN.
#[inline(always)]
fn rst_numbers(syn: &Segment) -> (u32, u32, u8) {
    if syn.flags & tcp_flags::ACK != 0 {
        (syn.ack, 0, tcp_flags::RST)
    } else {
        // SEG.LEN: the payload is 0; SYN and FIN each occupy one sequence number.
        let seg_len = 1 + u32::from(syn.flags & tcp_flags::FIN);
        let ack = syn.seq.wrapping_add(seg_len);
        (0, ack, tcp_flags::RST | tcp_flags::ACK)
    }
}

/// Overwrites the options with NOPs; returns the sums of the old and the new
/// option words.
///
/// NOPs keep the reply at the SYN's length, so the program neither resizes the
/// packet nor moves bytes, and the peer skips them.
///
/// Straight-line code: all ten possible option words are visited (they lie inside
/// the array for any plain layout, see `Offsets`), and those beyond the header are
/// written back as they were and left out of the sums by a mask, not skipped by a
/// branch. A branch per word on the header length would make the verifier walk the
/// rest of the program once per possible length.
#[inline(always)]
fn nop_options(frame: &mut [u8; HEADER_BYTES], at: &Offsets) -> Option<(u32, u32)> {
    const NOPS: u32 = u32::from_ne_bytes([tcp::OPTION_NOP; 4]);
    let (mut old_sum, mut new_sum) = (0, 0);
    for word in 0..MAX_OPTION_WORDS {
        let offset = at.option_word(word);
        let mask = at.option_mask(word);
        let current = read(frame, offset)?;
        let value = (NOPS & mask) | (u32::from_ne_bytes(current) & !mask);
        write(frame, offset, value.to_ne_bytes())?;
        old_sum = add(old_sum, sum_array(&current) & mask);
        new_sum = add(new_sum, sum_array(&value.to_ne_bytes()) & mask);
    }
    Some((old_sum, new_sum))
}

/// Sum of the pseudo-header of a segment without payload. Swapping the
/// addresses does not change it.
#[inline(always)]
fn pseudo_header_sum(frame: &[u8; HEADER_BYTES], at: &Offsets) -> Option<u32> {
    pseudo_header(frame, at.l3, at.ipv6, at.tcp_len as u32)
}

/// `new - old` in ones' complement, in the kernel's representation.
///
/// We sum network-order words; the kernel's checksum helpers sum words as they lie in
/// memory, read native-endian. A byte swap commutes with ones'-complement sums, so
/// reading our folded result's network-order bytes native-endian converts it.
#[inline(always)]
fn kernel_diff(old: u32, new: u32) -> u32 {
    let network_order = fold(add(new, u32::from(!fold(old))));
    u32::from(u16::from_ne_bytes(network_order.to_be_bytes()))
}

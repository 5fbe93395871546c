//! The Internet checksum (RFC 1071) over header bytes at runtime offsets.
//!
//! Sums are kept as `u32` with end-around carry, over 16-bit words read in network
//! order; [`fold`] reduces them to the 16 bits a checksum field holds.

use core::mem::offset_of;

use network_types::ip::{IpProto, Ipv4Hdr, Ipv6Hdr};

use super::{HEADER_BYTES, frame::read};

/// Words in the longest run summed: two IPv6 addresses (pseudo-header).
const MAX_WORDS: usize = 16;

/// Ones'-complement addition: a carry out of bit 31 wraps around into bit 0.
#[inline(always)]
pub(super) fn add(sum: u32, value: u32) -> u32 {
    let (sum, carry) = sum.overflowing_add(value);
    sum.wrapping_add(u32::from(carry))
}

/// Folds a 32-bit ones'-complement sum into 16 bits.
#[inline(always)]
pub(super) fn fold(sum: u32) -> u16 {
    // Two rounds suffice: after the first the sum is at most 0x1_fffe.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Ones'-complement sum of the network-order words of the `len` bytes at `start`
/// (`len` even, at most 32). `None` if the bytes leave the array.
///
/// Callers pass constant lengths, so the loop unrolls into straight-line code: a
/// length known only at run time would make the verifier walk one path per length.
#[inline(always)]
pub(super) fn sum_words(buf: &[u8; HEADER_BYTES], start: usize, len: usize) -> Option<u32> {
    if len > MAX_WORDS * 2 {
        return None;
    }
    let mut sum = 0;
    for word in 0..MAX_WORDS {
        let offset = word * 2;
        if offset >= len {
            break;
        }
        let value = u16::from_be_bytes(read(buf, start.checked_add(offset)?)?);
        sum = add(sum, u32::from(value));
    }
    Some(sum)
}

/// Ones'-complement sum of a header of `len` bytes at `start`, leaving out its
/// checksum field at `checksum_at` (relative to `start`).
#[inline(always)]
pub(super) fn sum_header(
    buf: &[u8; HEADER_BYTES],
    start: usize,
    len: usize,
    checksum_at: usize,
) -> Option<u32> {
    let after = checksum_at + 2;
    let before_field = sum_words(buf, start, checksum_at)?;
    let after_field = sum_words(buf, start.checked_add(after)?, len.checked_sub(after)?)?;
    Some(add(before_field, after_field))
}

/// Ones'-complement sum of the network-order words of `bytes` (`N` even).
#[inline(always)]
pub(super) fn sum_array<const N: usize>(bytes: &[u8; N]) -> u32 {
    let (words, _) = bytes.as_chunks::<2>();
    let mut sum = 0;
    for word in words {
        sum = add(sum, u32::from(u16::from_be_bytes(*word)));
    }
    sum
}

/// Sum of the TCP pseudo-header of the IP header at `l3`: addresses, protocol
/// and `tcp_bytes` (header and payload). `None` if the addresses leave the
/// array.
#[inline(always)]
pub(super) fn pseudo_header(
    buf: &[u8; HEADER_BYTES],
    l3: usize,
    ipv6: bool,
    tcp_bytes: u32,
) -> Option<u32> {
    // Source and destination end the fixed header in both IP versions.
    let addresses = if ipv6 {
        const AT: usize = offset_of!(Ipv6Hdr, src_addr);
        sum_words(buf, l3.checked_add(AT)?, Ipv6Hdr::LEN - AT)?
    } else {
        const AT: usize = offset_of!(Ipv4Hdr, src_addr);
        sum_words(buf, l3.checked_add(AT)?, Ipv4Hdr::LEN - AT)?
    };
    // The zero-padded protocol is one word, the length another (IPv6's is 32
    // bits: 2^16 is 1 in ones' complement, so adding it whole is the same).
    let protocol = u32::from(IpProto::Tcp as u8);
    Some(add(addresses, add(protocol, tcp_bytes)))
}

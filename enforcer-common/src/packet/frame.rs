//! Checked access to the copied header bytes at offsets taken from the packet.
//!
//! Every offset the parser uses (VLAN tags, IHL, extension headers, data offset) is
//! read from the packet, so the verifier sees an unknown scalar. Each access here is
//! bounded by a comparison the verifier can follow and fails as `None`, never as a
//! panic: there is no `[]` on a runtime index and no arithmetic that can overflow.
//!
//! The verifier bounds a pointer by what it knew of the offset when the pointer was
//! formed; a later, tighter check on the offset does not narrow a pointer already
//! derived from it. Left to itself, LLVM forms `buf + l4` at the first read (where
//! only `l4 < 192` may be known) and reuses it for every read further on, which the
//! verifier then rejects as possibly past the buffer ("invalid variable-offset read
//! from stack"). Hence two rules:
//! - A header's fixed part is read as one [`Window`]: one check of the whole extent
//!   against the array, on the offset itself, before any byte at that offset is
//!   read; the fields are then taken from the window at constant offsets.
//! - An offset computed from another header's offset, with a range too wide for
//!   the buffer (IPv6 extension headers, the ICMPv6 quote), passes through
//!   [`fresh`] first, so that LLVM cannot reach it through the earlier pointer.

use super::HEADER_BYTES;
use crate::dest::DestKey;

/// The `N` bytes at `at`, if they lie inside the array.
#[inline(always)]
pub(super) fn read<const N: usize>(buf: &[u8; HEADER_BYTES], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    let bytes: &[u8; N] = buf.get(at..end)?.try_into().ok()?;
    Some(*bytes)
}

/// Overwrites the `N` bytes at `at`; `None` (and nothing written) if they do not lie
/// inside the array.
#[inline(always)]
pub(super) fn write<const N: usize>(
    buf: &mut [u8; HEADER_BYTES],
    at: usize,
    value: [u8; N],
) -> Option<()> {
    let end = at.checked_add(N)?;
    let bytes: &mut [u8; N] = buf.get_mut(at..end)?.try_into().ok()?;
    *bytes = value;
    Some(())
}

/// `at`, opaque to the optimizer: the next window at `at` gets its own comparison
/// and its own pointer instead of an offset from an earlier header's pointer. Costs
/// one stack slot and a spill and reload, which the verifier tracks exactly.
#[inline(always)]
pub(super) fn fresh(at: usize) -> usize {
    core::hint::black_box(at)
}

/// The bytes a program copied from a frame: only the first `len` are the packet's.
#[derive(Clone, Copy)]
pub(super) struct Copied<'a> {
    buf: &'a [u8; HEADER_BYTES],
    len: usize,
}

impl<'a> Copied<'a> {
    #[inline(always)]
    pub(super) fn new(buf: &'a [u8; HEADER_BYTES], len: usize) -> Self {
        let len = if len < HEADER_BYTES {
            len
        } else {
            HEADER_BYTES
        };
        Self { buf, len }
    }

    /// Whether the copy stopped at [`HEADER_BYTES`], so the packet may go on beyond it.
    #[inline(always)]
    pub(super) fn is_capped(&self) -> bool {
        self.len == HEADER_BYTES
    }

    /// Whether the `n` bytes at `at` were copied.
    #[inline(always)]
    pub(super) fn has(&self, at: usize, n: usize) -> bool {
        matches!(at.checked_add(n), Some(end) if end <= self.len)
    }

    /// The `W` copied bytes at `at`: the fixed part of one header.
    #[inline(always)]
    pub(super) fn window<const W: usize>(&self, at: usize) -> Option<Window<W>> {
        const { assert!(W <= HEADER_BYTES) };
        if !self.has(at, W) {
            return None;
        }
        // Against the array, with a constant, on `at` itself: the comparison the
        // verifier bounds the window's pointer by. Through `fresh`, or LLVM folds
        // it into the check above (the copy is never longer than the array) and
        // forms the pointer from a spilled copy of `at` that the check never
        // narrowed: kernels before about 6.10 do not carry a bound across
        // `at + W`, and reject the read.
        let at = fresh(at);
        if at > HEADER_BYTES - W {
            return None;
        }
        read(self.buf, at).map(Window)
    }

    /// The network-order `u16` at `at`, in host order.
    #[inline(always)]
    pub(super) fn u16(&self, at: usize) -> Option<u16> {
        self.window::<2>(at)?.u16(0)
    }
}

/// The fixed part of one header, copied out of the frame; fields are read from it
/// at constant offsets, so these checks fold away.
pub(super) struct Window<const W: usize>([u8; W]);

impl<const W: usize> Window<W> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let end = at.checked_add(N)?;
        let bytes: &[u8; N] = self.0.get(at..end)?.try_into().ok()?;
        Some(*bytes)
    }

    #[inline(always)]
    pub(super) fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }

    /// The network-order `u16` at `at`, in host order.
    #[inline(always)]
    pub(super) fn u16(&self, at: usize) -> Option<u16> {
        self.bytes(at).map(u16::from_be_bytes)
    }

    /// The network-order `u32` at `at`, in host order.
    #[inline(always)]
    pub(super) fn u32(&self, at: usize) -> Option<u32> {
        self.bytes(at).map(u32::from_be_bytes)
    }

    /// The IPv4 address at `at`, v4-mapped, in [`DestKey::addr`]'s layout.
    #[inline(always)]
    pub(super) fn ipv4_addr(&self, at: usize) -> Option<[u32; 4]> {
        let raw = u32::from_ne_bytes(self.bytes(at)?);
        Some(DestKey::from_ipv4_raw(raw, 0).addr)
    }

    /// The IPv6 address at `at`, in [`DestKey::addr`]'s layout.
    #[inline(always)]
    pub(super) fn ipv6_addr(&self, at: usize) -> Option<[u32; 4]> {
        self.bytes(at).map(address_words)
    }
}

/// 16 network-order address bytes as the four native-endian words of
/// [`DestKey::addr`] (constant indices only, so no bounds check is emitted).
#[inline(always)]
fn address_words(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

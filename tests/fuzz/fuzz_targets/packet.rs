//! The packet plane's pure code as the TC/XDP programs run it: `parse` over the
//! bytes a program copies from a frame, then `vet_syn` and `rst_reply` over what
//! it parsed, and `reverse_path`.
//!
//! The input is a frame as it arrives (Ethernet header first). Like a program,
//! the target copies its first `min(len, HEADER_BYTES)` bytes into a zeroed
//! array and passes the frame's length. The functions take the whole array,
//! so a read past the frame would not panic: it would read the zeros. So every
//! call is made twice, once over a copy whose bytes beyond the frame are all
//! ones instead, and must answer the same. Asserted besides:
//! - a TCP segment's headers lie inside the copied bytes, where its IP length
//!   field says;
//! - a reply is crafted exactly for a plain SYN without RST or payload (so
//!   never for a non-SYN); it lies inside the frame, leaves the bytes after it
//!   alone, its IPv4 header and TCP checksums verify by the sum in this file
//!   (not the crate's), its `diff` updates the SYN's checksum to the same
//!   value the kernel's way, and it parses back as the RST;
//! - `vet_syn` calls a SYN deliverable only if those checksums verify;
//! - offsets taken from a `Segment` are checked where they are used: with a
//!   layout made of input bytes instead of `parse`'s, `rst_reply` writes only
//!   inside the headers it reports, with valid checksums, or nothing.
#![no_main]

use enforcer_common::packet::{
    HEADER_BYTES, Layout, Parsed, ReversePath, Segment, Vetted, fib_result, parse, reverse_path,
    rst_reply, tcp_flags, vet_syn,
};
use enforcer_fuzz::ones_sum;
use libfuzzer_sys::fuzz_target;

const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_CHECKSUM: usize = 16;
const PROTO_TCP: u8 = 6;

fuzz_target!(|frame: &[u8]| {
    let zeroed = copy(frame, 0x00);
    let poisoned = copy(frame, 0xff);
    let len = frame.len();
    let parsed = parse(&zeroed, len);
    assert_eq!(parsed, parse(&poisoned, len), "parse read past the frame");
    if let Parsed::Tcp(segment) = parsed {
        check_layout(&zeroed, len, &segment.layout, segment.payload_len);
        check_vet(&zeroed, &poisoned, len, &segment);
        check_reply(&zeroed, &poisoned, len, &segment);
    }
    if let Some(stray) = stray_segment(frame, parsed) {
        check_stray_reply(&zeroed, &stray);
        // Only that it does not panic: a stray layout may point past the frame.
        vet_syn(&zeroed, len, &stray);
    }
    check_reverse_path(frame);
});

/// What a program copies from `frame`, with `fill` beyond it.
fn copy(frame: &[u8], fill: u8) -> [u8; HEADER_BYTES] {
    let mut buf = [fill; HEADER_BYTES];
    let n = frame.len().min(HEADER_BYTES);
    buf[..n].copy_from_slice(&frame[..n]);
    buf
}

fn ip_header_len(ipv6: bool) -> usize {
    if ipv6 { IPV6_LEN } else { IPV4_LEN }
}

fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// The headers of a parsed segment lie inside the copy, and its payload ends
/// where the IP length field says the packet does.
fn check_layout(buf: &[u8; HEADER_BYTES], len: usize, layout: &Layout, payload_len: u32) {
    let (l3, l4, tcp_len) = (
        usize::from(layout.l3),
        usize::from(layout.l4),
        usize::from(layout.tcp_len),
    );
    assert!([14, 18, 22].contains(&l3), "{layout:?}");
    let ip_len = ip_header_len(layout.ipv6);
    assert!(l4 >= l3 + ip_len, "{layout:?}");
    assert!(!layout.plain || l4 == l3 + ip_len, "{layout:?}");
    assert!(
        (20..=60).contains(&tcp_len) && tcp_len.is_multiple_of(4),
        "{layout:?}"
    );
    assert!(
        l4 + tcp_len <= len.min(HEADER_BYTES),
        "{layout:?} in {len} bytes"
    );
    let ip_end = if layout.ipv6 {
        l3 + IPV6_LEN + usize::from(be16(buf, l3 + 4))
    } else {
        l3 + usize::from(be16(buf, l3 + 2))
    };
    assert_eq!(l4 + tcp_len + payload_len as usize, ip_end, "{layout:?}");
}

fn check_vet(
    zeroed: &[u8; HEADER_BYTES],
    poisoned: &[u8; HEADER_BYTES],
    len: usize,
    syn: &Segment,
) {
    let vetted = vet_syn(zeroed, len, syn);
    assert_eq!(
        vetted,
        vet_syn(poisoned, len, syn),
        "vet_syn read past the frame"
    );
    let layout = &syn.layout;
    match vetted {
        Vetted::Unverifiable if !layout.plain => {}
        _ if !layout.plain => panic!("{vetted:?} for a layout that is not plain"),
        Vetted::HopLimitExpiring => assert!(syn.hop_limit <= 1),
        _ if syn.hop_limit <= 1 => panic!("{vetted:?} with hop limit {}", syn.hop_limit),
        Vetted::Deliverable => {
            let end =
                usize::from(layout.l4) + usize::from(layout.tcp_len) + syn.payload_len as usize;
            assert!(end <= len.min(HEADER_BYTES), "deliverable past the copy");
            assert!(
                checksums_verify(zeroed, layout, end),
                "deliverable, bad checksum"
            );
        }
        Vetted::ChecksumOffloaded | Vetted::Corrupt | Vetted::Unverifiable => {}
    }
}

/// Crafts the reply over both copies; they must agree, and the reply must be
/// a valid RST answering `syn`, crafted exactly when `syn` is answerable.
fn check_reply(
    zeroed: &[u8; HEADER_BYTES],
    poisoned: &[u8; HEADER_BYTES],
    len: usize,
    syn: &Segment,
) {
    let (mut crafted, mut crafted_poisoned) = (*zeroed, *poisoned);
    let reply = rst_reply(&mut crafted, syn);
    let reply_poisoned = rst_reply(&mut crafted_poisoned, syn);
    assert_eq!(reply, reply_poisoned, "rst_reply read past the frame");
    let answerable = syn.layout.plain
        && syn.flags & tcp_flags::SYN != 0
        && syn.flags & tcp_flags::RST == 0
        && syn.payload_len == 0;
    let Some(reply) = reply else {
        assert!(!answerable, "no reply to an answerable SYN: {syn:?}");
        assert_eq!(crafted, *zeroed, "refused, but the frame was changed");
        return;
    };
    assert!(answerable, "a reply to {syn:?}");
    assert!(reply.len <= len.min(HEADER_BYTES), "reply past the frame");
    assert_eq!(crafted[..reply.len], crafted_poisoned[..reply.len]);
    assert_eq!(crafted_poisoned[reply.len..], poisoned[reply.len..]);
    check_rst(zeroed, &crafted, &syn.layout, &reply);
    match parse(&crafted, reply.len) {
        Parsed::Tcp(rst) => {
            assert_eq!((rst.src, rst.dst), (syn.dst, syn.src));
            assert_eq!((rst.sport, rst.dport), (syn.dport, syn.sport));
            assert_eq!(rst.payload_len, 0);
            assert_eq!(rst.layout, syn.layout);
        }
        other => panic!("the reply parses as {other:?}"),
    }
}

/// What holds of any reply, whatever layout it was crafted for: it lies
/// inside the array, nothing after it changed, it is a RST (not a SYN) with
/// valid checksums, and its `diff` is what the kernel needs.
fn check_rst(
    before: &[u8; HEADER_BYTES],
    crafted: &[u8; HEADER_BYTES],
    layout: &Layout,
    reply: &enforcer_common::packet::Reply,
) {
    let l4 = usize::from(layout.l4);
    assert_eq!(reply.len, l4 + usize::from(layout.tcp_len), "{layout:?}");
    assert!(reply.len <= HEADER_BYTES);
    assert_eq!(reply.csum_at, l4 + TCP_CHECKSUM);
    assert_eq!(
        crafted[reply.len..],
        before[reply.len..],
        "written past the reply"
    );
    let flags = crafted[l4 + 13];
    assert!(
        flags & tcp_flags::RST != 0 && flags & tcp_flags::SYN == 0,
        "flags {flags:#x}"
    );
    assert!(
        checksums_verify(crafted, layout, reply.len),
        "RST with a bad checksum"
    );
    assert_eq!(reply.old_csum, before[reply.csum_at..reply.csum_at + 2]);
    // The kernel updates the checksum the SYN carried, so the update comes out
    // right only over a SYN whose checksum was right.
    if tcp_checksum_verifies(before, layout, reply.len) {
        let updated = kernel_replace_by_diff(reply.old_csum, reply.diff);
        assert_eq!(updated, crafted[reply.csum_at..reply.csum_at + 2], "diff");
    }
}

/// Replies over a layout made of input bytes: crafted only for offsets that
/// stay inside the array, and then as valid as any.
fn check_stray_reply(frame: &[u8; HEADER_BYTES], stray: &Segment) {
    let mut crafted = *frame;
    match rst_reply(&mut crafted, stray) {
        Some(reply) => {
            assert!(stray.flags & tcp_flags::SYN != 0, "a reply to a non-SYN");
            check_rst(frame, &crafted, &stray.layout, &reply);
        }
        None => assert_eq!(crafted, *frame, "refused, but the frame was changed"),
    }
}

/// The parsed segment (or an empty one) with layout and flags taken from the
/// frame's first five bytes, which the parser reads only as a MAC address.
fn stray_segment(frame: &[u8], parsed: Parsed) -> Option<Segment> {
    let [l3, l4, tcp_len, bits, flags, ..] = *frame else {
        return None;
    };
    let base = match parsed {
        Parsed::Tcp(segment) => segment,
        _ => Segment::default(),
    };
    Some(Segment {
        flags,
        layout: Layout {
            l3: l3.into(),
            l4: l4.into(),
            tcp_len: tcp_len.into(),
            ipv6: bits & 1 != 0,
            plain: bits & 2 != 0,
        },
        ..base
    })
}

/// Whether the IPv4 header (if any) and the TCP segment in `l4..end` of
/// `buf` carry valid checksums.
fn checksums_verify(buf: &[u8; HEADER_BYTES], layout: &Layout, end: usize) -> bool {
    let l3 = usize::from(layout.l3);
    let ip_ok = layout.ipv6 || ones_sum(&[&buf[l3..l3 + IPV4_LEN]]) == 0xffff;
    ip_ok && tcp_checksum_verifies(buf, layout, end)
}

/// Whether the TCP segment in `l4..end` of `buf` carries a valid checksum.
fn tcp_checksum_verifies(buf: &[u8; HEADER_BYTES], layout: &Layout, end: usize) -> bool {
    let (l3, l4) = (usize::from(layout.l3), usize::from(layout.l4));
    let segment = &buf[l4..end];
    let tcp_bytes = segment.len();
    let pseudo: Vec<u8> = if layout.ipv6 {
        let addresses = &buf[l3 + 8..l3 + 40];
        [
            addresses,
            &(tcp_bytes as u32).to_be_bytes(),
            &[0, 0, 0, PROTO_TCP],
        ]
        .concat()
    } else {
        let addresses = &buf[l3 + 12..l3 + 20];
        [
            addresses,
            &[0, PROTO_TCP],
            &(tcp_bytes as u16).to_be_bytes(),
        ]
        .concat()
    };
    ones_sum(&[&pseudo, segment]) == 0xffff
}

/// The kernel's `inet_proto_csum_replace_by_diff` on a packet that is not
/// `CHECKSUM_PARTIAL`, over the field as it lies in memory.
fn kernel_replace_by_diff(field: [u8; 2], diff: u32) -> [u8; 2] {
    let (sum, carry) = diff.overflowing_add(!u32::from(u16::from_ne_bytes(field)));
    let sum = sum.wrapping_add(u32::from(carry));
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_ne_bytes()
}

/// `reverse_path` over small interface indices (so that they collide) and
/// every helper result: a SYN is routed back only when the route goes out
/// where it came in, spoofed only on a definite answer, else unknown.
fn check_reverse_path(frame: &[u8]) {
    let [.., ingress, master, rc, egress] = *frame else {
        return;
    };
    let (ingress, master, egress) = (
        u32::from(ingress % 4),
        u32::from(master % 4),
        u32::from(egress % 4),
    );
    let rc = i64::from(rc % 12) - 2;
    let verdict = reverse_path(ingress, master, rc, egress);
    let forwarded = matches!(rc, fib_result::SUCCESS | fib_result::NO_NEIGH);
    let no_route = matches!(
        rc,
        fib_result::BLACKHOLE
            | fib_result::UNREACHABLE
            | fib_result::PROHIBIT
            | fib_result::NOT_FWDED
    );
    let back = egress == ingress || (master != 0 && egress == master);
    let expected = if ingress <= 1 {
        ReversePath::Unknown
    } else if forwarded && back {
        ReversePath::Back
    } else if (forwarded && egress != 0) || no_route {
        ReversePath::Elsewhere
    } else {
        ReversePath::Unknown
    };
    assert_eq!(
        verdict, expected,
        "ingress {ingress} master {master} rc {rc} egress {egress}"
    );
}

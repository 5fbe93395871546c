//! Host tests of the parser, over frames built by hand in `build`; the RST tests
//! are in `rst`.

mod build;
mod route;
mod rst;
mod verify;

use std::vec::Vec;

use build::*;
use proptest::prelude::*;

use super::*;
use tcp_flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN};

#[test]
fn ipv4_syn() {
    let segment = build::segment(&v4_tcp(&Tcp::syn()));
    assert_eq!(
        segment,
        Segment {
            src: v4_words(CLIENT_V4),
            dst: v4_words(SERVER_V4),
            sport: CLIENT_PORT,
            dport: SERVER_PORT,
            seq: ISN,
            ack: 0,
            flags: SYN,
            payload_len: 0,
            hop_limit: 63,
            layout: Layout {
                l3: 14,
                l4: 34,
                tcp_len: 40,
                ipv6: false,
                plain: true,
            },
        }
    );
}

#[test]
fn ipv6_syn() {
    let segment = build::segment(&v6_tcp(&Tcp::syn()));
    assert_eq!(
        segment,
        Segment {
            src: v6_words(CLIENT_V6),
            dst: v6_words(SERVER_V6),
            sport: CLIENT_PORT,
            dport: SERVER_PORT,
            seq: ISN,
            ack: 0,
            flags: SYN,
            payload_len: 0,
            hop_limit: 63,
            layout: Layout {
                l3: 14,
                l4: 54,
                tcp_len: 40,
                ipv6: true,
                plain: true,
            },
        }
    );
}

#[test]
fn flags_and_ack_are_reported_as_sent() {
    for flags in [
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        PSH | ACK,
        SYN | ECE | CWR,
    ] {
        let mut tcp = Tcp::syn().flags(flags);
        tcp.ack = 0xfeed_f00d;
        for frame in [v4_tcp(&tcp), v6_tcp(&tcp)] {
            let segment = build::segment(&frame);
            assert_eq!(segment.flags, flags);
            assert_eq!(segment.ack, 0xfeed_f00d);
        }
    }
}

#[test]
fn vlan_tags_move_the_ip_header() {
    let ip = V4::tcp().packet(&Tcp::syn().bytes());
    let cases: [(&[u16], u16); 3] = [
        (&[ethertype::VLAN], 18),
        (&[ethertype::QINQ, ethertype::VLAN], 22),
        (&[ethertype::VLAN, ethertype::VLAN], 22),
    ];
    for (tpids, l3) in cases {
        let segment = build::segment(&ethernet(tpids, ethertype::IPV4, &ip));
        assert_eq!(segment.layout.l3, l3, "{tpids:x?}");
        assert_eq!(segment.layout.l4, l3 + 20);
        assert_eq!(segment.sport, CLIENT_PORT);
    }
    let v6 = ethernet(
        &[ethertype::QINQ, ethertype::VLAN],
        ethertype::IPV6,
        &V6::tcp().packet(&Tcp::syn().bytes()),
    );
    assert_eq!(build::segment(&v6).layout.l4, 22 + 40);
}

#[test]
fn a_third_vlan_tag_is_other() {
    let ip = V4::tcp().packet(&Tcp::syn().bytes());
    let tpids = [ethertype::QINQ, ethertype::VLAN, ethertype::VLAN];
    assert_eq!(
        parse_frame(&ethernet(&tpids, ethertype::IPV4, &ip)),
        Parsed::Other
    );
}

#[test]
fn ipv6_extension_headers_before_tcp_are_walked() {
    let chains: [(u8, Vec<u8>); 3] = [
        (
            protocol::HOP_BY_HOP,
            [
                ext_header(protocol::DEST_OPTIONS, 0),
                ext_header(protocol::TCP, 1),
            ]
            .concat(),
        ),
        (protocol::ROUTING, ext_header(protocol::TCP, 2)),
        (
            protocol::HOP_BY_HOP,
            [
                ext_header(protocol::DEST_OPTIONS, 0),
                ext_header(protocol::ROUTING, 0),
                ext_header(protocol::DEST_OPTIONS, 0),
                ext_header(protocol::TCP, 0),
            ]
            .concat(),
        ),
    ];
    for (first, chain) in chains {
        let tcp = Tcp::syn().bytes();
        let ip = V6::tcp()
            .next_header(first)
            .packet(&[&chain[..], &tcp].concat());
        let segment = build::segment(&ethernet(&[], ethertype::IPV6, &ip));
        assert_eq!(segment.layout.l4 as usize, ETH_LEN + IPV6_LEN + chain.len());
        assert_eq!(segment.layout.tcp_len, 40);
        assert!(segment.layout.ipv6 && !segment.layout.plain);
        assert_eq!(
            (segment.sport, segment.seq, segment.payload_len),
            (CLIENT_PORT, ISN, 0)
        );
    }
}

#[test]
fn more_than_four_ipv6_extension_headers_are_other() {
    let chain = [
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::TCP, 0),
    ]
    .concat();
    let payload = [&chain[..], &Tcp::syn().bytes()].concat();
    let ip = V6::tcp().next_header(protocol::HOP_BY_HOP).packet(&payload);
    assert_eq!(
        parse_frame(&ethernet(&[], ethertype::IPV6, &ip)),
        Parsed::Other
    );
}

#[test]
fn ipv6_fragment_header_is_a_fragment() {
    let tcp = Tcp::syn().bytes();
    let direct = V6::tcp()
        .next_header(protocol::FRAGMENT)
        .packet(&[&fragment_header(protocol::TCP)[..], &tcp].concat());
    let after_hop_by_hop = V6::tcp().next_header(protocol::HOP_BY_HOP).packet(
        &[
            ext_header(protocol::FRAGMENT, 0),
            fragment_header(protocol::TCP),
            tcp,
        ]
        .concat(),
    );
    for ip in [direct, after_hop_by_hop] {
        assert_eq!(
            parse_frame(&ethernet(&[], ethertype::IPV6, &ip)),
            Parsed::Fragment
        );
    }
}

#[test]
fn ipv4_fragments() {
    let tcp = Tcp::syn().bytes();
    let first_of_many = V4 {
        frag: 0x2000,
        ..V4::tcp()
    };
    let later = V4 {
        frag: 0x0010,
        ..V4::tcp()
    };
    let last_with_df_bit = V4 {
        frag: 0x4001,
        ..V4::tcp()
    };
    let udp = V4 {
        frag: 0x2000,
        ..V4::tcp().protocol(protocol::UDP)
    };
    for ip in [first_of_many, later, last_with_df_bit, udp] {
        let frame = ethernet(&[], ethertype::IPV4, &ip.packet(&tcp));
        assert_eq!(
            parse_frame(&frame),
            Parsed::Fragment,
            "frag {:#06x}",
            ip.frag
        );
    }
    // DF alone is not a fragment.
    let df_only = V4 {
        frag: 0x4000,
        ..V4::tcp()
    };
    build::segment(&ethernet(&[], ethertype::IPV4, &df_only.packet(&tcp)));
}

#[test]
fn ipv4_options_are_skipped_and_not_plain() {
    let router_alert_and_nops = [0x94, 4, 0, 0, 1, 1, 1, 0];
    let ip = V4 {
        options: router_alert_and_nops.to_vec(),
        ..V4::tcp()
    };
    let segment = build::segment(&ethernet(
        &[],
        ethertype::IPV4,
        &ip.packet(&Tcp::syn().bytes()),
    ));
    assert_eq!(segment.layout.l4 as usize, ETH_LEN + 28);
    assert!(!segment.layout.plain);
    assert_eq!(
        (segment.sport, segment.dport, segment.seq),
        (CLIENT_PORT, SERVER_PORT, ISN)
    );
}

fn quoted_syn_v4() -> Quoted {
    Quoted {
        src: v4_words(CLIENT_V4),
        dst: v4_words(SERVER_V4),
        sport: CLIENT_PORT,
        dport: SERVER_PORT,
        seq: ISN,
    }
}

fn quoted_syn_v6() -> Quoted {
    Quoted {
        src: v6_words(CLIENT_V6),
        dst: v6_words(SERVER_V6),
        ..quoted_syn_v4()
    }
}

#[test]
fn icmpv4_unreachable_quotes_the_syn() {
    const HOST_UNREACHABLE: u8 = 1;
    const PORT_UNREACHABLE: u8 = 3;
    const ADMIN_PROHIBITED: u8 = 13;
    for code in [HOST_UNREACHABLE, PORT_UNREACHABLE, ADMIN_PROHIBITED] {
        let parsed = parse_frame(&icmpv4_unreachable(code));
        assert_eq!(parsed, Parsed::Unreachable(quoted_syn_v4()), "code {code}");
    }
}

#[test]
fn icmpv4_quote_cut_to_eight_tcp_bytes_is_enough() {
    let syn = V4::tcp().packet(&Tcp::syn().bytes());
    let frame = icmpv4_error(3, 1, &syn[..IPV4_LEN + 8]);
    assert_eq!(parse_frame(&frame), Parsed::Unreachable(quoted_syn_v4()));
}

#[test]
fn icmpv4_quote_with_ip_options_is_skipped() {
    let quoted_ip = V4 {
        options: [1, 1, 1, 0].to_vec(),
        ..V4::tcp()
    };
    let frame = icmpv4_error(3, 3, &quoted_ip.packet(&Tcp::syn().bytes()));
    assert_eq!(parse_frame(&frame), Parsed::Unreachable(quoted_syn_v4()));
}

#[test]
fn other_icmpv4_is_other() {
    let syn = V4::tcp().packet(&Tcp::syn().bytes());
    const FRAG_NEEDED: (u8, u8) = (3, 4);
    const TIME_EXCEEDED: (u8, u8) = (11, 0);
    const ECHO_REPLY: (u8, u8) = (0, 0);
    for (kind, code) in [FRAG_NEEDED, TIME_EXCEEDED, ECHO_REPLY] {
        assert_eq!(parse_frame(&icmpv4_error(kind, code, &syn)), Parsed::Other);
    }
    let udp = V4::tcp().protocol(protocol::UDP).packet(&[0; 8]);
    assert_eq!(parse_frame(&icmpv4_error(3, 3, &udp)), Parsed::Other);
    let later_fragment = V4 {
        frag: 0x0010,
        ..V4::tcp()
    }
    .packet(&[0; 8]);
    assert_eq!(
        parse_frame(&icmpv4_error(3, 3, &later_fragment)),
        Parsed::Other
    );
}

#[test]
fn icmp_error_too_short_to_quote_the_sequence_number_is_malformed() {
    let syn = V4::tcp().packet(&Tcp::syn().bytes());
    let frame = icmpv4_error(3, 3, &syn[..IPV4_LEN + 7]);
    assert_eq!(parse_frame(&frame), Parsed::Malformed);
    // Present in the frame (Ethernet padding) but outside the outer IP length.
    let mut padded = frame.clone();
    padded.extend(&syn[IPV4_LEN + 7..IPV4_LEN + 8]);
    assert_eq!(parse_frame(&padded), Parsed::Malformed);
}

#[test]
fn icmpv4_quote_with_a_bad_ip_header_is_malformed() {
    let syn = V4::tcp().packet(&Tcp::syn().bytes());
    for (what, version_ihl) in [("version 6", 0x65), ("IHL 4", 0x44)] {
        let frame = icmpv4_error(3, 3, &patched(syn.clone(), 0, version_ihl));
        assert_eq!(parse_frame(&frame), Parsed::Malformed, "{what}");
    }
}

#[test]
fn icmpv6_unreachable_quotes_the_syn() {
    for code in [0, 1, 3, 4] {
        let parsed = parse_frame(&icmpv6_unreachable(code));
        assert_eq!(parsed, Parsed::Unreachable(quoted_syn_v6()), "code {code}");
    }
    let syn = V6::tcp().packet(&Tcp::syn().bytes());
    let cut = icmpv6_error(1, 4, &syn[..IPV6_LEN + 8]);
    assert_eq!(parse_frame(&cut), Parsed::Unreachable(quoted_syn_v6()));
}

#[test]
fn other_icmpv6_is_other() {
    let syn = V6::tcp().packet(&Tcp::syn().bytes());
    const PACKET_TOO_BIG: u8 = 2;
    const ECHO_REQUEST: u8 = 128;
    for kind in [PACKET_TOO_BIG, ECHO_REQUEST] {
        assert_eq!(parse_frame(&icmpv6_error(kind, 0, &syn)), Parsed::Other);
    }
    let udp = V6::tcp().next_header(protocol::UDP).packet(&[0; 8]);
    assert_eq!(parse_frame(&icmpv6_error(1, 4, &udp)), Parsed::Other);
    let too_short = icmpv6_error(1, 4, &syn[..IPV6_LEN + 4]);
    assert_eq!(parse_frame(&too_short), Parsed::Malformed);
    let wrong_version = icmpv6_error(1, 4, &patched(syn.clone(), 0, 0x40));
    assert_eq!(parse_frame(&wrong_version), Parsed::Malformed);
}

#[test]
fn arp_and_udp_are_other() {
    let arp_request = [
        &[0, 1, 8, 0, 6, 4, 0, 1][..],
        &MAC_CLIENT,
        &CLIENT_V4,
        &[0; 6],
        &SERVER_V4,
    ]
    .concat();
    assert_eq!(
        parse_frame(&ethernet(&[], ethertype::ARP, &arp_request)),
        Parsed::Other
    );
    let udp = [0x9c, 0x40, 0, 53, 0, 8, 0, 0];
    let v4 = V4::tcp().protocol(protocol::UDP).packet(&udp);
    let v6 = V6::tcp().next_header(protocol::UDP).packet(&udp);
    assert_eq!(
        parse_frame(&ethernet(&[], ethertype::IPV4, &v4)),
        Parsed::Other
    );
    assert_eq!(
        parse_frame(&ethernet(&[], ethertype::IPV6, &v6)),
        Parsed::Other
    );
}

/// Cut `frame` at every length: the copy is then the whole (short) packet, and
/// every byte of `frame` is needed, so the result must be `Malformed`, whether the bytes beyond `len` are zero (as copied)
/// or still hold the rest of the frame (parse must not look at them).
#[track_caller]
fn assert_every_truncation_is_malformed(frame: &[u8]) {
    assert!(frame.len() < HEADER_BYTES);
    let (whole, _) = copy(frame);
    for len in 0..frame.len() {
        let (zeroed, _) = copy(&frame[..len]);
        assert_eq!(parse(&zeroed, len), Parsed::Malformed, "cut at {len}");
        assert_eq!(
            parse(&whole, len),
            Parsed::Malformed,
            "cut at {len}, rest left"
        );
    }
    assert_ne!(parse(&whole, frame.len()), Parsed::Malformed);
}

#[test]
fn every_truncation_is_malformed() {
    let qinq = [ethertype::QINQ, ethertype::VLAN];
    let v4_in_qinq = ethernet(
        &qinq,
        ethertype::IPV4,
        &V4::tcp().packet(&Tcp::syn().bytes()),
    );
    // Routers quote the IP header and the 8 bytes after it, all the parser needs.
    let syn_v4 = V4::tcp().packet(&Tcp::syn().bytes());
    let router_quote_v4 = icmpv4_error(3, 1, &syn_v4[..IPV4_LEN + 8]);
    let syn_v6 = V6::tcp().packet(&Tcp::syn().bytes());
    let router_quote_v6 = icmpv6_error(1, 3, &syn_v6[..IPV6_LEN + 8]);
    let frames = [
        v4_tcp(&Tcp::syn()),
        v6_tcp(&Tcp::syn()),
        v4_in_qinq,
        router_quote_v4,
        router_quote_v6,
    ];
    for frame in frames {
        assert_every_truncation_is_malformed(&frame);
    }
}

/// `frame` with the byte at `at` replaced.
fn patched(mut frame: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    frame[at] = value;
    frame
}

#[test]
fn invalid_headers_are_malformed() {
    let v4 = v4_tcp(&Tcp::syn());
    let v6 = v6_tcp(&Tcp::syn());
    let v4_tcp_at = ETH_LEN + IPV4_LEN;
    let v6_tcp_at = ETH_LEN + IPV6_LEN;
    let cases = [
        ("IHL 4", patched(v4.clone(), ETH_LEN, 0x44)),
        ("IPv4 version 6", patched(v4.clone(), ETH_LEN, 0x65)),
        ("IPv6 version 4", patched(v6.clone(), ETH_LEN, 0x40)),
        ("total length 19", patched(v4.clone(), ETH_LEN + 3, 19)),
        (
            "total length 30: TCP past it",
            patched(v4.clone(), ETH_LEN + 3, 30),
        ),
        (
            "payload length 30: TCP past it",
            patched(v6.clone(), ETH_LEN + 5, 30),
        ),
        ("doff 4", patched(v4.clone(), v4_tcp_at + 12, 0x40)),
        ("doff 0", patched(v6.clone(), v6_tcp_at + 12, 0x00)),
        (
            "doff 15 past the frame",
            patched(v4.clone(), v4_tcp_at + 12, 0xf0),
        ),
    ];
    for (what, frame) in cases {
        assert_eq!(parse_frame(&frame), Parsed::Malformed, "{what}");
    }
}

#[test]
fn ipv6_extension_headers_longer_than_the_payload_are_malformed() {
    let ip = V6::tcp()
        .next_header(protocol::HOP_BY_HOP)
        .packet(&[ext_header(protocol::TCP, 0), Tcp::syn().bytes()].concat());
    let frame = ethernet(&[], ethertype::IPV6, &ip);
    let payload_len_low_byte = ETH_LEN + 5;
    assert_eq!(
        parse_frame(&patched(frame, payload_len_low_byte, 4)),
        Parsed::Malformed
    );
}

#[test]
fn payload_len_comes_from_the_ip_length() {
    let mut with_data = Tcp::syn().flags(PSH | ACK);
    with_data.payload = (0..100).collect();
    assert_eq!(build::segment(&v4_tcp(&with_data)).payload_len, 100);
    assert_eq!(build::segment(&v6_tcp(&with_data)).payload_len, 100);

    // Ethernet pads a bare ACK to 60 bytes: padding is not payload.
    let mut bare_ack = Tcp::syn().flags(ACK);
    bare_ack.options.clear();
    let mut padded = v4_tcp(&bare_ack);
    assert_eq!(padded.len(), 54);
    padded.resize(60, 0);
    assert_eq!(build::segment(&padded).payload_len, 0);

    // A full-sized segment is copied only in part.
    let mut full_sized = Tcp::syn().flags(PSH | ACK);
    full_sized.payload = [0xab; 1400].to_vec();
    let segment = build::segment(&v6_tcp(&full_sized));
    assert_eq!(segment.payload_len, 1400);
}

#[test]
fn headers_deeper_than_the_copy_are_other_only_when_the_copy_is_capped() {
    let huge_hop_by_hop = ext_header(protocol::TCP, 255);
    let payload = [huge_hop_by_hop, Tcp::syn().bytes()].concat();
    let ip = V6::tcp().next_header(protocol::HOP_BY_HOP).packet(&payload);
    let frame = ethernet(&[], ethertype::IPV6, &ip);
    let (buf, len) = copy(&frame);
    assert_eq!(len, HEADER_BYTES);
    assert_eq!(parse(&buf, len), Parsed::Other);
    // The same bytes as a whole packet: shorter than its own headers.
    assert_eq!(parse(&buf, HEADER_BYTES - 1), Parsed::Malformed);
    // A `len` above HEADER_BYTES is read as HEADER_BYTES.
    assert_eq!(parse(&buf, usize::MAX), Parsed::Other);
}

/// Frames that reach every branch, for the property tests to mutate.
fn sample_frames() -> Vec<Vec<u8>> {
    let mut with_data = Tcp::syn().flags(PSH | ACK);
    with_data.payload = [7; 64].to_vec();
    let ext = [
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::TCP, 1),
        Tcp::syn().bytes(),
    ]
    .concat();
    let v6_ext = V6::tcp().next_header(protocol::HOP_BY_HOP).packet(&ext);
    let v4_options = V4 {
        options: [1, 1, 1, 0].to_vec(),
        ..V4::tcp()
    };
    [
        v4_tcp(&Tcp::syn()),
        v6_tcp(&Tcp::syn()),
        v4_tcp(&with_data),
        v6_tcp(&with_data),
        ethernet(
            &[ethertype::QINQ, ethertype::VLAN],
            ethertype::IPV6,
            &v6_ext,
        ),
        ethernet(
            &[ethertype::VLAN],
            ethertype::IPV4,
            &v4_options.packet(&Tcp::syn().bytes()),
        ),
        icmpv4_unreachable(3),
        icmpv6_unreachable(4),
    ]
    .to_vec()
}

/// What must hold of any parse: a segment lies inside the copy.
fn assert_parse_invariants(buf: &[u8; HEADER_BYTES], len: usize) -> Parsed {
    let parsed = parse(buf, len);
    if let Parsed::Tcp(segment) = parsed {
        let Layout {
            l3,
            l4,
            tcp_len,
            ipv6,
            ..
        } = segment.layout;
        let ip_min = if ipv6 { 40 } else { 20 };
        assert!(usize::from(l3) >= ETH_LEN);
        assert!(l4 >= l3 + ip_min);
        assert!((20..=60).contains(&tcp_len) && tcp_len.is_multiple_of(4));
        assert!(
            usize::from(l4 + tcp_len) <= len.min(HEADER_BYTES),
            "{segment:?}"
        );
    }
    parsed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..=HEADER_BYTES),
        ethertype in prop::sample::select(&[0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806][..]),
        len in 0..=HEADER_BYTES + 8,
    ) {
        let mut buf = [0; HEADER_BYTES];
        buf[..bytes.len()].copy_from_slice(&bytes);
        assert_parse_invariants(&buf, len);
        // Again with a real ethertype, so the IP parsers see random headers too.
        buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
        assert_parse_invariants(&buf, len);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0..8usize,
        edits in prop::collection::vec((0..HEADER_BYTES, any::<u8>()), 1..6),
        cut in 0..=HEADER_BYTES,
    ) {
        let frame = &sample_frames()[which];
        let (mut buf, len) = copy(frame);
        for (at, value) in edits {
            buf[at] = value;
        }
        let len = len.min(cut);
        if let Parsed::Tcp(segment) = assert_parse_invariants(&buf, len) {
            // Whatever the parser accepts, the RST crafting must not panic on.
            if let Some(reply) = rst_reply(&mut buf, &segment) {
                assert!(reply.len <= len);
            }
        }
    }
}

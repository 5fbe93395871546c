//! Tests of the RST crafted over a SYN, checked field by field against the SYN, with
//! the independent checksum and the kernel's incremental update from `build`.

use std::vec::Vec;

use proptest::prelude::*;

use super::{super::*, build::*};
use tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// Crafts the RST over a copy of `syn_frame`.
#[track_caller]
fn answer(syn_frame: &[u8]) -> ([u8; HEADER_BYTES], Reply) {
    let (mut buf, _) = copy(syn_frame);
    let reply = rst_reply(&mut buf, &segment(syn_frame)).expect("a plain SYN is answered");
    (buf, reply)
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes(bytes.try_into().unwrap())
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().unwrap())
}

/// Checks every byte of the RST in `crafted` against the SYN it answers.
#[track_caller]
fn assert_rst_answers(syn_frame: &[u8], crafted: &[u8; HEADER_BYTES], reply: &Reply) {
    let syn = segment(syn_frame);
    let l3 = usize::from(syn.layout.l3);
    let l4 = usize::from(syn.layout.l4);
    let tcp_len = usize::from(syn.layout.tcp_len);
    let before = syn_frame;

    assert_eq!(reply.len, l4 + tcp_len);
    assert_eq!(reply.csum_at, l4 + 16);
    assert_eq!(reply.old_csum, before[l4 + 16..l4 + 18]);

    // Ethernet: MACs swapped; VLAN tags and ethertype as they were.
    assert_eq!(crafted[0..6], before[6..12]);
    assert_eq!(crafted[6..12], before[0..6]);
    assert_eq!(crafted[12..l3], before[12..l3]);

    let pseudo = if syn.layout.ipv6 {
        assert_ipv6_reply(&before[l3..l4], &crafted[l3..l4], tcp_len)
    } else {
        assert_ipv4_reply(&before[l3..l4], &crafted[l3..l4], tcp_len)
    };

    let (syn_tcp, tcp) = (&before[l4..l4 + tcp_len], &crafted[l4..l4 + tcp_len]);
    assert_eq!(tcp[0..2], syn_tcp[2..4], "source port");
    assert_eq!(tcp[2..4], syn_tcp[0..2], "destination port");
    let (seq, ack, flags) = if syn.flags & ACK != 0 {
        (syn.ack, 0, RST)
    } else {
        let seg_len = 1 + u32::from(syn.flags & FIN);
        (0, syn.seq.wrapping_add(seg_len), RST | ACK)
    };
    assert_eq!(be32(&tcp[4..8]), seq, "sequence number");
    assert_eq!(be32(&tcp[8..12]), ack, "acknowledgment number");
    assert_eq!(
        tcp[12],
        syn_tcp[12] & 0xf0,
        "data offset kept, reserved bits 0"
    );
    assert_eq!(tcp[13], flags);
    assert_eq!(tcp[14..16], [0, 0], "window");
    assert_eq!(tcp[18..20], [0, 0], "urgent pointer");
    assert!(
        tcp[20..].iter().all(|&byte| byte == 1),
        "options NOP-ed: {tcp:?}"
    );
    assert_eq!(ones_sum(&[&pseudo, tcp]), 0xffff, "TCP checksum");

    let (untouched, _) = copy(syn_frame);
    assert_eq!(
        crafted[reply.len..],
        untouched[reply.len..],
        "beyond the reply"
    );

    match parse(crafted, reply.len) {
        Parsed::Tcp(rst) => {
            assert_eq!((rst.src, rst.dst), (syn.dst, syn.src));
            assert_eq!((rst.sport, rst.dport), (syn.dport, syn.sport));
            assert_eq!((rst.flags, rst.payload_len), (flags, 0));
        }
        other => panic!("the reply parses as {other:?}"),
    }
}

/// Checks the IPv4 header of the reply; returns the reply's TCP pseudo-header.
#[track_caller]
fn assert_ipv4_reply(syn_ip: &[u8], ip: &[u8], tcp_len: usize) -> Vec<u8> {
    assert_eq!(ip[0..2], syn_ip[0..2], "version, IHL, TOS");
    assert_eq!(usize::from(be16(&ip[2..4])), 20 + tcp_len, "total length");
    assert_eq!(ip[4..6], [0, 0], "identification");
    assert_eq!(ip[6..8], syn_ip[6..8], "flags and fragment offset");
    assert_eq!((ip[8], ip[9]), (64, protocol::TCP), "TTL, protocol");
    assert_eq!(ip[12..16], syn_ip[16..20], "source address");
    assert_eq!(ip[16..20], syn_ip[12..16], "destination address");
    assert_eq!(ones_sum(&[ip]), 0xffff, "IPv4 header checksum");
    pseudo_v4(
        ip[12..16].try_into().unwrap(),
        ip[16..20].try_into().unwrap(),
        tcp_len,
    )
}

/// Checks the IPv6 header of the reply; returns the reply's TCP pseudo-header.
#[track_caller]
fn assert_ipv6_reply(syn_ip: &[u8], ip: &[u8], tcp_len: usize) -> Vec<u8> {
    assert_eq!(ip[0..4], syn_ip[0..4], "version, traffic class, flow label");
    assert_eq!(usize::from(be16(&ip[4..6])), tcp_len, "payload length");
    assert_eq!(
        (ip[6], ip[7]),
        (protocol::TCP, 64),
        "next header, hop limit"
    );
    assert_eq!(ip[8..24], syn_ip[24..40], "source address");
    assert_eq!(ip[24..40], syn_ip[8..24], "destination address");
    pseudo_v6(
        ip[8..24].try_into().unwrap(),
        ip[24..40].try_into().unwrap(),
        tcp_len,
    )
}

/// The kernel, updating the SYN's (correct) checksum by `diff`, lands on the
/// checksum `rst_reply` wrote.
#[track_caller]
fn assert_diff_matches_kernel_update(crafted: &[u8; HEADER_BYTES], reply: &Reply) {
    let written = &crafted[reply.csum_at..reply.csum_at + 2];
    assert_eq!(kernel_replace_by_diff(reply.old_csum, reply.diff), written);
}

#[track_caller]
fn assert_answered(syn_frame: &[u8]) -> ([u8; HEADER_BYTES], Reply) {
    let (crafted, reply) = answer(syn_frame);
    assert_rst_answers(syn_frame, &crafted, &reply);
    assert_diff_matches_kernel_update(&crafted, &reply);
    (crafted, reply)
}

#[test]
fn ipv4_syn_gets_rst_ack() {
    let (crafted, reply) = assert_answered(&v4_tcp(&Tcp::syn()));
    assert_eq!((reply.len, reply.csum_at), (14 + 20 + 40, 14 + 20 + 16));
    let Parsed::Tcp(rst) = parse(&crafted, reply.len) else {
        panic!("not TCP")
    };
    assert_eq!((rst.seq, rst.ack, rst.flags), (0, ISN + 1, RST | ACK));
    assert_eq!(
        (rst.src, rst.dst),
        (v4_words(SERVER_V4), v4_words(CLIENT_V4))
    );
}

#[test]
fn ipv6_syn_gets_rst_ack() {
    let (crafted, reply) = assert_answered(&v6_tcp(&Tcp::syn()));
    assert_eq!((reply.len, reply.csum_at), (14 + 40 + 40, 14 + 40 + 16));
    let Parsed::Tcp(rst) = parse(&crafted, reply.len) else {
        panic!("not TCP")
    };
    assert_eq!((rst.seq, rst.ack, rst.flags), (0, ISN + 1, RST | ACK));
    assert_eq!(
        (rst.src, rst.dst),
        (v6_words(SERVER_V6), v6_words(CLIENT_V6))
    );
}

#[test]
fn syn_ack_gets_rst_at_its_ack() {
    let mut syn_ack = Tcp::syn().flags(SYN | ACK);
    syn_ack.ack = 0xfeed_f00d;
    for frame in [v4_tcp(&syn_ack), v6_tcp(&syn_ack)] {
        let (crafted, reply) = assert_answered(&frame);
        let Parsed::Tcp(rst) = parse(&crafted, reply.len) else {
            panic!("not TCP")
        };
        assert_eq!((rst.seq, rst.ack, rst.flags), (0xfeed_f00d, 0, RST));
    }
}

#[test]
fn ack_number_wraps() {
    let mut syn = Tcp::syn();
    syn.seq = u32::MAX;
    let (crafted, reply) = assert_answered(&v4_tcp(&syn));
    let Parsed::Tcp(rst) = parse(&crafted, reply.len) else {
        panic!("not TCP")
    };
    assert_eq!(rst.ack, 0);
}

#[test]
fn syn_fin_is_acknowledged_past_both() {
    assert_answered(&v4_tcp(&Tcp::syn().flags(SYN | FIN)));
}

#[test]
fn vlan_tags_stay_in_the_reply() {
    let qinq = [ethertype::QINQ, ethertype::VLAN];
    let v4 = ethernet(
        &qinq,
        ethertype::IPV4,
        &V4::tcp().packet(&Tcp::syn().bytes()),
    );
    let v6 = ethernet(
        &[ethertype::VLAN],
        ethertype::IPV6,
        &V6::tcp().packet(&Tcp::syn().bytes()),
    );
    assert_answered(&v4);
    assert_answered(&v6);
}

#[test]
fn any_option_length_is_kept() {
    for words in 0..=10 {
        let mut syn = Tcp::syn();
        syn.options = (0..words * 4).map(|i| i as u8 ^ 0x5a).collect();
        assert_answered(&v4_tcp(&syn));
        assert_answered(&v6_tcp(&syn));
    }
}

#[test]
fn only_plain_syns_without_payload_are_answered() {
    let mut with_data = Tcp::syn();
    with_data.payload = [1, 2, 3, 4].to_vec();
    let v4_options = V4 {
        options: [1, 1, 1, 0].to_vec(),
        ..V4::tcp()
    };
    let v6_hop_by_hop = V6::tcp()
        .next_header(protocol::HOP_BY_HOP)
        .packet(&[ext_header(protocol::TCP, 0), Tcp::syn().bytes()].concat());
    let cases = [
        (
            "IPv4 options",
            ethernet(
                &[],
                ethertype::IPV4,
                &v4_options.packet(&Tcp::syn().bytes()),
            ),
        ),
        (
            "IPv6 extension header",
            ethernet(&[], ethertype::IPV6, &v6_hop_by_hop),
        ),
        ("SYN with data", v4_tcp(&with_data)),
        ("ACK", v4_tcp(&Tcp::syn().flags(ACK))),
        ("PSH ACK", v6_tcp(&Tcp::syn().flags(PSH | ACK))),
        ("SYN RST", v4_tcp(&Tcp::syn().flags(SYN | RST))),
        ("RST", v6_tcp(&Tcp::syn().flags(RST))),
    ];
    for (what, frame) in cases {
        let (mut buf, _) = copy(&frame);
        let untouched = buf;
        assert_eq!(rst_reply(&mut buf, &segment(&frame)), None, "{what}");
        assert_eq!(buf, untouched, "{what}");
    }
}

#[test]
fn layouts_parse_never_produces_are_refused() {
    let frame = v4_tcp(&Tcp::syn());
    let syn = segment(&frame);
    let layout = syn.layout;
    let bogus = [
        Layout {
            l3: 0,
            l4: 20,
            ..layout
        },
        Layout {
            l4: layout.l4 + 4,
            ..layout
        },
        Layout {
            l3: 140,
            l4: 160,
            ..layout
        },
        Layout {
            tcp_len: 16,
            ..layout
        },
        Layout {
            tcp_len: 22,
            ..layout
        },
        Layout {
            tcp_len: 64,
            ..layout
        },
        Layout {
            ipv6: true,
            ..layout
        },
        Layout {
            l3: u16::MAX - 20,
            l4: u16::MAX,
            ..layout
        },
    ];
    for layout in bogus {
        let (mut buf, _) = copy(&frame);
        let untouched = buf;
        let segment = Segment { layout, ..syn };
        assert_eq!(rst_reply(&mut buf, &segment), None, "{layout:?}");
        assert_eq!(buf, untouched);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn any_plain_syn_is_answered_with_a_correct_rst(
        sport in any::<u16>(),
        dport in any::<u16>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        syn_ack in any::<bool>(),
        window in any::<u16>(),
        options in prop::collection::vec(any::<u8>(), 0..=10).prop_map(|words| {
            words.iter().flat_map(|&w| [w, w ^ 0xff, w.rotate_left(3), 0x01]).collect::<Vec<u8>>()
        }),
        ipv6 in any::<bool>(),
        tags in 0..=2usize,
    ) {
        let tcp = Tcp {
            sport,
            dport,
            seq,
            ack,
            flags: if syn_ack { SYN | ACK } else { SYN },
            window,
            options,
            payload: Vec::new(),
        };
        let tpids = &[ethertype::QINQ, ethertype::VLAN][2 - tags..];
        let frame = if ipv6 {
            ethernet(tpids, ethertype::IPV6, &V6::tcp().packet(&tcp.bytes()))
        } else {
            ethernet(tpids, ethertype::IPV4, &V4::tcp().packet(&tcp.bytes()))
        };
        assert_answered(&frame);
    }
}

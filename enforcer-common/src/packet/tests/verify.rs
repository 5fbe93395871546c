//! Tests of [`vet_syn`] against the independent checksum of `build`: real SYNs
//! are deliverable, any corrupted byte a checksum covers is not, and the
//! offload form, the hop limit and the copy's limits are told apart.

use std::vec::Vec;

use proptest::prelude::*;

use super::{super::*, build::*};
use tcp_flags::{ACK, PSH, SYN};

/// Vets `frame` as copied into a scratch buffer that still holds another
/// frame's bytes beyond the copy (as the programs' per-CPU scratch does).
#[track_caller]
fn vet(frame: &[u8]) -> Vetted {
    let (mut buf, len) = copy(frame);
    buf[len..].fill(0xa5);
    let syn = segment(frame);
    vet_syn(&buf, len, &syn)
}

/// `frame` (IPv4, untagged) with another TTL and its header checksum fixed.
fn with_ttl(frame: &[u8], ttl: u8) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let ip = ETH_LEN..ETH_LEN + IPV4_LEN;
    frame[ETH_LEN + 8] = ttl;
    frame[ETH_LEN + 10..ETH_LEN + 12].fill(0);
    let sum = checksum(&[&frame[ip]]);
    frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// An IPv6 SYN behind a hop-by-hop and a destination options header.
fn v6_syn_behind_extension_headers(syn: &Tcp) -> Vec<u8> {
    let mut tcp = syn.bytes();
    fill_tcp_checksum(&pseudo_v6(CLIENT_V6, SERVER_V6, tcp.len()), &mut tcp);
    let chain = [
        ext_header(protocol::DEST_OPTIONS, 0),
        ext_header(protocol::TCP, 1),
    ]
    .concat();
    let ip = V6::tcp()
        .next_header(protocol::HOP_BY_HOP)
        .packet(&[&chain[..], &tcp].concat());
    ethernet(&[], ethertype::IPV6, &ip)
}

/// The SYNs a guest's stack sends, in every plain layout.
fn real_syns() -> Vec<Vec<u8>> {
    let mut odd_data = Tcp::syn();
    odd_data.payload = [1, 2, 3].to_vec();
    let mut bare = Tcp::syn();
    bare.options.clear();
    let mut padded = v4_tcp(&bare);
    padded.resize(60, 0xee);
    [
        v4_tcp(&Tcp::syn()),
        v6_tcp(&Tcp::syn()),
        v4_tcp(&odd_data),
        v6_tcp(&odd_data),
        padded,
        ethernet(
            &[ethertype::QINQ, ethertype::VLAN],
            ethertype::IPV4,
            &V4::tcp().packet(&Tcp::syn().bytes()),
        ),
        ethernet(
            &[ethertype::VLAN],
            ethertype::IPV6,
            &V6::tcp().packet(&Tcp::syn().bytes()),
        ),
    ]
    .to_vec()
}

#[test]
fn real_syns_are_deliverable() {
    for (i, frame) in real_syns().iter().enumerate() {
        assert_eq!(vet(frame), Vetted::Deliverable, "frame {i}");
    }
}

#[test]
fn ip_options_and_extension_headers_are_not_vouched_for() {
    let with_options = V4 {
        options: [0x94, 4, 0, 0].to_vec(),
        ..V4::tcp()
    };
    let v4 = ethernet(
        &[],
        ethertype::IPV4,
        &with_options.packet(&Tcp::syn().bytes()),
    );
    let v6 = v6_syn_behind_extension_headers(&Tcp::syn());
    for frame in [v4, v6] {
        assert!(!segment(&frame).layout.plain);
        assert_eq!(vet(&frame), Vetted::Unverifiable);
    }
}

/// Byte ranges a checksum covers (IPv4 header, pseudo-header addresses, TCP
/// segment), as offsets into `frame`.
fn covered(frame: &[u8]) -> Vec<usize> {
    let syn = segment(frame);
    let (l3, l4) = (usize::from(syn.layout.l3), usize::from(syn.layout.l4));
    let end = l4 + usize::from(syn.layout.tcp_len) + syn.payload_len as usize;
    let ip: Vec<usize> = if syn.layout.ipv6 {
        (l3 + 8..l3 + 40).collect()
    } else {
        (l3..l4).collect()
    };
    ip.into_iter().chain(l4..end).collect()
}

#[test]
fn every_corrupted_byte_a_checksum_covers_is_caught() {
    for (i, frame) in real_syns().iter().enumerate() {
        for at in covered(frame) {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = frame.clone();
                bad[at] ^= flip;
                let (buf, len) = copy(&bad);
                // Some bytes change what the frame is (lengths, protocol).
                let Parsed::Tcp(syn) = parse(&buf, len) else {
                    continue;
                };
                let vetted = vet_syn(&buf, len, &syn);
                assert!(
                    matches!(vetted, Vetted::Corrupt | Vetted::HopLimitExpiring),
                    "frame {i}, byte {at} ^ {flip:#x}: {vetted:?}"
                );
            }
        }
    }
}

/// `frame` with its TCP checksum field holding the pseudo-header's sum only.
fn offload_form(frame: &[u8]) -> Vec<u8> {
    let syn = segment(frame);
    let (l3, l4) = (usize::from(syn.layout.l3), usize::from(syn.layout.l4));
    let tcp_bytes = frame.len() - l4;
    let pseudo = if syn.layout.ipv6 {
        pseudo_v6(
            frame[l3 + 8..l3 + 24].try_into().unwrap(),
            frame[l3 + 24..l3 + 40].try_into().unwrap(),
            tcp_bytes,
        )
    } else {
        pseudo_v4(
            frame[l3 + 12..l3 + 16].try_into().unwrap(),
            frame[l3 + 16..l3 + 20].try_into().unwrap(),
            tcp_bytes,
        )
    };
    let mut out = frame.to_vec();
    out[l4 + 16..l4 + 18].copy_from_slice(&ones_sum(&[&pseudo]).to_be_bytes());
    out
}

#[test]
fn the_offload_form_is_told_apart_for_the_hook_to_prove() {
    let mut big = Tcp::syn();
    big.payload = [9; 400].to_vec();
    for frame in [
        v4_tcp(&Tcp::syn()),
        v6_tcp(&Tcp::syn()),
        v4_tcp(&big),
        v6_tcp(&big),
    ] {
        assert_eq!(vet(&offload_form(&frame)), Vetted::ChecksumOffloaded);
    }
}

#[test]
fn a_syn_longer_than_the_copy_cannot_be_verified() {
    let mut big = Tcp::syn();
    big.payload = [9; 400].to_vec();
    for frame in [v4_tcp(&big), v6_tcp(&big)] {
        assert!(frame.len() > HEADER_BYTES);
        assert_eq!(vet(&frame), Vetted::Unverifiable);
    }
}

#[test]
fn an_ip_length_past_the_end_of_the_packet_is_corrupt() {
    // The IP length says 12 more bytes than the packet has: routers drop it,
    // and the checksum over what the lengths promise cannot be taken.
    let mut data = Tcp::syn();
    data.payload = [7; 12].to_vec();
    for frame in [v4_tcp(&data), v6_tcp(&data)] {
        let cut = &frame[..frame.len() - 12];
        assert_eq!(vet(cut), Vetted::Corrupt);
        assert_eq!(
            vet(&offload_form(&frame)[..frame.len() - 12]),
            Vetted::Corrupt
        );
    }
}

#[test]
fn a_hop_limit_of_one_or_zero_never_reaches_the_destination() {
    let v4 = v4_tcp(&Tcp::syn());
    for ttl in [0, 1] {
        assert_eq!(vet(&with_ttl(&v4, ttl)), Vetted::HopLimitExpiring, "{ttl}");
        let mut v6 = v6_tcp(&Tcp::syn());
        v6[ETH_LEN + 7] = ttl;
        assert_eq!(vet(&v6), Vetted::HopLimitExpiring, "{ttl}");
    }
    assert_eq!(vet(&with_ttl(&v4, 2)), Vetted::Deliverable);
    assert_eq!(segment(&with_ttl(&v4, 2)).hop_limit, 2);
}

#[test]
fn any_other_segment_is_vetted_alike() {
    // The checks are about delivery, not about SYNs: a data segment too.
    let mut data = Tcp::syn().flags(PSH | ACK);
    data.payload = (0..101).collect();
    assert_eq!(vet(&v4_tcp(&data)), Vetted::Deliverable);
    assert_eq!(
        vet(&v6_tcp(&Tcp::syn().flags(SYN | ACK))),
        Vetted::Deliverable
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever the parser accepts, vetting never panics, and a segment it
    /// calls deliverable verifies with the independent checksum.
    #[test]
    fn vetting_agrees_with_an_independent_checksum(
        which in 0..7usize,
        edits in prop::collection::vec((0..HEADER_BYTES, any::<u8>()), 0..4),
    ) {
        let frame = &real_syns()[which];
        let (mut buf, len) = copy(frame);
        for (at, value) in edits {
            buf[at] = value;
        }
        if let Parsed::Tcp(syn) = parse(&buf, len)
            && vet_syn(&buf, len, &syn) == Vetted::Deliverable
        {
            let (l3, l4) = (usize::from(syn.layout.l3), usize::from(syn.layout.l4));
            let end = l4 + usize::from(syn.layout.tcp_len) + syn.payload_len as usize;
            let pseudo = if syn.layout.ipv6 {
                pseudo_v6(
                    buf[l3 + 8..l3 + 24].try_into().unwrap(),
                    buf[l3 + 24..l3 + 40].try_into().unwrap(),
                    end - l4,
                )
            } else {
                prop_assert_eq!(ones_sum(&[&buf[l3..l4]]), 0xffff);
                pseudo_v4(
                    buf[l3 + 12..l3 + 16].try_into().unwrap(),
                    buf[l3 + 16..l3 + 20].try_into().unwrap(),
                    end - l4,
                )
            };
            prop_assert_eq!(ones_sum(&[&pseudo, &buf[l4..end]]), 0xffff);
            prop_assert!(syn.hop_limit > 1);
        }
    }
}

//! Host tests of the flow decisions: answers, ends, windows, expiry, pauses.

use super::*;
use crate::{config::Config, packet::tcp_flags::*};

const SEC: u64 = 1_000_000_000;
const ISN: u32 = 1_000;
const DEST_ISN: u32 = 50_000;

fn seg(flags: u8, seq: u32, ack: u32, payload_len: u32) -> Segment {
    Segment {
        seq,
        ack,
        flags,
        payload_len,
        hop_limit: 64,
        ..Segment::default()
    }
}

fn syn() -> Segment {
    seg(SYN, ISN, 0, 0)
}

const WATCHED: Watch = Watch {
    paused: false,
    resumed_ns: 0,
};

fn pending() -> Flow {
    let sock = SockInfo {
        flags: flags::HOLDS_SLOT | flags::PENDING,
        start_ns: 10 * SEC,
        ..SockInfo::default()
    };
    Flow::open(sock, &syn(), 10 * SEC)
}

/// A flow after SYN, SYN-ACK and the guest's ACK, as the hooks leave it.
fn answered() -> Flow {
    let mut flow = pending();
    let handshake = flow.on_segment(
        Direction::ToGuest,
        &seg(SYN | ACK, DEST_ISN, ISN + 1, 0),
        WATCHED,
    );
    assert_eq!(handshake, Seen::End(End::Established));
    // What `record_end` does to the record.
    flow.sock.flags = flags::HOLDS_SLOT | flags::OUTCOME_RECORDED;
    let ack = seg(ACK, ISN + 1, DEST_ISN + 1, 0);
    assert_eq!(
        flow.on_segment(Direction::FromGuest, &ack, WATCHED),
        Seen::Nothing
    );
    flow
}

fn from_guest(flow: &mut Flow, s: Segment) -> Seen {
    flow.on_segment(Direction::FromGuest, &s, WATCHED)
}

fn to_guest(flow: &mut Flow, s: Segment) -> Seen {
    flow.on_segment(Direction::ToGuest, &s, WATCHED)
}

#[test]
fn a_syn_ack_is_the_handshake_only_when_it_acknowledges_the_syn() {
    let flow = answered();
    assert_eq!(flow.seq.dest_next, DEST_ISN + 1);
    assert_eq!(flow.seq.dest_acked, ISN + 1);
    assert_eq!(flow.seq.guest_acked, DEST_ISN + 1);
    for wrong_ack in [ISN, ISN + 2, 0, ISN.wrapping_sub(1 << 20)] {
        let mut flow = pending();
        let forged = seg(SYN | ACK, DEST_ISN, wrong_ack, 0);
        assert_eq!(
            to_guest(&mut flow, forged),
            Seen::OutOfWindow,
            "{wrong_ack}"
        );
        assert_eq!(flow.seq.dest_next, 0, "an ignored SYN-ACK sets nothing");
    }
    // The guest's own SYN-ACK (it is the server) answers no SYN of ours.
    let mut flow = pending();
    assert_eq!(
        from_guest(&mut flow, seg(SYN | ACK, 7, ISN + 1, 0)),
        Seen::Nothing
    );
    // A SYN-ACK sent again after the handshake changes nothing.
    let mut flow = answered();
    let again = seg(SYN | ACK, DEST_ISN, ISN + 1, 0);
    assert_eq!(to_guest(&mut flow, again), Seen::Nothing);
    assert_eq!(flow.seq, answered().seq);
}

#[test]
fn data_on_the_syn_is_part_of_what_the_answer_may_acknowledge() {
    let sock = SockInfo::default();
    let fast_open = seg(SYN, ISN, 0, 100);
    for ack in [ISN + 1, ISN + 101] {
        let mut flow = Flow::open(sock, &fast_open, 0);
        assert_eq!(
            to_guest(&mut flow, seg(SYN | ACK, DEST_ISN, ack, 0)),
            Seen::End(End::Established)
        );
    }
    let mut flow = Flow::open(sock, &fast_open, 0);
    let too_far = seg(SYN | ACK, DEST_ISN, ISN + 102, 0);
    assert_eq!(to_guest(&mut flow, too_far), Seen::OutOfWindow);
}

#[test]
fn a_rst_refuses_the_syn_only_when_it_acknowledges_it() {
    let mut flow = pending();
    assert_eq!(
        to_guest(&mut flow, seg(RST | ACK, 0, ISN + 1, 0)),
        Seen::End(End::Failed(Outcome::Refused))
    );
    // Without ACK, or acknowledging something else, the guest drops it too.
    for (flags, ack) in [(RST, ISN + 1), (RST | ACK, ISN), (RST | ACK, ISN + 2)] {
        let mut flow = pending();
        assert_eq!(
            to_guest(&mut flow, seg(flags, 0, ack, 0)),
            Seen::OutOfWindow,
            "{flags:#x} ack {ack}"
        );
    }
}

#[test]
fn a_guest_rst_before_the_answer_abandons_only_at_its_next_number() {
    let mut flow = pending();
    assert_eq!(
        from_guest(&mut flow, seg(RST, ISN + 1, 0, 0)),
        Seen::End(End::Failed(Outcome::Abandoned))
    );
    for seq in [ISN, ISN + 2, ISN + 1_000_000] {
        let mut flow = pending();
        assert_eq!(
            from_guest(&mut flow, seg(RST, seq, 0, 0)),
            Seen::OutOfWindow
        );
    }
}

#[test]
fn a_fin_or_data_before_the_answer_is_ignored_and_moves_nothing() {
    let mut flow = pending();
    assert_eq!(
        to_guest(&mut flow, seg(FIN | ACK, DEST_ISN, ISN + 1, 0)),
        Seen::Nothing
    );
    assert_eq!(
        from_guest(&mut flow, seg(FIN, ISN + 1, 0, 0)),
        Seen::Nothing
    );
    assert_eq!(
        from_guest(&mut flow, seg(ACK | PSH, ISN + 1, 0, 500)),
        Seen::Nothing
    );
    assert_eq!(flow.seq, pending().seq);
    // So the answer may acknowledge the SYN only, and the guest's RST after
    // it must still come at exactly its next number.
    assert_eq!(
        to_guest(&mut flow, seg(SYN | ACK, DEST_ISN, ISN + 2, 0)),
        Seen::OutOfWindow
    );
}

#[test]
fn after_the_handshake_rst_and_fin_end_the_flow_only_within_the_senders_window() {
    // Right after the handshake each side's window is one number.
    for flags in [RST, RST | ACK, FIN | ACK] {
        let mut flow = answered();
        let s = seg(flags, ISN + 1, DEST_ISN + 1, 0);
        assert_eq!(
            from_guest(&mut flow, s),
            Seen::End(End::Closed),
            "{flags:#x}"
        );
        let mut flow = answered();
        let s = seg(flags, DEST_ISN + 1, ISN + 1, 0);
        assert_eq!(to_guest(&mut flow, s), Seen::End(End::Closed), "{flags:#x}");
        for off in [1u32, 2, 1 << 16, 1 << 31, u32::MAX] {
            let mut flow = answered();
            let s = seg(flags, ISN.wrapping_add(1).wrapping_add(off), 0, 0);
            assert_eq!(from_guest(&mut flow, s), Seen::OutOfWindow, "+{off}");
            let mut flow = answered();
            let s = seg(flags, DEST_ISN.wrapping_add(1).wrapping_add(off), 0, 0);
            assert_eq!(to_guest(&mut flow, s), Seen::OutOfWindow, "+{off}");
        }
    }
}

#[test]
fn the_window_spans_data_in_flight() {
    let mut flow = answered();
    // The guest sends 1000 bytes, not yet acknowledged: the destination may
    // expect a RST anywhere from the old number to the new one.
    let data = seg(ACK | PSH, ISN + 1, DEST_ISN + 1, 1_000);
    assert_eq!(from_guest(&mut flow, data), Seen::Nothing);
    assert_eq!(flow.seq.guest_next, ISN + 1_001);
    for seq in [ISN + 1, ISN + 500, ISN + 1_001] {
        let mut f = flow;
        assert_eq!(
            from_guest(&mut f, seg(RST, seq, 0, 0)),
            Seen::End(End::Closed)
        );
    }
    let mut f = flow;
    assert_eq!(
        from_guest(&mut f, seg(RST, ISN + 1_002, 0, 0)),
        Seen::OutOfWindow
    );
    // Once acknowledged, the old numbers are behind the destination.
    assert_eq!(
        to_guest(&mut flow, seg(ACK, DEST_ISN + 1, ISN + 1_001, 0)),
        Seen::Nothing
    );
    assert_eq!(flow.seq.dest_acked, ISN + 1_001);
    let mut f = flow;
    assert_eq!(
        from_guest(&mut f, seg(RST, ISN + 500, 0, 0)),
        Seen::OutOfWindow
    );
    assert_eq!(
        from_guest(&mut flow, seg(FIN | ACK, ISN + 1_001, DEST_ISN + 1, 0)),
        Seen::End(End::Closed)
    );
}

#[test]
fn a_segment_starting_past_what_was_sent_moves_nothing() {
    let mut flow = answered();
    // A blind sender (or a guest) jumping ahead cannot widen the window.
    let ahead = seg(ACK, ISN + 100_000, DEST_ISN + 1, 1_000);
    assert_eq!(from_guest(&mut flow, ahead), Seen::Nothing);
    assert_eq!(flow.seq.guest_next, ISN + 1);
    assert_eq!(
        from_guest(&mut flow, seg(RST, ISN + 100_500, 0, 0)),
        Seen::OutOfWindow
    );
    let ahead = seg(ACK, DEST_ISN + 100_000, ISN + 1, 1_000);
    assert_eq!(to_guest(&mut flow, ahead), Seen::Nothing);
    assert_eq!(flow.seq.dest_next, DEST_ISN + 1);
    // Retransmitted data moves nothing either.
    let old = seg(ACK, ISN + 1, DEST_ISN + 1, 0);
    let before = flow.seq;
    assert_eq!(from_guest(&mut flow, old), Seen::Nothing);
    assert_eq!(flow.seq, before);
}

#[test]
fn an_acknowledgment_proves_what_its_peer_sent() {
    // Segments lost before the hook and the later ones it saw out of order:
    // the destination's acknowledgment moves the guest's number past them.
    let mut flow = answered();
    let past_a_gap = seg(ACK, ISN + 2_001, DEST_ISN + 1, 1_000);
    assert_eq!(from_guest(&mut flow, past_a_gap), Seen::Nothing);
    assert_eq!(flow.seq.guest_next, ISN + 1);
    assert_eq!(
        to_guest(&mut flow, seg(ACK, DEST_ISN + 1, ISN + 3_001, 0)),
        Seen::Nothing
    );
    assert_eq!(flow.seq.guest_next, ISN + 3_001);
    assert_eq!(
        from_guest(&mut flow, seg(FIN | ACK, ISN + 3_001, DEST_ISN + 1, 0)),
        Seen::End(End::Closed)
    );
    // And the other way round.
    let mut flow = answered();
    assert_eq!(
        from_guest(&mut flow, seg(ACK, ISN + 1, DEST_ISN + 5_001, 0)),
        Seen::Nothing
    );
    assert_eq!(flow.seq.dest_next, DEST_ISN + 5_001);
    assert_eq!(
        to_guest(&mut flow, seg(RST, DEST_ISN + 5_001, 0, 0)),
        Seen::End(End::Closed)
    );
}

#[test]
fn sequence_numbers_wrap() {
    let sock = SockInfo {
        start_ns: 1,
        ..SockInfo::default()
    };
    let mut flow = Flow::open(sock, &seg(SYN, u32::MAX - 10, 0, 0), 1);
    let answer = seg(SYN | ACK, u32::MAX, u32::MAX - 9, 0);
    assert_eq!(to_guest(&mut flow, answer), Seen::End(End::Established));
    flow.sock.flags = flags::OUTCOME_RECORDED;
    assert_eq!(flow.seq.dest_next, 0);
    let data = seg(ACK, u32::MAX - 9, 0, 100);
    assert_eq!(from_guest(&mut flow, data), Seen::Nothing);
    assert_eq!(flow.seq.guest_next, 90);
    let mut f = flow;
    assert_eq!(
        from_guest(&mut f, seg(RST, 90, 0, 0)),
        Seen::End(End::Closed)
    );
    assert_eq!(from_guest(&mut flow, seg(RST, 91, 0, 0)), Seen::OutOfWindow);
}

#[test]
fn unreachable_counts_only_quoting_the_syn_and_before_the_answer() {
    assert_eq!(
        pending().on_unreachable(ISN, WATCHED),
        Seen::End(End::Failed(Outcome::Unreachable))
    );
    for other in [ISN + 1, ISN - 1, 0] {
        assert_eq!(pending().on_unreachable(other, WATCHED), Seen::OutOfWindow);
    }
    assert_eq!(answered().on_unreachable(ISN, WATCHED), Seen::Nothing);
}

#[test]
fn only_the_same_syn_again_is_a_retransmission() {
    assert!(pending().is_syn_again(ISN));
    assert!(!pending().is_syn_again(ISN + 1));
    assert!(!answered().is_syn_again(ISN));
}

fn timeouts(syn_s: u64, idle_s: u64) -> Timeouts {
    Timeouts {
        syn_ns: syn_s * SEC,
        idle_ns: idle_s * SEC,
    }
}

fn retransmitted() -> Flow {
    let mut flow = pending();
    flow.seq.marks |= window::marks::SYN_AGAIN;
    flow
}

#[test]
fn silence_is_a_timeout_only_after_the_guest_sent_its_syn_again() {
    let t = timeouts(2, 60);
    // Started at 10 s.
    assert_eq!(retransmitted().expiry(11 * SEC, t, WATCHED), None);
    assert_eq!(
        retransmitted().expiry(12 * SEC, t, WATCHED),
        Some(End::Failed(Outcome::Timeout))
    );
    // Seen once: the guest gets time to send it again...
    assert_eq!(pending().expiry(12 * SEC, t, WATCHED), None);
    assert_eq!(
        pending().expiry(10 * SEC + SYN_RETRANSMIT_WAIT_NS - 1, t, WATCHED),
        None
    );
    // ...then it is abandoned, never a failure.
    assert_eq!(
        pending().expiry(10 * SEC + SYN_RETRANSMIT_WAIT_NS, t, WATCHED),
        Some(End::Failed(Outcome::Abandoned))
    );
    // A SYN timeout longer than the wait decides alone.
    let long = timeouts(10, 60);
    assert_eq!(pending().expiry(19 * SEC, long, WATCHED), None);
    assert_eq!(
        pending().expiry(20 * SEC, long, WATCHED),
        Some(End::Failed(Outcome::Abandoned))
    );
    assert_eq!(
        retransmitted().expiry(20 * SEC, long, WATCHED),
        Some(End::Failed(Outcome::Timeout))
    );
}

#[test]
fn idle_flows_end_and_answered_ones_only_by_idling() {
    // No SYN timeout: idling ends an unanswered flow too.
    let t = timeouts(0, 60);
    assert_eq!(pending().expiry(69 * SEC, t, WATCHED), None);
    assert_eq!(
        pending().expiry(70 * SEC, t, WATCHED),
        Some(End::Failed(Outcome::Abandoned))
    );
    assert_eq!(
        retransmitted().expiry(70 * SEC, t, WATCHED),
        Some(End::Failed(Outcome::Timeout))
    );
    let t = timeouts(3, 60);
    assert_eq!(answered().expiry(13 * SEC, t, WATCHED), None);
    assert_eq!(answered().expiry(70 * SEC, t, WATCHED), Some(End::Closed));
    assert_eq!(pending().expiry(u64::MAX, timeouts(0, 0), WATCHED), None);
}

#[test]
fn a_flow_that_lived_through_a_pause_never_fails() {
    let paused = Watch {
        paused: true,
        resumed_ns: 0,
    };
    let resumed_after_its_start = Watch {
        paused: false,
        resumed_ns: 11 * SEC,
    };
    let t = timeouts(2, 60);
    for watch in [paused, resumed_after_its_start] {
        assert_eq!(
            retransmitted().expiry(12 * SEC, t, watch),
            Some(End::Failed(Outcome::Abandoned)),
            "{watch:?}"
        );
        // Answers it sees now may be stale: none is a failure, and no late
        // handshake is timed.
        let mut f = pending();
        assert_eq!(
            f.on_segment(Direction::ToGuest, &seg(RST | ACK, 0, ISN + 1, 0), watch),
            Seen::End(End::Failed(Outcome::Abandoned))
        );
        let mut f = pending();
        assert_eq!(
            f.on_segment(
                Direction::ToGuest,
                &seg(SYN | ACK, DEST_ISN, ISN + 1, 0),
                watch
            ),
            Seen::End(End::Failed(Outcome::Abandoned))
        );
        assert_eq!(
            pending().on_unreachable(ISN, watch),
            Seen::End(End::Failed(Outcome::Abandoned))
        );
        // An answered flow closes as it would have.
        let mut f = answered();
        assert_eq!(
            f.on_segment(Direction::FromGuest, &seg(RST, ISN + 1, 0, 0), watch),
            Seen::End(End::Closed)
        );
        assert_eq!(answered().expiry(70 * SEC, t, watch), Some(End::Closed));
        // Its window still holds.
        let mut f = pending();
        assert_eq!(
            f.on_segment(Direction::ToGuest, &seg(RST | ACK, 0, ISN + 9, 0), watch),
            Seen::OutOfWindow
        );
    }
    // Flows opened after the resume are judged on everything again.
    let resumed_before = Watch {
        paused: false,
        resumed_ns: 10 * SEC,
    };
    assert_eq!(
        retransmitted().expiry(12 * SEC, t, resumed_before),
        Some(End::Failed(Outcome::Timeout))
    );
}

#[test]
fn the_watch_comes_from_the_config() {
    let config = Config {
        paused: 1,
        resumed_ns: 42,
        ..Config::default()
    };
    assert_eq!(
        Watch::of(&config),
        Watch {
            paused: true,
            resumed_ns: 42
        }
    );
    assert_eq!(Watch::of(&Config::default()), WATCHED);
}

#[test]
fn keys_from_either_side_match() {
    let (guest, dest) = ([1, 2, 3, 4], [5, 6, 7, 8]);
    let sent = FlowKey::from_guest(guest, 40_000, dest, 80);
    let answer = FlowKey::to_guest(dest, 80, guest, 40_000);
    assert_eq!(sent, answer);
    assert_eq!(sent.dest, DestKey::from_ipv6_raw(dest, 80));
}

#[test]
fn the_policy_connect_timeout_wins_over_the_default() {
    let config = Config {
        flow_syn_timeout_ms: 10_000,
        flow_idle_timeout_ms: 60_000,
        ..Config::default()
    };
    assert_eq!(Timeouts::of(&config, 0), timeouts(10, 60));
    assert_eq!(
        Timeouts::of(&config, 300),
        Timeouts {
            syn_ns: SEC * 3 / 10,
            idle_ns: 60 * SEC
        }
    );
}

#[test]
fn refresh_is_coarse() {
    let flow = pending();
    assert!(!flow.needs_refresh(10 * SEC + SEC / 2));
    assert!(flow.needs_refresh(11 * SEC));
}

#[test]
fn an_answered_flow_unseen_since_a_pause_is_given_up_early() {
    // Answered, last seen at 10 s, idle timeout a minute.
    let t = timeouts(1, 60);
    let resumed = Watch {
        paused: false,
        resumed_ns: 20 * SEC,
    };
    let lost = t.lost_ns();
    assert_eq!(lost, SYN_RETRANSMIT_WAIT_NS, "never below the wait");
    assert_eq!(timeouts(10, 60).lost_ns(), 10 * SEC);
    let flow = answered();
    assert_eq!(flow.expiry(10 * SEC + lost - 1, t, resumed), None);
    assert_eq!(flow.expiry(10 * SEC + lost, t, resumed), Some(End::Closed));
    // Paused now: the same.
    let paused = Watch {
        paused: true,
        resumed_ns: 0,
    };
    assert_eq!(flow.expiry(10 * SEC + lost, t, paused), Some(End::Closed));
    // Seen after the resume: a live connection, idle timeout as usual.
    let mut seen = answered();
    seen.last_seen_ns = 21 * SEC;
    assert_eq!(seen.expiry(21 * SEC + lost, t, resumed), None);
    assert_eq!(seen.expiry(81 * SEC, t, resumed), Some(End::Closed));
    // Never paused: idle timeout as usual.
    assert_eq!(flow.expiry(10 * SEC + lost, t, WATCHED), None);
}

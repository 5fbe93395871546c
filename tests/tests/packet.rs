//! The packet plane, program by program: crafted frames run through the loaded
//! programs with `BPF_PROG_TEST_RUN`, against the real maps and the real
//! breaker. (End to end through namespaces: `packet_routed.rs`.)

use std::net::{IpAddr, SocketAddr};

use enforcer::bpf::{Applied, BpfError, Enforcer, LoadOptions, TestRun};
use enforcer_common::{
    breaker::State,
    chaos::{self, Fault, Target},
    config::Config,
    control::{Command, Kind},
    counters::GlobalCounter,
    dest::DestState,
    flow::FlowKey,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    cpus,
    fixtures::{self, base_policy, minute_open},
    frames::{self, ACK, FIN, RST, SYN, Tcp},
    require_root,
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// `TC_ACT_UNSPEC` (-1, tcx's `TCX_NEXT`): passed, on to the next program.
const TC_NEXT: u32 = u32::MAX;
const TC_ACT_REDIRECT: u32 = 7;

const IN_XDP: &str = "packet_in_xdp";
const IN_TC: &str = "packet_in_tc";
const OUT_TC: &str = "packet_out_tc";

fn guest_v4() -> IpAddr {
    "10.1.0.2".parse().unwrap()
}
fn dest_v4() -> SocketAddr {
    "10.2.0.2:8080".parse().unwrap()
}
fn guest_v6() -> IpAddr {
    "fd00:1::2".parse().unwrap()
}
fn dest_v6() -> SocketAddr {
    "[fd00:2::2]:8080".parse().unwrap()
}

fn loaded() -> Enforcer {
    require_root();
    Enforcer::load(&LoadOptions::default()).expect("loading the programs")
}

fn with_policy(policy: Policy) -> Enforcer {
    let mut enforcer = loaded();
    fixtures::apply(
        &mut enforcer,
        &["10.2.0.0/16:8080", "[fd00:2::/32]:8080"],
        policy,
        minute_open(),
    );
    enforcer
}

fn run(enforcer: &Enforcer, program: &'static str, frame: &[u8]) -> TestRun {
    enforcer
        .test_run(program, frame, 1)
        .unwrap_or_else(|e| panic!("test run of {program} ({} bytes): {e:?}", frame.len()))
}

fn syn(guest: IpAddr, port: u16, dest: SocketAddr) -> Tcp {
    Tcp::syn(guest, port, dest.ip(), dest.port())
}

/// The flow key the programs use: the destination in the loader's namespace.
fn flow_key(guest: IpAddr, port: u16, dest: SocketAddr) -> FlowKey {
    let client = enforcer_tests::key(SocketAddr::new(guest, port)).addr;
    let dest = enforcer_tests::key(dest);
    FlowKey::from_guest(client, port, dest.addr, dest.port).in_netns(dest.netns)
}

fn counter(enforcer: &Enforcer, c: GlobalCounter) -> u64 {
    enforcer.maps().counters.get(c).expect("reading a counter")
}

fn state_of(enforcer: &Enforcer, dest: SocketAddr) -> DestState {
    enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(dest))
        .expect("reading DESTS")
        .unwrap_or_else(|| panic!("{dest} is not tracked"))
}

/// Sets the packet plane's SYN and idle timeouts.
fn flow_timeouts(enforcer: &mut Enforcer, syn_ms: u32, idle_ms: u32) {
    let config = enforcer.maps().config.get().unwrap();
    enforcer
        .maps_mut()
        .config
        .set(Config {
            flow_syn_timeout_ms: syn_ms,
            flow_idle_timeout_ms: idle_ms,
            ..config
        })
        .unwrap();
}

/// Forces the destination open for a minute, as an operator's `trip` does.
fn force_open(enforcer: &mut Enforcer, dest: SocketAddr) {
    let minute = enforcer::clock::monotonic_ns() + 60_000_000_000;
    fixtures::force_open(enforcer, dest, minute);
}

/// Asks the kernel to expire a flow (checked there against the flow as it
/// is then), as the daemon's sweep does.
fn expire_flow(enforcer: &Enforcer, flow: &FlowKey) -> Result<Applied, BpfError> {
    let command = Command::on_flow(Kind::FlowExpire, *flow);
    enforcer.control().run(&command)
}

#[test]
fn a_syn_to_an_open_destination_is_answered_with_a_kernel_crafted_rst() {
    for (guest, dest) in [(guest_v4(), dest_v4()), (guest_v6(), dest_v6())] {
        let mut enforcer = with_policy(base_policy());
        force_open(&mut enforcer, dest);
        let syn = syn(guest, 40_000, dest);
        for (program, answered) in [(IN_TC, TC_ACT_REDIRECT), (IN_XDP, XDP_TX)] {
            let out = run(&enforcer, program, &syn.frame());
            assert_eq!(out.retval, answered, "{program} {dest}");
            let rst = frames::parse(&out.data_out);
            assert_eq!(rst.flags, RST | ACK, "{program} {dest}: {rst:?}");
            assert_eq!((rst.src, rst.sport), (dest.ip(), dest.port()));
            assert_eq!((rst.dst, rst.dport), (guest, 40_000));
            assert_eq!(rst.seq, 0);
            assert_eq!(rst.ack, syn.seq.wrapping_add(1));
            assert_eq!(rst.dst_mac, syn.frame()[6..12], "back to the guest's MAC");
            assert!(rst.checksums_ok, "{program} {dest}: checksums");
        }
        assert_eq!(counter(&enforcer, GlobalCounter::PacketResets), 2);
        assert_eq!(counter(&enforcer, GlobalCounter::RejectedCircuit), 2);
        assert!(
            enforcer.maps().flows.all().unwrap().is_empty(),
            "a rejected SYN holds nothing"
        );
    }
}

#[test]
fn answers_to_a_tracked_syn_are_its_outcome() {
    let enforcer = with_policy(Policy {
        failure_threshold: 100,
        ..base_policy()
    });
    let dest = dest_v4();
    let key = enforcer_tests::key(dest);
    // Handshake: SYN out, SYN-ACK back.
    let ok = syn(guest_v4(), 40_001, dest);
    assert_eq!(run(&enforcer, IN_TC, &ok.frame()).retval, TC_NEXT);
    assert_eq!(enforcer.maps().flows.all().unwrap().len(), 1);
    let state = enforcer.maps().dests.get(&key).unwrap().expect("tracked");
    assert_eq!((state.counters.attempts, state.breaker.active), (1, 1));
    assert_eq!(
        run(&enforcer, OUT_TC, &ok.answer(SYN | ACK).frame()).retval,
        TC_NEXT
    );
    let state = enforcer.maps().dests.get(&key).unwrap().unwrap();
    assert_eq!(state.counters.successes, 1);
    assert_eq!(state.breaker.active, 1, "an open connection holds its slot");
    // The guest's FIN ends it: slot back, flow gone.
    run(&enforcer, IN_XDP, &ok.established(FIN | ACK).frame());
    let state = enforcer.maps().dests.get(&key).unwrap().unwrap();
    assert_eq!(state.breaker.active, 0);
    assert!(enforcer.maps().flows.all().unwrap().is_empty());

    // Refused: a RST answers the SYN.
    let refused = syn(guest_v4(), 40_002, dest);
    run(&enforcer, IN_TC, &refused.frame());
    run(&enforcer, OUT_TC, &refused.answer(RST | ACK).frame());
    // Unreachable: an ICMP error quotes the SYN.
    let unreachable = syn(guest_v4(), 40_003, dest);
    run(&enforcer, IN_TC, &unreachable.frame());
    let icmp = frames::unreachable("10.9.0.1".parse().unwrap(), &unreachable);
    run(&enforcer, OUT_TC, &icmp);
    let state = enforcer.maps().dests.get(&key).unwrap().unwrap();
    assert_eq!(state.counters.failures_refused, 1);
    assert_eq!(state.counters.failures_unreachable, 1);
    assert_eq!((state.breaker.active, state.breaker.pending), (0, 0));
    assert!(enforcer.maps().flows.all().unwrap().is_empty());

    // A SYN retransmitted while pending is not a second attempt.
    let again = syn(guest_v4(), 40_004, dest);
    run(&enforcer, IN_TC, &again.frame());
    run(&enforcer, IN_TC, &again.frame());
    assert_eq!(state_of(&enforcer, dest).counters.attempts, 4);
}

#[test]
fn failures_seen_on_packets_trip_the_breaker_and_probes_close_it() {
    let mut enforcer = loaded();
    let policy = Policy {
        failure_threshold: 3,
        ..base_policy()
    };
    // Open for 100 ms.
    let backoff = BackoffRow::exponential(100_000_000, 100_000_000);
    fixtures::apply(&mut enforcer, &["[fd00:2::/32]:8080"], policy, backoff);
    let dest = dest_v6();
    for port in 41_000..41_003 {
        let s = syn(guest_v6(), port, dest);
        assert_eq!(run(&enforcer, IN_TC, &s.frame()).retval, TC_NEXT);
        run(&enforcer, OUT_TC, &s.answer(RST | ACK).frame());
    }
    assert_eq!(state_of(&enforcer, dest).breaker.state, State::Open as u32);
    let rejected = syn(guest_v6(), 41_010, dest);
    assert_eq!(
        run(&enforcer, IN_TC, &rejected.frame()).retval,
        TC_ACT_REDIRECT
    );
    std::thread::sleep(std::time::Duration::from_millis(150));
    // Half-open: one probe passes, a second SYN meanwhile is answered.
    let probe = syn(guest_v6(), 41_011, dest);
    assert_eq!(run(&enforcer, IN_TC, &probe.frame()).retval, TC_NEXT);
    let other = syn(guest_v6(), 41_012, dest);
    assert_eq!(run(&enforcer, IN_XDP, &other.frame()).retval, XDP_TX);
    run(&enforcer, OUT_TC, &probe.answer(SYN | ACK).frame());
    assert_eq!(
        state_of(&enforcer, dest).breaker.state,
        State::Closed as u32
    );
}

#[test]
fn a_capped_destination_admits_flows_up_to_its_cap() {
    let enforcer = with_policy(Policy {
        max_connections: 2,
        ..base_policy()
    });
    let dest = dest_v4();
    let flows: Vec<Tcp> = (42_000..42_002).map(|p| syn(guest_v4(), p, dest)).collect();
    for f in &flows {
        assert_eq!(run(&enforcer, IN_TC, &f.frame()).retval, TC_NEXT);
        run(&enforcer, OUT_TC, &f.answer(SYN | ACK).frame());
    }
    let over = syn(guest_v4(), 42_010, dest);
    assert_eq!(run(&enforcer, IN_TC, &over.frame()).retval, TC_ACT_REDIRECT);
    assert_eq!(counter(&enforcer, GlobalCounter::RejectedBulkhead), 1);
    // The backend closes one (RST to the guest): a slot is free again, once.
    let rst = flows[0].answer_established(RST | ACK);
    run(&enforcer, OUT_TC, &rst.frame());
    run(&enforcer, OUT_TC, &rst.frame());
    let state = enforcer
        .maps()
        .dests
        .get(&enforcer_tests::key(dest))
        .unwrap()
        .unwrap();
    assert_eq!(state.breaker.active, 1, "released exactly once");
    assert_eq!(run(&enforcer, IN_TC, &over.frame()).retval, TC_NEXT);
}

#[test]
fn the_sweep_counts_silence_as_a_timeout_only_after_the_syn_came_again() {
    let mut enforcer = with_policy(base_policy());
    flow_timeouts(&mut enforcer, 50, 300);
    let dest = dest_v4();
    // The guest sends its SYN again: the destination stayed silent.
    let silent = syn(guest_v4(), 43_000, dest);
    run(&enforcer, IN_TC, &silent.frame());
    run(&enforcer, IN_TC, &silent.frame());
    // Sent once and never again: a guest that gave up, or never meant it.
    let once = syn(guest_v4(), 43_001, dest);
    run(&enforcer, IN_XDP, &once.frame());
    let (silent_key, once_key) = (
        flow_key(guest_v4(), 43_000, dest),
        flow_key(guest_v4(), 43_001, dest),
    );
    assert_eq!(
        expire_flow(&enforcer, &silent_key).unwrap(),
        Applied::NotApplicable
    );
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(
        expire_flow(&enforcer, &silent_key).unwrap(),
        Applied::Applied
    );
    assert_eq!(
        expire_flow(&enforcer, &silent_key).unwrap(),
        Applied::NotFound
    );
    // Past its SYN timeout, the other one still waits for its SYN again...
    assert_eq!(
        expire_flow(&enforcer, &once_key).unwrap(),
        Applied::NotApplicable
    );
    // ...until it idles out: abandoned.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(expire_flow(&enforcer, &once_key).unwrap(), Applied::Applied);
    let state = state_of(&enforcer, dest);
    assert_eq!(state.counters.failures_timeout, 1);
    assert_eq!(state.counters.abandoned, 1);
    assert_eq!((state.breaker.active, state.breaker.pending), (0, 0));
}

#[test]
fn malformed_truncated_and_unparsed_frames_pass_untouched_and_are_counted() {
    let mut enforcer = with_policy(base_policy());
    force_open(&mut enforcer, dest_v4());
    let full = syn(guest_v4(), 44_000, dest_v4()).frame();
    // Every truncation of a SYN to an open destination: never answered, never
    // dropped, never tracked. (The kernel's test runs want an Ethernet header,
    // and for TC an IP header behind it: it parses that much itself.)
    for len in 14..full.len() {
        let frame = &full[..len];
        assert_eq!(run(&enforcer, IN_XDP, frame).retval, XDP_PASS, "{len}");
        if len < 34 {
            continue;
        }
        let tc = run(&enforcer, IN_TC, frame);
        assert_eq!(tc.retval, TC_NEXT, "truncated to {len}");
        assert_eq!(tc.data_out, frame, "truncated to {len}: untouched");
        assert_eq!(run(&enforcer, OUT_TC, frame).retval, TC_NEXT, "{len}");
    }
    let truncations = (full.len() - 14) + 2 * (full.len() - 34);
    assert!(counter(&enforcer, GlobalCounter::PacketMalformed) as usize >= truncations - 3);
    // Fragments pass, counted.
    let fragment = frames::syn_v4_fragment(&syn(guest_v4(), 44_001, dest_v4()));
    assert_eq!(run(&enforcer, IN_TC, &fragment).retval, TC_NEXT);
    assert_eq!(counter(&enforcer, GlobalCounter::PacketFragments), 1);
    // Random headers behind an IPv4 or IPv6 ethertype: never a crash, never a
    // drop.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..300 {
        let len = 54 + (i % 120);
        let mut frame: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let ethertype: [u8; 2] = if i % 2 == 0 {
            [0x08, 0x00]
        } else {
            [0x86, 0xdd]
        };
        frame[12..14].copy_from_slice(&ethertype);
        assert_eq!(run(&enforcer, IN_TC, &frame).retval, TC_NEXT);
        assert_eq!(run(&enforcer, OUT_TC, &frame).retval, TC_NEXT);
        assert_eq!(run(&enforcer, IN_XDP, &frame).retval, XDP_PASS);
    }
    assert!(enforcer.maps().flows.all().unwrap().is_empty());
    assert_eq!(counter(&enforcer, GlobalCounter::PacketResets), 0);
}

#[test]
fn a_syn_behind_extension_headers_passes_untracked() {
    // Routers may drop it, and it cannot be answered in place: its silence
    // tells nothing, so it is neither tracked nor answered.
    let mut enforcer = with_policy(base_policy());
    force_open(&mut enforcer, dest_v6());
    let frame = frames::syn_v6_with_hop_by_hop(&syn(guest_v6(), 45_000, dest_v6()));
    let tc = run(&enforcer, IN_TC, &frame);
    assert_eq!((tc.retval, &tc.data_out), (TC_NEXT, &frame));
    assert_eq!(run(&enforcer, IN_XDP, &frame).retval, XDP_PASS);
    assert_eq!(counter(&enforcer, GlobalCounter::PacketSynsUnverified), 2);
    assert_eq!(counter(&enforcer, GlobalCounter::PacketRejectsDropped), 0);
    assert!(enforcer.maps().flows.all().unwrap().is_empty());
}

#[test]
fn paused_passes_everything() {
    let mut enforcer = with_policy(base_policy());
    force_open(&mut enforcer, dest_v4());
    enforcer.maps_mut().config.set_paused(true).unwrap();
    let frame = syn(guest_v4(), 46_000, dest_v4()).frame();
    assert_eq!(run(&enforcer, IN_TC, &frame).retval, TC_NEXT);
    assert_eq!(run(&enforcer, IN_XDP, &frame).retval, XDP_PASS);
}

#[test]
fn rsts_and_fins_outside_the_window_end_nothing() {
    let enforcer = with_policy(base_policy());
    let dest = dest_v4();
    let out_of_window = || counter(&enforcer, GlobalCounter::PacketOutOfWindow);

    // Before the answer: a RST to the guest refuses only if it acknowledges
    // the SYN; the guest's own only at the number it sends next.
    let pending = syn(guest_v4(), 47_000, dest);
    run(&enforcer, IN_TC, &pending.frame());
    let forged = [
        (OUT_TC, pending.answer(RST)),
        (
            OUT_TC,
            Tcp {
                ack: pending.seq.wrapping_add(2),
                ..pending.answer(RST | ACK)
            },
        ),
        (
            IN_TC,
            Tcp {
                seq: pending.seq.wrapping_add(1_000),
                ..pending.established(RST)
            },
        ),
        (IN_XDP, pending.established(FIN | ACK)),
    ];
    for (program, segment) in &forged {
        run(&enforcer, program, &segment.frame());
    }
    assert_eq!(out_of_window(), 3, "the FIN before an answer is no claim");
    let s = state_of(&enforcer, dest);
    assert_eq!((s.breaker.active, s.breaker.pending), (1, 1));
    assert_eq!(s.counters.failures() + s.counters.abandoned, 0);

    // After the handshake, either way: only within the sender's window.
    run(&enforcer, OUT_TC, &pending.answer(SYN | ACK).frame());
    for far in [1u32, 1_000, 1 << 20, 1 << 31] {
        let guest_side = pending.established(RST);
        let dest_side = pending.answer_established(FIN | ACK);
        for (program, segment) in [
            (
                IN_TC,
                Tcp {
                    seq: guest_side.seq.wrapping_add(far),
                    ..guest_side
                },
            ),
            (
                OUT_TC,
                Tcp {
                    seq: dest_side.seq.wrapping_add(far),
                    ..dest_side
                },
            ),
        ] {
            run(&enforcer, program, &segment.frame());
        }
    }
    assert_eq!(out_of_window(), 3 + 8);
    let s = state_of(&enforcer, dest);
    assert_eq!((s.breaker.active, s.counters.successes), (1, 1));
    assert_eq!(enforcer.maps().flows.all().unwrap().len(), 1);

    // The destination's own RST, at its next number, ends it.
    run(&enforcer, OUT_TC, &pending.answer_established(RST).frame());
    let s = state_of(&enforcer, dest);
    assert_eq!((s.breaker.active, s.breaker.pending), (0, 0));
    assert_eq!(s.counters.failures(), 0);
    assert!(enforcer.maps().flows.all().unwrap().is_empty());
}

#[test]
fn the_window_follows_the_data_of_a_flow() {
    let enforcer = with_policy(base_policy());
    let dest = dest_v6();
    let flow = syn(guest_v6(), 47_100, dest);
    run(&enforcer, IN_TC, &flow.frame());
    run(&enforcer, OUT_TC, &flow.answer(SYN | ACK).frame());
    // 1000 bytes from the guest, acknowledged: its FIN comes 1000 further.
    let data = Tcp {
        payload: vec![7; 1_000],
        ..flow.established(ACK)
    };
    run(&enforcer, IN_XDP, &data.frame());
    let acked = Tcp {
        ack: data.seq.wrapping_add(1_000),
        ..flow.answer_established(ACK)
    };
    run(&enforcer, OUT_TC, &acked.frame());
    // The FIN at the old number lies behind what the destination has.
    run(&enforcer, IN_TC, &flow.established(FIN | ACK).frame());
    assert_eq!(counter(&enforcer, GlobalCounter::PacketOutOfWindow), 1);
    assert_eq!(state_of(&enforcer, dest).breaker.active, 1);
    let fin = Tcp {
        seq: data.seq.wrapping_add(1_000),
        ..flow.established(FIN | ACK)
    };
    run(&enforcer, IN_TC, &fin.frame());
    assert_eq!(state_of(&enforcer, dest).breaker.active, 0);
}

#[test]
fn a_syn_ack_that_does_not_acknowledge_the_syn_is_no_answer() {
    let enforcer = with_policy(base_policy());
    let dest = dest_v4();
    let s = syn(guest_v4(), 47_200, dest);
    run(&enforcer, IN_TC, &s.frame());
    for ack in [s.seq, s.seq.wrapping_add(2), 0] {
        let forged = Tcp {
            ack,
            ..s.answer(SYN | ACK)
        };
        run(&enforcer, OUT_TC, &forged.frame());
    }
    let state = state_of(&enforcer, dest);
    assert_eq!(state.counters.successes, 0);
    assert_eq!(state.breaker.pending, 1, "still waiting for its answer");
    assert_eq!(counter(&enforcer, GlobalCounter::PacketOutOfWindow), 3);
    run(&enforcer, OUT_TC, &s.answer(SYN | ACK).frame());
    assert_eq!(state_of(&enforcer, dest).counters.successes, 1);
}

#[test]
fn icmp_errors_count_only_when_they_quote_the_syn() {
    let enforcer = with_policy(base_policy());
    let router: IpAddr = "10.9.0.1".parse().unwrap();
    for (guest, dest) in [(guest_v4(), dest_v4()), (guest_v6(), dest_v6())] {
        let s = syn(guest, 47_300, dest);
        run(&enforcer, IN_TC, &s.frame());
        let router = if guest.is_ipv4() {
            router
        } else {
            "fd00:9::1".parse().unwrap()
        };
        for seq in [s.seq.wrapping_add(1), s.seq.wrapping_sub(1), 0] {
            let other = Tcp { seq, ..s.clone() };
            run(&enforcer, OUT_TC, &frames::unreachable(router, &other));
        }
        let state = state_of(&enforcer, dest);
        assert_eq!(state.counters.failures_unreachable, 0, "{dest}");
        assert_eq!(state.breaker.pending, 1);
        run(&enforcer, OUT_TC, &frames::unreachable(router, &s));
        let state = state_of(&enforcer, dest);
        assert_eq!(state.counters.failures_unreachable, 1, "{dest}");
        assert_eq!(state.breaker.pending, 0);
    }
    assert_eq!(counter(&enforcer, GlobalCounter::PacketIcmpMismatched), 6);
}

#[test]
fn syns_nobody_can_answer_pass_untracked() {
    let mut enforcer = with_policy(base_policy());
    // Open: a tracked SYN would be answered with a RST.
    for dest in [dest_v4(), dest_v6()] {
        force_open(&mut enforcer, dest);
    }
    let mut port = 48_000;
    let mut cases = Vec::new();
    for (guest, dest) in [(guest_v4(), dest_v4()), (guest_v6(), dest_v6())] {
        for (what, garble, counted) in [
            (
                "bad checksum",
                frames::with_bad_tcp_checksum as fn(&[u8]) -> Vec<u8>,
                GlobalCounter::PacketSynsCorrupt,
            ),
            (
                "the offload form, sent as final",
                frames::with_offload_checksum,
                GlobalCounter::PacketSynsCorrupt,
            ),
            (
                "hop limit 1",
                |f| frames::with_hop_limit(f, 1),
                GlobalCounter::PacketSynsTtlExpiring,
            ),
            (
                "hop limit 0",
                |f| frames::with_hop_limit(f, 0),
                GlobalCounter::PacketSynsTtlExpiring,
            ),
        ] {
            port += 1;
            cases.push((what, garble(&syn(guest, port, dest).frame()), counted));
        }
    }
    for (what, frame, counted) in &cases {
        let before = counter(&enforcer, *counted);
        for _ in 0..2 {
            let tc = run(&enforcer, IN_TC, frame);
            assert_eq!((tc.retval, &tc.data_out), (TC_NEXT, frame), "{what}");
            assert_eq!(run(&enforcer, IN_XDP, frame).retval, XDP_PASS, "{what}");
        }
        assert_eq!(counter(&enforcer, *counted), before + 4, "{what}");
    }
    assert!(enforcer.maps().flows.all().unwrap().is_empty());
    assert_eq!(counter(&enforcer, GlobalCounter::PacketResets), 0);
    for dest in [dest_v4(), dest_v6()] {
        assert!(
            enforcer
                .maps()
                .dests
                .get(&enforcer_tests::key(dest))
                .unwrap()
                .is_none(),
            "{dest}: nothing asked of the gate"
        );
    }
    // The same SYNs intact are answered.
    let intact = syn(guest_v4(), port + 1, dest_v4()).frame();
    assert_eq!(run(&enforcer, IN_TC, &intact).retval, TC_ACT_REDIRECT);
    assert_eq!(
        run(&enforcer, IN_XDP, &frames::with_hop_limit(&intact, 2)).retval,
        XDP_TX
    );
}

#[test]
fn a_flow_that_lived_through_a_pause_never_fails() {
    let mut enforcer = with_policy(Policy {
        failure_threshold: 1,
        ..base_policy()
    });
    flow_timeouts(&mut enforcer, 50, 60_000);
    let dest = dest_v4();
    let refused = syn(guest_v4(), 49_000, dest);
    let silent = syn(guest_v4(), 49_001, dest);
    for s in [&refused, &refused, &silent, &silent] {
        run(&enforcer, IN_TC, &s.frame());
    }
    enforcer.maps_mut().config.set_paused(true).unwrap();
    // Unseen while paused: the SYN-ACK that opened `refused`'s connection.
    run(&enforcer, OUT_TC, &refused.answer(SYN | ACK).frame());
    std::thread::sleep(std::time::Duration::from_millis(80));
    // Expired while paused: abandoned, its slot back.
    let silent_key = flow_key(guest_v4(), 49_001, dest);
    assert_eq!(
        expire_flow(&enforcer, &silent_key).unwrap(),
        Applied::Applied
    );
    enforcer.maps_mut().config.set_paused(false).unwrap();
    // After the resume, a RST closing that connection looks like a refusal.
    run(&enforcer, OUT_TC, &refused.answer(RST | ACK).frame());
    let state = state_of(&enforcer, dest);
    assert_eq!(state.counters.failures(), 0, "{:?}", state.counters);
    assert_eq!(state.counters.abandoned, 2);
    assert_eq!(state.breaker.state, State::Closed as u32);
    assert_eq!((state.breaker.active, state.breaker.pending), (0, 0));
    assert!(enforcer.maps().flows.all().unwrap().is_empty());

    // A flow opened after the resume is judged on everything it saw.
    let after = syn(guest_v4(), 49_002, dest);
    run(&enforcer, IN_XDP, &after.frame());
    run(&enforcer, IN_XDP, &after.frame());
    std::thread::sleep(std::time::Duration::from_millis(80));
    let after_key = flow_key(guest_v4(), 49_002, dest);
    assert_eq!(
        expire_flow(&enforcer, &after_key).unwrap(),
        Applied::Applied
    );
    let state = state_of(&enforcer, dest);
    assert_eq!(state.counters.failures_timeout, 1);
    assert_eq!(state.breaker.state, State::Open as u32);
}

const CHAOS_IN: &str = "chaos_in_tc";
const TC_ACT_SHOT: u32 = 2;

/// A guest fault of `kind` on `dest` (the exact address and port) for a
/// minute, affecting `percent` of what it matches.
fn guest_fault(kind: enforcer_common::chaos::Kind, dest: SocketAddr, percent: f64) -> Fault {
    let mut fault = Fault {
        kind: kind as u32,
        chance: chaos::chance(percent),
        until_ns: enforcer::clock::monotonic_ns() + 60_000_000_000,
        ..Fault::default()
    };
    fault.set_targets(&[Target::prefix(&enforcer_tests::key(dest), 128)]);
    fault
}

#[test]
fn guest_faults_refuse_and_blackhole_whole_connections_and_lose_a_share_of_packets() {
    use enforcer_common::chaos::Kind::{GuestBlackhole, GuestLoss, GuestRefuse};
    let mut enforcer = loaded();
    let (refused, blackholed, lossy) = (dest_v4(), "10.2.0.3:8080".parse().unwrap(), dest_v6());
    let maps = enforcer.maps_mut();
    maps.chaos
        .arm(
            &mut maps.config,
            &[
                (0, guest_fault(GuestRefuse, refused, 100.0)),
                (1, guest_fault(GuestBlackhole, blackholed, 30.0)),
                (2, guest_fault(GuestLoss, lossy, 30.0)),
            ],
        )
        .expect("arming");

    // A refusal answers each SYN with a RST, and lets the rest through.
    let s = syn(guest_v4(), 40_000, refused);
    let out = run(&enforcer, CHAOS_IN, &s.frame());
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let rst = frames::parse(&out.data_out);
    assert_eq!(rst.flags, RST | ACK, "{rst:?}");
    assert_eq!(rst.ack, s.seq.wrapping_add(1), "{rst:?}");
    assert_eq!(
        run(&enforcer, CHAOS_IN, &s.established(ACK).frame()).retval,
        TC_NEXT
    );

    // A blackhole draws each connection once: its SYN sent again meets the
    // same fate, and 30 % of the connections lose theirs.
    let connections = 2_000u16;
    let mut dropped = 0;
    for port in 20_000..20_000 + connections {
        let s = syn(guest_v4(), port, blackholed);
        let first = run(&enforcer, CHAOS_IN, &s.frame()).retval;
        assert!(first == TC_ACT_SHOT || first == TC_NEXT, "{first}");
        let again = run(&enforcer, CHAOS_IN, &s.frame()).retval;
        assert_eq!(first, again, "connection {port}: one fate for all its SYNs");
        assert_eq!(
            run(&enforcer, CHAOS_IN, &s.established(ACK).frame()).retval,
            TC_NEXT,
            "a blackhole drops SYNs only"
        );
        dropped += u64::from(first == TC_ACT_SHOT);
    }
    assert!(
        enforcer_tests::draws_within(connections.into(), 0.3).contains(&dropped),
        "{dropped} of {connections} connections blackholed"
    );
    let f = enforcer.maps().chaos.get(1).unwrap();
    assert_eq!((f.affected, f.syns_dropped), (2 * dropped, 2 * dropped));
    assert_eq!(f.spared, 2 * (u64::from(connections) - dropped));

    // Loss draws every packet anew, on one connection.
    let s = syn(guest_v6(), 40_000, lossy);
    let packets = 2_000u64;
    let lost = (0..packets)
        .filter(|_| run(&enforcer, CHAOS_IN, &s.established(ACK).frame()).retval == TC_ACT_SHOT)
        .count() as u64;
    assert!(
        enforcer_tests::draws_within(packets, 0.3).contains(&lost),
        "{lost} of {packets} packets lost"
    );
    assert_eq!(enforcer.maps().chaos.get(2).unwrap().affected, lost);

    // Another port of a target's address is no target.
    let elsewhere: SocketAddr = "10.2.0.2:8081".parse().unwrap();
    assert_eq!(
        run(
            &enforcer,
            CHAOS_IN,
            &syn(guest_v4(), 40_000, elsewhere).frame()
        )
        .retval,
        TC_NEXT
    );

    // Disarmed (one write), nothing acts; armed again past its expiry,
    // the kernel lets it be.
    enforcer::bpf::chaos::disarm(&mut enforcer.maps_mut().config, 0b111).unwrap();
    assert_eq!(run(&enforcer, CHAOS_IN, &s.frame()).retval, TC_NEXT);
    assert_eq!(
        run(&enforcer, CHAOS_IN, &syn(guest_v4(), 1, refused).frame()).retval,
        TC_NEXT
    );
    let expired = Fault {
        until_ns: enforcer::clock::monotonic_ns(),
        ..guest_fault(GuestRefuse, refused, 100.0)
    };
    let maps = enforcer.maps_mut();
    maps.chaos.arm(&mut maps.config, &[(0, expired)]).unwrap();
    assert_eq!(
        run(&enforcer, CHAOS_IN, &syn(guest_v4(), 2, refused).frame()).retval,
        TC_NEXT
    );
}

/// Both ends of a flow arrive at once on two CPUs (the guest's FIN on
/// ingress, the destination's on egress, as when both sides close
/// together): its slot comes back once. A connection held open the whole
/// time makes a slot given back twice show (the count would fall below it)
/// instead of stopping at 0.
#[test]
fn both_ends_of_a_flow_recorded_at_once_give_its_slot_back_once() {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::{Duration, Instant},
    };
    const ROUNDS: u16 = 5_000;
    const STOP: u32 = u32::MAX;
    let enforcer = with_policy(base_policy());
    let dest = dest_v4();
    let held = syn(guest_v4(), 40_000, dest);
    run(&enforcer, IN_TC, &held.frame());
    run(&enforcer, OUT_TC, &held.answer(SYN | ACK).frame());
    assert_eq!(state_of(&enforcer, dest).breaker.active, 1);

    let pair = cpus::two("to record two ends at once");
    // Round r: a connection from port 41 000 + r, established, then its two FINs.
    struct Round {
        syn: Vec<u8>,
        syn_ack: Vec<u8>,
        guest_fin: Vec<u8>,
        dest_fin: Vec<u8>,
    }
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|r| {
            let c = syn(guest_v4(), 41_000 + r, dest);
            Round {
                syn: c.frame(),
                syn_ack: c.answer(SYN | ACK).frame(),
                guest_fin: c.established(FIN | ACK).frame(),
                dest_fin: c.answer_established(FIN | ACK).frame(),
            }
        })
        .collect();
    // The guest's side announces a round and both spin to start it together.
    let (announced, finished) = (AtomicU32::new(0), AtomicU32::new(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Neither side spins past this, should the other have stopped.
    let given_up = deadline + Duration::from_secs(30);
    let outcome = std::thread::scope(|s| {
        let destination_side = s.spawn(|| {
            cpus::pin(pair[1]);
            let mut last = 0;
            loop {
                let r = announced.load(Ordering::Acquire);
                if r == STOP || Instant::now() >= given_up {
                    return;
                }
                if r == last {
                    std::hint::spin_loop();
                    continue;
                }
                run(&enforcer, OUT_TC, &rounds[r as usize - 1].dest_fin);
                finished.store(r, Ordering::Release);
                last = r;
            }
        });
        let guest_side = s.spawn(|| {
            cpus::pin(pair[0]);
            let mut done = 0u32;
            let mut breach = None;
            for (r, round) in (1u32..).zip(&rounds) {
                if Instant::now() >= deadline {
                    break;
                }
                run(&enforcer, IN_TC, &round.syn);
                run(&enforcer, OUT_TC, &round.syn_ack);
                announced.store(r, Ordering::Release);
                run(&enforcer, IN_TC, &round.guest_fin);
                while finished.load(Ordering::Acquire) != r {
                    assert!(Instant::now() < given_up, "the destination's side stopped");
                    std::hint::spin_loop();
                }
                done = r;
                let s = state_of(&enforcer, dest);
                if (s.breaker.active, s.breaker.pending) != (1, 0) {
                    breach = Some((r, s.breaker.active, s.breaker.pending));
                    break;
                }
            }
            announced.store(STOP, Ordering::Release);
            (done, breach)
        });
        let outcome = guest_side.join().expect("the guest's side");
        destination_side.join().expect("the destination's side");
        outcome
    });
    let (done, breach) = outcome;
    assert_eq!(
        breach, None,
        "round, active, pending where the held connection's slot was no longer counted"
    );
    assert!(done >= 500, "only {done} rounds in 30 s");
    let s = state_of(&enforcer, dest);
    assert_eq!(s.counters.successes, u64::from(done) + 1);
    assert_eq!(
        enforcer.maps().flows.all().unwrap().len(),
        1,
        "the held connection's flow"
    );
}

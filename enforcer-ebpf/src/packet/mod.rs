//! The packet plane: breakers and bulkheads for TCP connections that only pass
//! through the host (VMs behind a tap, routed or bridged guests), enforced on
//! the packets crossing a watched interface.
//!
//! The watched interface faces the guests: what it receives was sent by a
//! guest, what it transmits goes to one. A guest's SYN asks the same question
//! a `connect()` asks the gate ([`crate::admission`]); an admitted SYN opens a
//! flow that carries the socket plane's admission record, and the answers
//! travelling back (SYN-ACK, RST, ICMP unreachable), the first FIN or RST, or
//! the daemon's sweep (no answer within the SYN timeout, idle) end it through
//! the same outcome path as a socket's ([`crate::dest::record_end`]).
//!
//! | from the guest                     | action                                           |
//! |------------------------------------|--------------------------------------------------|
//! | SYN nobody can answer: TTL/hop limit ≤ 1, a checksum that does not verify, an IP length past its end | pass untouched, untracked (`packet_syns_ttl_expiring`, `packet_syns_corrupt`) |
//! | SYN not vouched for: IPv4 options, IPv6 extension headers, too long to verify | pass untouched, untracked (`packet_syns_unverified`) |
//! | SYN from a source the host routes out of another interface, or not at all | pass untouched, untracked (`packet_syns_spoofed`) |
//! | SYN, admitted                      | pass, flow tracked                               |
//! | SYN, rejected                      | answered with a RST crafted in place (`packet_resets`) |
//! | SYN with data, rejected            | dropped (`packet_rejects_dropped`)               |
//! | SYN of a tracked flow again        | pass; the same sequence number while unanswered makes silence a timeout |
//! | RST / FIN of a flow, in its window | pass, flow ended (abandoned / closed)            |
//! | RST / FIN outside its window       | pass, ignored (`packet_out_of_window`)           |
//! | fragment / malformed               | pass untouched, counted                          |
//! | anything else                      | pass (a flow's sequence numbers followed)        |
//!
//! | to the guest                       | action                                           |
//! |------------------------------------|--------------------------------------------------|
//! | SYN-ACK acknowledging a pending flow's SYN | pass, success (with its latency)         |
//! | RST acknowledging a pending flow's SYN | pass, refused                                |
//! | ICMP unreachable quoting a pending flow's SYN (its sequence number) | pass, unreachable |
//! | RST / FIN of an answered flow, in its window | pass, flow ended (slot released)     |
//! | any of these outside the window, quoting another sequence number | pass, ignored (`packet_out_of_window`, `packet_icmp_mismatched`) |
//! | any of these that came in through the watched interface (a guest's own, routed back) | pass, ignored (`packet_looped_back`) |
//!
//! A flow that lived through a pause (the hooks pass everything unseen while
//! paused) is never failed: what would have been its failure or its late
//! handshake ends it abandoned (`enforcer_common::flow::Watch`). The window
//! rules are `enforcer_common::flow::window`'s.
//!
//! Nothing is ever dropped but a rejected SYN, and every internal error passes.
//! The chaos faults for guests act after all of this, in a program of their
//! own ([`chaos`]).

mod chaos;
pub mod flows;
mod tc;
mod xdp;

use aya_ebpf::bindings::bpf_fib_lookup;
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    flow::{Direction, FlowKey, Watch},
    packet::{
        HEADER_BYTES, Parsed, Reply, ReversePath, Segment, Vetted, parse, reverse_path, rst_reply,
        tcp_flags, vet_syn,
    },
};
use network_types::ip::IpProto;

use crate::{
    admission::{self, Admission},
    clock::{self, Clock as _, Ktime},
    counters,
    maps::{FIB_SCRATCH, FRAMES, WATCHED},
    policies::Policies,
};

// The scratch slot holds exactly one lookup's parameters.
const _: () = assert!(size_of::<bpf_fib_lookup>() == 64);
const _: () = assert!(size_of::<bpf_fib_lookup>() == size_of::<[u64; 8]>());

/// What to do with a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let it continue untouched.
    Pass,
    /// It was rewritten into a reply: send it back out of the interface.
    Reply,
    /// Drop it.
    Drop,
}

/// Access to the frame of one program type (XDP or TC).
pub trait Frame {
    /// Copies the frame's first bytes (up to [`HEADER_BYTES`]) into `buf`;
    /// how many (0 if none could be read).
    fn load(&self, buf: &mut [u8; HEADER_BYTES]) -> usize;

    /// Writes a reply crafted in `buf` over the frame's first bytes, checksums
    /// as this frame type needs them; false if the frame could not be written
    /// (it must then be dropped: it may be half-written).
    fn store_reply(&mut self, buf: &mut [u8; HEADER_BYTES], reply: &Reply) -> bool;

    /// Whether the TCP checksum at `csum_at` is left for the kernel or the
    /// device to complete (checksum offload): then the field holds only the
    /// pseudo-header's sum, and the packet leaves with a correct checksum.
    fn checksum_deferred(&mut self, csum_at: usize) -> bool;

    /// Whether a frame going to the guests came in through this same
    /// interface: a guest's own packet, routed back.
    fn looped_back(&self) -> bool;

    /// The interface a frame from the guests arrived on.
    fn ingress_ifindex(&self) -> u32;

    /// `bpf_fib_lookup` in this program type's network namespace, no flags:
    /// the helper's return code; the egress interface is left in `params`.
    fn fib_lookup(&self, params: *mut bpf_fib_lookup) -> i64;
}

/// `len` as a helper's size argument, in 1..=[`HEADER_BYTES`] in a form the
/// verifier can follow: a `len == 0` test is easily merged away by the
/// compiler, leaving a size the verifier thinks may be zero. 0 becomes
/// `HEADER_BYTES`, which the helpers then refuse for a frame that short.
#[inline(always)]
fn helper_len(len: usize) -> u32 {
    (len.wrapping_sub(1).min(HEADER_BYTES - 1) + 1) as u32
}

/// A frame the guest sent (received on the watched interface).
#[inline(always)]
pub fn from_guest(frame: &mut impl Frame) -> Action {
    let config = counters::config();
    if config.is_paused() {
        return Action::Pass;
    }
    let Some(buf) = scratch(FROM_GUEST) else {
        return Action::Pass;
    };
    let len = frame.load(buf);
    // A guest's ICMP errors are about connections to it, not from it.
    let Parsed::Tcp(seg) = parse_counted(buf, len) else {
        return Action::Pass;
    };
    let key =
        FlowKey::from_guest(seg.src, seg.sport, seg.dst, seg.dport).in_netns(config.netns_cookie);
    // A flow's last sighting is kept to a granularity far above a tick: the
    // coarse clock. (An admission reads the precise one for its start.)
    let now = Ktime.coarse();
    if seg.flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN {
        return on_syn(frame, buf, len, &seg, &key, now, &config);
    }
    let (watch, policies) = (Watch::of(&config), Policies::of(&config));
    flows::on_segment(&key, Direction::FromGuest, &seg, now, watch, policies);
    Action::Pass
}

/// A frame sent to the guest (transmitted on the watched interface). Always
/// passes: answers are only observed.
#[inline(always)]
pub fn to_guest(frame: &impl Frame) -> Action {
    let config = counters::config();
    if config.is_paused() {
        return Action::Pass;
    }
    let Some(buf) = scratch(TO_GUEST) else {
        return Action::Pass;
    };
    let len = frame.load(buf);
    // Only a flow's last sighting is timed here (an answer's latency is
    // measured where its end is recorded).
    let now = Ktime.coarse();
    let (watch, policies) = (Watch::of(&config), Policies::of(&config));
    match parse_counted(buf, len) {
        Parsed::Tcp(seg) => {
            let key = FlowKey::to_guest(seg.src, seg.sport, seg.dst, seg.dport)
                .in_netns(config.netns_cookie);
            if frame.looped_back() {
                flows::looped_back(&key);
            } else {
                flows::on_segment(&key, Direction::ToGuest, &seg, now, watch, policies);
            }
        }
        // The quoted segment is the guest's own SYN.
        Parsed::Unreachable(q) => {
            let key =
                FlowKey::from_guest(q.src, q.sport, q.dst, q.dport).in_netns(config.netns_cookie);
            if frame.looped_back() {
                flows::looped_back(&key);
            } else {
                flows::on_unreachable(&key, q.seq, watch, policies);
            }
        }
        Parsed::Malformed | Parsed::Fragment | Parsed::Other => {}
    }
    Action::Pass
}

/// [`FRAMES`] slots: a program on one direction never runs inside one on the
/// other on the same CPU, but separate slots make that not matter.
const FROM_GUEST: u32 = 0;
const TO_GUEST: u32 = 1;

/// This CPU's scratch copy of a frame's headers.
#[inline(always)]
fn scratch(slot: u32) -> Option<&'static mut [u8; HEADER_BYTES]> {
    // SAFETY: a per-CPU value, used by one program run at a time on this CPU.
    FRAMES.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// The frame parsed, fragments and malformed frames counted.
#[inline(always)]
fn parse_counted(buf: &[u8; HEADER_BYTES], len: usize) -> Parsed {
    let parsed = parse(buf, len);
    match parsed {
        Parsed::Malformed => counters::bump(GlobalCounter::PacketMalformed),
        Parsed::Fragment => counters::bump(GlobalCounter::PacketFragments),
        _ => {}
    }
    parsed
}

/// A guest opens a connection: admitted (tracked), or answered with a RST,
/// if anyone could answer it.
#[inline(always)]
fn on_syn(
    frame: &mut impl Frame,
    buf: &mut [u8; HEADER_BYTES],
    len: usize,
    seg: &Segment,
    key: &FlowKey,
    now: u64,
    config: &Config,
) -> Action {
    counters::bump(GlobalCounter::PacketSyns);
    // A SYN nobody could answer, or from a source its answers would not
    // reach, is not judged: checked only for SYNs a flow or a policy covers.
    let judged = |frame: &mut _| deliverable(frame, buf, len, seg) && routed_back(frame, seg);
    if flows::on_syn_again(key, seg.seq, now, || judged(frame)) {
        return Action::Pass;
    }
    // Forwarded packets belong to no cgroup: scoped policies are the socket
    // plane's only.
    let applies = |policy: &enforcer_common::policy::Policy| {
        if policy.is_scoped() {
            counters::bump(GlobalCounter::OutOfScope);
            return false;
        }
        judged(frame)
    };
    let policies = Policies::of(config);
    let Some(policy_id) = admission::matched(policies, &key.dest) else {
        return Action::Pass;
    };
    // No kernel logs here: these programs' frames take 496 of the 512 stack
    // bytes, and aya-log's calls need 120 more (the verifier refuses the
    // sum). The packet plane's rare paths are counted only.
    match admission::admit(
        &key.dest,
        policy_id,
        clock::Ticked(now),
        config.overrides != 0,
        policies,
        applies,
        // A flow's SYN again finds its flow before it asks (`on_syn_again`).
        || {},
        // A guest's SYN belongs to no cgroup, hence to no class.
        || None,
        false,
    ) {
        Admission::Pass => Action::Pass,
        Admission::Admitted { dest, mut sock } => {
            flows::open(key, dest, &mut sock, seg, now, buf);
            Action::Pass
        }
        Admission::Rejected { .. } => reset(frame, buf, seg),
    }
}

/// Whether the SYN reaches its destination as sent; counted when it cannot.
#[inline(always)]
fn deliverable(
    frame: &mut impl Frame,
    buf: &[u8; HEADER_BYTES],
    len: usize,
    seg: &Segment,
) -> bool {
    let counter = match vet_syn(buf, len, seg) {
        Vetted::Deliverable => return true,
        Vetted::ChecksumOffloaded if frame.checksum_deferred(seg.layout.tcp_checksum()) => {
            return true;
        }
        // The offload form written as a final checksum: the destination drops it.
        Vetted::ChecksumOffloaded | Vetted::Corrupt => GlobalCounter::PacketSynsCorrupt,
        Vetted::Unverifiable => GlobalCounter::PacketSynsUnverified,
        Vetted::HopLimitExpiring => GlobalCounter::PacketSynsTtlExpiring,
    };
    counters::bump(counter);
    false
}

/// Whether the host routes answers to the SYN's source back out of the
/// interface it came in on (`enforcer_common::packet::reverse_path`); a
/// spoofed source is counted. Fails open: no scratch, no answer.
#[inline(always)]
fn routed_back(frame: &impl Frame, seg: &Segment) -> bool {
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    let Some(scratch) = FIB_SCRATCH.get_ptr_mut(0) else {
        return true;
    };
    let params: *mut bpf_fib_lookup = scratch.cast();
    let ingress = frame.ingress_ifindex();
    // SAFETY: a per-CPU value, used by one program run at a time on this CPU,
    // as big as the struct and 8-aligned. Every input field is written: the
    // slot holds the previous lookup's outputs.
    let rc = unsafe {
        let p = &mut *params;
        // The route a packet to the SYN's source, from its destination,
        // arriving on this interface would take: the way the answers go.
        p.family = if seg.layout.ipv6 { AF_INET6 } else { AF_INET };
        p.l4_protocol = IpProto::Tcp as u8;
        p.sport = seg.dport.to_be();
        p.dport = seg.sport.to_be();
        // No MTU check against a length.
        p.__bindgen_anon_1.tot_len = 0;
        p.ifindex = ingress;
        // Covers the IPv4 TOS byte too.
        p.__bindgen_anon_2.flowinfo = 0;
        if seg.layout.ipv6 {
            p.__bindgen_anon_3.ipv6_src = seg.dst;
            p.__bindgen_anon_4.ipv6_dst = seg.src;
        } else {
            // Addresses are v4-mapped words in memory order: the last is the
            // IPv4 address as it lies in the packet.
            p.__bindgen_anon_3.ipv4_src = seg.dst[3];
            p.__bindgen_anon_4.ipv4_dst = seg.src[3];
        }
        p.__bindgen_anon_5.tbid = 0;
        frame.fib_lookup(params)
    };
    // SAFETY: as above; the helper wrote the egress interface (or left ours).
    let egress = unsafe { (*params).ifindex };
    // SAFETY: a value of WATCHED, valid for the program's run.
    let master = WATCHED.get_ptr(ingress).map_or(0, |m| unsafe { *m });
    if reverse_path(ingress, master, rc, egress) == ReversePath::Elsewhere {
        counters::bump(GlobalCounter::PacketSynsSpoofed);
        return false;
    }
    true
}

/// Answers a rejected SYN with a RST, as a closed port would: the guest's
/// `connect()` fails with ECONNREFUSED at once.
#[inline(always)]
fn reset(frame: &mut impl Frame, buf: &mut [u8; HEADER_BYTES], seg: &Segment) -> Action {
    if rst(frame, buf, seg) {
        counters::bump(GlobalCounter::PacketResets);
        return Action::Reply;
    }
    counters::bump(GlobalCounter::PacketRejectsDropped);
    Action::Drop
}

/// Rewrites the SYN in the frame into the RST a closed port would send;
/// false if it could not (the frame must then be dropped: it may be
/// half-written).
#[inline(always)]
fn rst(frame: &mut impl Frame, buf: &mut [u8; HEADER_BYTES], seg: &Segment) -> bool {
    rst_reply(buf, seg).is_some_and(|reply| frame.store_reply(buf, &reply))
}

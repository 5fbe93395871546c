//! The guest faults ([`enforcer_common::chaos`]'s `Guest*` kinds), run by
//! `chaos_in_tc` on a watched interface's TC ingress, after the packet
//! plane's own ingress program (TC or XDP) let the packet through: a
//! guest's SYN it admitted already holds a flow, so what a fault does to the
//! packet is what the flow sees of the network.
//!
//! A program of its own: the packet plane's frame already fills the stack
//! and much of the verifier's budget, and with no fault armed this costs a
//! run that reads one field of the configuration.
//!
//! | case                                         | verdict                 | accounting            |
//! |----------------------------------------------|-------------------------|-----------------------|
//! | no fault armed, paused, not TCP              | next program            | —                     |
//! | a refusal draws a guest's SYN                | answered with a RST; the flow this very SYN opened (same sequence number) is abandoned: not the destination's failure | the fault's `affected` |
//! | a blackhole draws a guest's SYN              | dropped: the flow, if any, times out as it would in an outage | `affected`, `syns_dropped` |
//! | a loss draws a packet                        | dropped                 | `affected`            |
//! | the chance spares it                         | next program            | the fault's `spared`  |
//!
//! A guest can only bring a fault upon its own packets: the answer goes
//! back out of the interface the SYN came in on, and another guest's flow
//! ends only for a SYN carrying that flow's initial sequence number.

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_get_prandom_u32};
use enforcer_common::{
    chaos::{self, Fault, GuestAction},
    flow::FlowKey,
    packet::{HEADER_BYTES, Parsed, parse, tcp_flags},
};

use super::{Action, Frame, flows};
use crate::{atomic, maps::CONFIG, policies::Policies};

/// A frame a guest sent, after the packet plane passed it.
#[inline(always)]
pub fn from_guest(frame: &mut impl Frame) -> Action {
    let Some(config) = CONFIG.get(0) else {
        return Action::Pass;
    };
    let armed = config.chaos_armed;
    if armed == 0 || config.is_paused() {
        return Action::Pass;
    }
    // The ingress program's scratch: both run on what the guests send, one
    // after the other, never one inside the other.
    let Some(buf) = super::scratch(super::FROM_GUEST) else {
        return Action::Pass;
    };
    let len = frame.load(buf);
    let mut key = FlowKey::default();
    let mut seq = 0;
    let syn = match connection(buf, len, config.netns_cookie, &mut key, &mut seq) {
        NOT_TCP => return Action::Pass,
        OPENING_SYN => true,
        _ => false,
    };
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    match GuestAction::from_u32(first_drawn(armed, &key, syn, now)) {
        GuestAction::Pass => Action::Pass,
        GuestAction::Drop => Action::Drop,
        GuestAction::Refuse => refuse(frame, buf, len, &key, seq),
    }
}

/// What [`connection`] found.
const NOT_TCP: u32 = 0;
const SEGMENT: u32 = 1;
const OPENING_SYN: u32 = 2;

/// Parses the frame's `len` bytes in `buf`: for a TCP segment, its
/// connection (in the network namespace `netns`) into `key` and its sequence
/// number into `seq`; whether it is one ([`SEGMENT`]), a connection's
/// opening SYN ([`OPENING_SYN`]), or not TCP ([`NOT_TCP`]: malformed frames
/// and fragments were counted by the packet plane).
///
/// A function of its own: the parse's stack and its many ways through (one
/// per header layout) end here, and the faults' loop is walked once per IP
/// version, not once per layout. A refusal, rare, parses again.
#[inline(never)]
fn connection(
    buf: &[u8; HEADER_BYTES],
    len: usize,
    netns: u64,
    key: &mut FlowKey,
    seq: &mut u32,
) -> u32 {
    let Parsed::Tcp(seg) = parse(buf, len) else {
        return NOT_TCP;
    };
    *key = FlowKey::from_guest(seg.src, seg.sport, seg.dst, seg.dport).in_netns(netns);
    *seq = seg.seq;
    if seg.flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN {
        OPENING_SYN
    } else {
        SEGMENT
    }
}

/// Answers the SYN `seq` of connection `key` in `buf` (`len` bytes of the
/// frame) with a RST; a flow it opened is abandoned.
///
/// A function of its own: its stack (the flow's end is recorded under the
/// destination's lock) adds to the program's, not to the faults' loop's.
#[inline(never)]
fn refuse(
    frame: &mut impl Frame,
    buf: &mut [u8; HEADER_BYTES],
    len: usize,
    key: &FlowKey,
    seq: u32,
) -> Action {
    flows::abandon_syn(key, seq, Policies::active());
    match parse(buf, len) {
        Parsed::Tcp(seg) if super::rst(frame, buf, &seg) => Action::Reply,
        // Half-written, or not what it was: dropped, as the fault wants.
        _ => Action::Drop,
    }
}

/// What the first armed, live guest fault that targets the connection `key`
/// and acts on this packet (`syn`: its opening SYN) does to it, drawn with
/// its chance and counted: a [`GuestAction`] as `u32`.
///
/// A function of its own answering in one register, so that the compiler
/// cannot copy the caller's rest once for each way out of the loop, nor the
/// verifier walk it once for each.
#[inline(never)]
fn first_drawn(armed: u32, key: &FlowKey, syn: bool, now: u64) -> u32 {
    crate::chaos::first_armed(armed, |_, fault| {
        let action = acts(fault, key, syn, now);
        (action != GuestAction::Pass as u32 && drawn(fault, key, syn, action) != 0)
            .then_some(action)
    })
    .unwrap_or(GuestAction::Pass as u32)
}

/// What the fault does to the packet (a [`GuestAction`] as `u32`) if it is
/// live at `now` and `key` is one of its targets, else `Pass`.
///
/// This and [`drawn`] are BPF-to-BPF calls answering in one register, so
/// that the verifier walks the rest of the loop once per answer (see
/// `crate::chaos`).
#[inline(never)]
fn acts(fault: *const Fault, key: &FlowKey, syn: bool, now: u64) -> u32 {
    // SAFETY: a value of CHAOS, valid for the program's run.
    let f = unsafe { &*fault };
    if !f.live_for_guests(now) || !f.targets(&key.dest) {
        return GuestAction::Pass as u32;
    }
    GuestAction::of(f.kind, syn) as u32
}

/// 1 if the fault's chance draws the packet of connection `key`, which it
/// would `action` (a [`GuestAction`] as `u32`): once per connection for
/// refusals and blackholes, once per packet for loss. Counted as affected
/// (and a dropped SYN as such), or as spared (0).
#[inline(never)]
fn drawn(fault: *mut Fault, key: &FlowKey, syn: bool, action: u32) -> u32 {
    // SAFETY: a value of CHAOS, valid for the program's run; only fields'
    // addresses are taken for the counts.
    let (f, affected, spared, syns_dropped) = unsafe {
        (
            &*fault,
            &raw mut (*fault).affected,
            &raw mut (*fault).spared,
            &raw mut (*fault).syns_dropped,
        )
    };
    let draw = if chaos::draws_per_connection(f.kind) {
        chaos::connection_draw(key, f.until_ns)
    } else {
        // SAFETY: plain helper call, no argument.
        unsafe { bpf_get_prandom_u32() }
    };
    if !f.drawn(draw) {
        atomic::add(spared, 1);
        return 0;
    }
    atomic::add(affected, 1);
    if syn && action == GuestAction::Drop as u32 {
        atomic::add(syns_dropped, 1);
    }
    1
}

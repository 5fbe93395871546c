//! The flow table: one entry per admitted packet-plane connection, holding its
//! admission record until its end is recorded.
//!
//! Who ends a flow (a packet either way, the daemon's sweep) races nobody that
//! matters: the end is recorded under the destination's lock from the flags in
//! the entry, so the outcome and the slot count once, and the entry is removed
//! only after that. The sequence numbers a flow tracks are written without
//! the lock, each side's from its own packets: a lost race costs a number the
//! next segment moves again.

use aya_ebpf::bindings::BPF_NOEXIST;
use enforcer_common::{
    control::Reply,
    counters::GlobalCounter,
    dest::DestState,
    flow::{Direction, Flow, FlowKey, Seen, Timeouts, Watch, Window, window::marks},
    outcome::{End, Outcome},
    packet::{HEADER_BYTES, Segment},
    sock::SockInfo,
};

use crate::{admission, counters, dest::record_end, maps::FLOWS, policies::Policies};

/// A SYN on the ports of a tracked flow. The flow's own SYN sent again while
/// unanswered, and `judged` (it could be delivered and answered), marks the
/// silence a timeout needs. Whether the flow exists (the SYN then asks
/// nothing of the gate: the flow holds its admission).
#[inline(always)]
pub fn on_syn_again(key: &FlowKey, seq: u32, now: u64, judged: impl FnOnce() -> bool) -> bool {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a live value of FLOWS; `seq` and the timestamp are written
    // without the lock, `sock` is not touched.
    let f = unsafe { &mut *flow };
    if f.is_syn_again(seq) && judged() {
        if !f.seq.syn_again() {
            f.seq.marks |= marks::SYN_AGAIN;
        }
        if f.needs_refresh(now) {
            f.last_seen_ns = now;
        }
    }
    true
}

/// Records an admitted SYN's flow, or gives the admission back (counted) when
/// the table is full. The entry is built in `scratch`, the frame's copy, which
/// the SYN needs no more: on the stack, next to the admission's, it would not
/// fit in the 512 bytes the verifier allows.
#[inline(always)]
pub fn open(
    key: &FlowKey,
    dest: *mut DestState,
    sock: &mut SockInfo,
    syn: &Segment,
    now: u64,
    scratch: &mut [u8; HEADER_BYTES],
) {
    const { assert!(size_of::<Flow>() <= HEADER_BYTES) };
    // SAFETY: the scratch is a map value (8-byte aligned, as a Flow needs) of
    // at least a Flow's size, this program's alone on this CPU; every field of
    // the Flow is written before it is read.
    let flow = unsafe { &mut *scratch.as_mut_ptr().cast::<Flow>() };
    flow.sock = *sock;
    flow.last_seen_ns = now;
    flow.seq = Window::opened_by(syn);
    // NOEXIST: a SYN retransmitted on another CPU in between already holds the
    // flow; this admission is then the one given back.
    if FLOWS.insert(key, flow, BPF_NOEXIST.into()).is_ok() {
        counters::bump(GlobalCounter::Admitted);
    } else {
        admission::cancel(dest, sock);
        counters::bump(GlobalCounter::FlowTableFull);
    }
}

/// A TCP segment of the flow `key` crossed the interface.
#[inline(always)]
pub fn on_segment(
    key: &FlowKey,
    direction: Direction,
    seg: &Segment,
    now: u64,
    watch: Watch,
    policies: Policies,
) {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live value of FLOWS; `on_segment` writes the sequence numbers
    // only, and `sock` is changed only under the destination's lock.
    let f = unsafe { &mut *flow };
    match f.on_segment(direction, seg, watch) {
        Seen::End(end) => finish(key, flow, end, policies),
        Seen::OutOfWindow => counters::bump(GlobalCounter::PacketOutOfWindow),
        // A racing writer writes a timestamp just as good.
        Seen::Nothing if f.needs_refresh(now) => f.last_seen_ns = now,
        Seen::Nothing => {}
    }
}

/// An ICMP destination-unreachable quoted a segment of the flow `key` with
/// sequence number `quoted_seq`.
#[inline(always)]
pub fn on_unreachable(key: &FlowKey, quoted_seq: u32, watch: Watch, policies: Policies) {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live value of FLOWS.
    match unsafe { &*flow }.on_unreachable(quoted_seq, watch) {
        Seen::End(end) => finish(key, flow, end, policies),
        Seen::OutOfWindow => counters::bump(GlobalCounter::PacketIcmpMismatched),
        Seen::Nothing => {}
    }
}

/// A chaos fault answers the guest's SYN `seq` with a RST: the flow it
/// opened, still unanswered, ends abandoned (its slot given back, no
/// failure counted: the refusal is the experiment's, not the destination's).
/// A SYN with another sequence number leaves the flow alone.
#[inline(always)]
pub fn abandon_syn(key: &FlowKey, seq: u32, policies: Policies) {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live value of FLOWS.
    if unsafe { &*flow }.is_syn_again(seq) {
        finish(key, flow, End::Failed(Outcome::Abandoned), policies);
    }
}

/// A packet for the flow `key` went to the guest after coming in through the
/// watched interface: a guest's own, routed back. Never an answer; counted
/// when it would have concerned a tracked flow.
#[inline(always)]
pub fn looped_back(key: &FlowKey) {
    if FLOWS.get_ptr(key).is_some() {
        counters::bump(GlobalCounter::PacketLoopedBack);
    }
}

/// The daemon's sweep asks to expire a flow: decided again here, against the
/// flow as it is now.
#[inline(always)]
pub fn expire(key: &FlowKey, now: u64) -> Reply {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return Reply::NotFound;
    };
    // SAFETY: a live value of FLOWS.
    let f = unsafe { &*flow };
    let config = counters::config();
    let policies = Policies::of(&config);
    let policy_timeout_ms = policies
        .policy(f.sock.policy_id)
        .map_or(0, |p| p.connect_timeout_ms);
    let timeouts = Timeouts::of(&config, policy_timeout_ms);
    match f.expiry(now, timeouts, Watch::of(&config)) {
        Some(end) => {
            finish(key, flow, end, policies);
            Reply::Applied
        }
        None => Reply::NotApplicable,
    }
}

/// Records `end` for the flow and, when it finishes the flow, removes it.
#[inline(always)]
fn finish(key: &FlowKey, flow: *mut Flow, end: End, policies: Policies) {
    // SAFETY: a live value of FLOWS (removed entries stay valid until the
    // program returns); only the field's address is taken: `record_end`
    // reads what it holds under the destination's lock.
    record_end(unsafe { &raw mut (*flow).sock }, 0, end, policies);
    if end.finishes() {
        let _ = FLOWS.remove(key);
    }
}

//! The flow table: one entry per admitted packet-plane connection, holding its
//! admission record until its end is recorded.
//!
//! Who ends a flow (a packet either way, the daemon's sweep) races nobody that
//! matters: the end is recorded under the destination's lock from the flags in
//! the entry, so the outcome and the slot count once, and the entry is removed
//! only after that.

use aya_ebpf::bindings::BPF_NOEXIST;
use enforcer_common::{
    control::result,
    counters::GlobalCounter,
    dest::DestState,
    flow::{Direction, Flow, FlowKey, finishes, timeouts_ns},
    outcome::End,
    sock::SockInfo,
};

use crate::{admission, counters, dest::record_end, maps::FLOWS, maps::POLICIES};

/// Whether the flow is tracked.
#[inline(always)]
pub fn exists(key: &FlowKey) -> bool {
    FLOWS.get_ptr(key).is_some()
}

/// Records an admitted SYN's flow, or gives the admission back (counted) when
/// the table is full.
#[inline(always)]
pub fn open(key: &FlowKey, dest: *mut DestState, sock: &mut SockInfo, now: u64) {
    let flow = Flow {
        sock: *sock,
        last_seen_ns: now,
    };
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
pub fn on_segment(key: &FlowKey, direction: Direction, tcp_flags: u8, now: u64) {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live value of FLOWS; fields other than `sock` are written
    // without the lock (a timestamp), `sock` only under the destination's lock.
    let f = unsafe { &*flow };
    if let Some(end) = f.on_segment(direction, tcp_flags) {
        finish(key, flow, end);
    } else if f.needs_refresh(now) {
        // SAFETY: as above; a racing writer writes a timestamp just as good.
        unsafe { (*flow).last_seen_ns = now };
    }
}

/// An ICMP destination-unreachable quoted the flow's SYN.
#[inline(always)]
pub fn on_unreachable(key: &FlowKey) {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live value of FLOWS.
    if let Some(end) = unsafe { &*flow }.on_unreachable() {
        finish(key, flow, end);
    }
}

/// The daemon's sweep asks to expire a flow: decided again here, against the
/// flow as it is now. Returns a [`result`] code.
#[inline(always)]
pub fn expire(key: &FlowKey, now: u64) -> u32 {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return result::NOT_FOUND;
    };
    // SAFETY: a live value of FLOWS.
    let f = unsafe { &*flow };
    let policy_timeout_ms = POLICIES
        .get(f.sock.policy_id)
        .map_or(0, |p| p.connect_timeout_ms);
    let (syn_ns, idle_ns) = timeouts_ns(&counters::config(), policy_timeout_ms);
    match f.expiry(now, syn_ns, idle_ns) {
        Some(end) => {
            finish(key, flow, end);
            result::APPLIED
        }
        None => result::NOT_APPLICABLE,
    }
}

/// Records `end` for the flow and, when it finishes the flow, removes it.
#[inline(always)]
fn finish(key: &FlowKey, flow: *mut Flow, end: End) {
    // SAFETY: a live value of FLOWS (removed entries stay valid until the
    // program returns); its `sock` is changed only under the destination's lock,
    // which `record_end` takes.
    record_end(unsafe { &mut (*flow).sock }, end);
    if finishes(end) {
        let _ = FLOWS.remove(key);
    }
}

//! `control`: an XDP program that is never attached. The daemon runs it with
//! `BPF_PROG_TEST_RUN`, the command in the test packet, to change a
//! destination's breaker under the destination's lock — the only way to do so
//! without racing the hooks (XDP is a program type that may take spin locks and
//! be test-run).
//!
//! | input                          | return           |
//! |--------------------------------|------------------|
//! | packet shorter than a command  | `INVALID`        |
//! | unknown destination or flow    | `NOT_FOUND`      |
//! | command moot in this state     | `NOT_APPLICABLE` |
//! | applied                        | `APPLIED`        |

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext};
use enforcer_common::{
    breaker::Transition,
    control::{Command, kind, result},
    dest::DestKey,
    sock::SockInfo,
};

use crate::dest::{Change, Locked, Tracked};

#[xdp]
pub fn control(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + size_of::<Command>() > end {
        return result::INVALID;
    }
    // SAFETY: bounds checked just above; the packet is the daemon's command.
    let command = unsafe { core::ptr::read_unaligned(start as *const Command) };
    if command.kind == kind::FLOW_EXPIRE {
        return crate::packet::flows::expire(&command.flow, unsafe { bpf_ktime_get_ns() });
    }
    run(command.kind, &command.flow.dest)
}

#[inline(always)]
fn run(kind: u32, dest: &DestKey) -> u32 {
    let Some(policy_id) = crate::maps::DESTS
        .get_ptr(dest)
        .map(|d| unsafe { (*d).policy_id })
    else {
        return result::NOT_FOUND;
    };
    // `Tracked` finds a destination's policy, backoff and guard from a socket's
    // record; a command names the destination directly.
    let probe = SockInfo {
        dest: *dest,
        policy_id,
        ..SockInfo::default()
    };
    let Some(mut t) = Tracked::of(&probe) else {
        return result::NOT_FOUND;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let (policy, backoff) = (t.policy, t.backoff);
    let mut lock = Locked::acquire(t.dest);
    let d = lock.state();
    let outcome: Option<Option<Transition>> = match kind {
        kind::FORGET => d.forgettable().then_some(None),
        kind::RESET => Some(d.reset(now, &mut t.guard)),
        kind::HEAL_PROBE_OK => d.heal_probe_ok(policy, now, &mut t.guard),
        kind::HEAL_PROBE_FAILED => d.heal_probe_failed(policy, backoff, now).map(Some),
        _ => None,
    };
    let change = outcome.flatten().and_then(|t| Change::after(Some(t), d));
    drop(lock);
    if let Some(change) = change {
        change.emit(dest, policy_id, now);
    }
    if kind == kind::FORGET && outcome.is_some() {
        // After the lock: a connect admitted in between loses its accounting (the
        // destination was idle for `gc_idle`: rare), never a slot of a live one.
        if crate::maps::DESTS.remove(dest).is_ok() {
            t.guard.untracked();
        }
    }
    match outcome {
        Some(_) => result::APPLIED,
        None if kind == kind::RESET
            || kind == kind::HEAL_PROBE_OK
            || kind == kind::HEAL_PROBE_FAILED =>
        {
            result::NOT_APPLICABLE
        }
        None => result::INVALID,
    }
}

//! `control`: an XDP program that is never attached. The daemon runs it with
//! `BPF_PROG_TEST_RUN`, the command in the test packet, to change a
//! destination's breaker under the destination's lock — the only way to do so
//! without racing the hooks (XDP is a program type that may take spin locks and
//! be test-run).
//!
//! | input                                      | return          |
//! |--------------------------------------------|-----------------|
//! | packet shorter than a command, unknown kind| `Invalid`       |
//! | unknown destination, flow or policy        | `NotFound`      |
//! | command moot in this state                 | `NotApplicable` |
//! | applied                                    | `Applied`       |
//!
//! (`SET_LIMIT` and `SET_BASELINE` on a destination of another policy, or of
//! a stale epoch, are moot.)

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext};
use enforcer_common::{
    breaker::Transition,
    control::{
        Command, Kind, Reply, may_forget, of_policy, set_baseline, set_limit, stale_policy, when,
    },
};

use crate::{
    dest::{Change, Locked, PolicyGuard, Tracked},
    policies::Policies,
};

// `Command::kind` stays a `u32` (see `enforcer_common`'s documentation): a
// match on it takes constant patterns (decoding it first with
// `Kind::from_raw` costs instructions here).
const RESET: u32 = Kind::Reset as u32;
const HEAL_PROBE_OK: u32 = Kind::HealProbeOk as u32;
const HEAL_PROBE_FAILED: u32 = Kind::HealProbeFailed as u32;
const FORGET: u32 = Kind::Forget as u32;
const FLOW_EXPIRE: u32 = Kind::FlowExpire as u32;
const ADJUST_POLICY_STATS: u32 = Kind::AdjustPolicyStats as u32;
const RELEASE_ORPHANED: u32 = Kind::ReleaseOrphaned as u32;
const SET_LIMIT: u32 = Kind::SetLimit as u32;
const EJECT: u32 = Kind::Eject as u32;
const SET_BASELINE: u32 = Kind::SetBaseline as u32;

#[xdp]
pub fn control(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + size_of::<Command>() > end {
        return Reply::Invalid as u32;
    }
    // SAFETY: bounds checked just above; the packet is the daemon's command.
    let command = unsafe { core::ptr::read_unaligned(start as *const Command) };
    match command.kind {
        FLOW_EXPIRE => {
            // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
            crate::packet::flows::expire(&command.flow, unsafe { bpf_ktime_get_ns() }) as u32
        }
        ADJUST_POLICY_STATS => adjust(&command) as u32,
        _ => run(&command) as u32,
    }
}

#[inline(always)]
fn adjust(command: &Command) -> Reply {
    let Some(stats) = PolicyGuard::stats(command.policy_id) else {
        return Reply::NotFound;
    };
    let (tracked, open) = command.deltas();
    PolicyGuard::adjust(stats, tracked, open);
    Reply::Applied
}

#[inline(always)]
fn run(command: &Command) -> Reply {
    let (kind, dest) = (command.kind, &command.flow.dest);
    if !matches!(
        kind,
        FORGET
            | RESET
            | HEAL_PROBE_OK
            | HEAL_PROBE_FAILED
            | RELEASE_ORPHANED
            | SET_LIMIT
            | EJECT
            | SET_BASELINE
    ) {
        return Reply::Invalid;
    }
    let Some(policy_id) = crate::maps::DESTS
        .get_ptr(dest)
        // SAFETY: a non-null pointer to a value of DESTS, as the lookup
        // returned it: valid for the program's run.
        .map(|d| unsafe { (*d).policy_id })
    else {
        return Reply::NotFound;
    };
    let Some(mut t) = Tracked::of(dest, policy_id, Policies::active()) else {
        return Reply::NotFound;
    };
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let (policy, backoff) = (t.policy, t.backoff);
    let only_if_stale = command.when() & when::STALE_POLICY != 0;
    let mut lock = Locked::acquire(t.dest);
    let d = lock.state();
    // The policy (and so the guard) was looked up before the lock, from the
    // id stored then. A connect that moved the destination to another policy
    // in between took its counts along: the daemon's commands then do nothing
    // (its next scan sees the destination as it is now).
    let same_policy = d.policy_id == policy_id;
    let outcome: Option<Option<Transition>> = match kind {
        FORGET => (same_policy
            && may_forget(
                d,
                command.idle_since_ns(),
                command.when(),
                policy.epoch,
                now,
            ))
        .then(|| {
            // Gives the open count back, under the lock, so it is given back
            // once whatever runs next; no event: the destination is leaving.
            d.reset(now, &mut t.guard);
            None
        }),
        RESET if only_if_stale => {
            (same_policy && stale_policy(d, policy.epoch)).then(|| d.reset(now, &mut t.guard))
        }
        RESET => Some(d.reset(now, &mut t.guard)),
        HEAL_PROBE_OK => d.heal_probe_ok(policy, now, &mut t.guard),
        HEAL_PROBE_FAILED => d.heal_probe_failed(policy, backoff, now).map(Some),
        RELEASE_ORPHANED => d.orphan_slots(now).map(|()| None),
        SET_LIMIT => set_limit(d, command.policy_id, policy.epoch, command.limit()).then_some(None),
        SET_BASELINE => {
            set_baseline(d, command.policy_id, policy.epoch, command.baseline()).then_some(None)
        }
        // Judged under the policy it names (the one whose epoch was looked
        // up), and only while the destination is still of it.
        EJECT if command.policy_id == policy_id && of_policy(d, policy_id, policy.epoch) => {
            d.eject(now, command.duration_ns(), &mut t.guard).map(Some)
        }
        _ => None,
    };
    let change = outcome.flatten().and_then(|t| Change::after(Some(t), d));
    drop(lock);
    if let Some(change) = change {
        change.emit(dest, policy_id, now);
    }
    if kind == FORGET && outcome.is_some() {
        // After the lock (no helper may run under it): a connect admitted in
        // between finds a CLOSED entry and loses its accounting with it (the
        // destination was idle: rare), never a slot of a live entry. The
        // tracked count goes with the one successful removal.
        if crate::maps::DESTS.remove(dest).is_ok() {
            t.guard.untracked();
        }
    }
    match outcome {
        Some(_) => Reply::Applied,
        None => Reply::NotApplicable,
    }
}

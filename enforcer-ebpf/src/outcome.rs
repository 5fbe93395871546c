//! Recording a connect's outcome, exactly once per admitted connect.

use enforcer_common::{counters::GlobalCounter, outcome::Outcome, sock::SockInfo, sock::flags};

use crate::{atomic, counters, maps::DESTS};

/// Counts `outcome` for the socket's destination unless an outcome was already
/// recorded for this connect (sock_ops and sock_release may both see its end).
#[inline(always)]
pub fn record(info: *mut SockInfo, outcome: Outcome) {
    // SAFETY: `info` is non-null socket storage, valid for the program's run.
    let previous = atomic::fetch_or_u64(unsafe { &raw mut (*info).flags }, flags::OUTCOME_RECORDED);
    if previous & flags::OUTCOME_RECORDED != 0 {
        return;
    }
    counters::bump(match outcome {
        Outcome::Success => GlobalCounter::Successes,
        Outcome::Abandoned => GlobalCounter::Abandoned,
        Outcome::Refused | Outcome::Timeout | Outcome::Unreachable => GlobalCounter::Failures,
    });
    // SAFETY: as above.
    let dest = unsafe { &(*info).dest };
    // The entry may have been garbage-collected meanwhile: nothing to count then.
    let Some(state) = DESTS.get_ptr_mut(dest) else {
        return;
    };
    // SAFETY: non-null value of a hash map lookup, valid for the program's run.
    let c = unsafe { &raw mut (*state).counters };
    let slot = unsafe {
        match outcome {
            Outcome::Success => &raw mut (*c).successes,
            Outcome::Refused => &raw mut (*c).failures_refused,
            Outcome::Timeout => &raw mut (*c).failures_timeout,
            Outcome::Unreachable => &raw mut (*c).failures_unreachable,
            Outcome::Abandoned => &raw mut (*c).abandoned,
        }
    };
    atomic::add_u64(slot, 1);
}

//! Whether the caller is one of the workloads a selector matches now
//! ([`enforcer_common::workload`]): its ancestor at each level the scope has
//! matches at, looked up in the daemon's list.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use enforcer_common::workload::{MAX_LEVEL, WorkloadKey};

use crate::maps::{WORKLOAD_LEVELS, WORKLOADS};

/// 1 if the current task is one a policy applies to, else 0: in (or below)
/// a cgroup its workload selectors match (`workloads` non-zero, `scope` its
/// scope), or else in (or below) the cgroup `cgroup_id` at `cgroup_level`
/// (0: every task). A function of its own answering in one
/// register: the verifier walks its loop once, and the gate's paths join at
/// its return instead of going on once per way of being in scope.
#[inline(never)]
pub fn covers(workloads: u32, scope: u32, cgroup_id: u64, cgroup_level: u32) -> u32 {
    if workloads != 0 {
        return u32::from(selects(scope));
    }
    if cgroup_id == 0 {
        return 1;
    }
    // SAFETY: the helper takes a level (an integer, checked by the kernel)
    // and reads the current task's cgroup: no pointer.
    u32::from(unsafe { bpf_get_current_ancestor_cgroup_id(cgroup_level as i32) } == cgroup_id)
}

/// Whether the current task is in (or below) a cgroup `scope`'s selectors
/// match.
#[inline(always)]
pub fn selects(scope: u32) -> bool {
    let Some(levels) = WORKLOAD_LEVELS.get(scope) else {
        return false;
    };
    let levels = *levels;
    let mut level = 0;
    while level <= MAX_LEVEL {
        if levels & (1 << level) != 0 {
            // SAFETY: the helper takes a level and reads the current task's
            // cgroup: no pointer.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            // 0: the task's own cgroup is above this level, and above every
            // deeper one.
            if id == 0 {
                return false;
            }
            if WORKLOADS.get_ptr(WorkloadKey::new(id, scope)).is_some() {
                return true;
            }
        }
        level += 1;
    }
    false
}

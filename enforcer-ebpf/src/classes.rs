//! The caller's priority class ([`enforcer_common::class`]): the class of the
//! nearest ancestor of its cgroup that the daemon listed, `default` when none
//! is. Looked up only once a policy covers the connect, and only when classes
//! are configured at all.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use enforcer_common::class::{Caller, Priority};

use crate::maps::{CLASS_CGROUPS, CLASS_TABLE};

/// Deepest cgroup level looked at. cgroup v2 hierarchies of containers are a
/// handful of levels deep (systemd slices, pod, container); a class listed
/// deeper than this is not found.
const MAX_LEVEL: i32 = 16;

/// The current task's class, `None` when classes are off.
#[inline(always)]
pub fn current() -> Option<Caller<'static>> {
    let table = CLASS_TABLE.get(0)?;
    if !table.is_enabled() {
        return None;
    }
    let mut class = Priority::Default;
    // From the root down, the last listed one is the nearest; the ancestor
    // beyond the task's own level is 0.
    let mut level = 0;
    while level <= MAX_LEVEL {
        // SAFETY: the helper takes a level and reads the current task's
        // cgroup: no pointer.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            break;
        }
        if let Some(p) = CLASS_CGROUPS.get_ptr(id) {
            // SAFETY: a value of CLASS_CGROUPS, valid for the program's run.
            if let Some(p) = Priority::from_raw(unsafe { *p }) {
                class = p;
            }
        }
        level += 1;
    }
    Some(Caller { table, class })
}

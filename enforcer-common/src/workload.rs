//! Workload selectors in the kernel: the cgroups a selector (a cgroup path
//! pattern of a policy or a chaos fault) matches right now, written by the
//! daemon as workloads come and go.
//!
//! Each selector owner is a *scope*: a policy by its id, a chaos fault by
//! [`MAX_POLICIES`] + its slot. [`crate::maps::WORKLOADS`] holds one entry
//! per (matched cgroup, scope); [`crate::maps::WORKLOAD_LEVELS`] holds, per
//! scope, the levels below the cgroup v2 root at which its matches are, so
//! that a caller's ancestors are looked up only at those levels (a kubelet
//! pattern's pods are all at one level: one lookup).
//!
//! A caller is selected when one of its ancestors (itself included) at such
//! a level is an entry of the scope.

use crate::{chaos, impl_pod, rules::MAX_POLICIES};

/// Scopes: every policy id, then every chaos fault slot.
pub const SCOPES: u32 = MAX_POLICIES + chaos::SLOTS;

/// The deepest level a selected cgroup may be at (the root is 0): the
/// levels of a scope are the bits of a `u32`, and the gate walks no
/// further.
pub const MAX_LEVEL: u32 = 16;

/// The scope of policy `id`.
#[inline(always)]
pub const fn policy_scope(id: u32) -> u32 {
    id
}

/// The scope of the chaos fault in `slot`.
#[inline(always)]
pub const fn fault_scope(slot: u32) -> u32 {
    MAX_POLICIES + slot
}

/// A key of [`crate::maps::WORKLOADS`]: a cgroup one scope's selector matches.
/// Its value is the cgroup's level (what the daemon reads back).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// The cgroup's id (its directory's inode).
    pub cgroup_id: u64,
    pub scope: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<WorkloadKey>() == 16);
impl_pod!(WorkloadKey);

impl WorkloadKey {
    #[inline(always)]
    pub const fn new(cgroup_id: u64, scope: u32) -> Self {
        Self {
            cgroup_id,
            scope,
            _pad: 0,
        }
    }
}

/// The bit of `level` in a scope's levels ([`crate::maps::WORKLOAD_LEVELS`]);
/// 0 beyond [`MAX_LEVEL`], where nothing is looked up.
#[inline(always)]
pub const fn level_bit(level: u32) -> u32 {
    if level <= MAX_LEVEL { 1 << level } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_faults_have_scopes_of_their_own() {
        assert_eq!(policy_scope(MAX_POLICIES - 1) + 1, fault_scope(0));
        assert_eq!(fault_scope(chaos::SLOTS - 1) + 1, SCOPES);
    }

    #[test]
    fn levels_past_the_deepest_have_no_bit() {
        assert_eq!(level_bit(0), 1);
        assert_eq!(level_bit(MAX_LEVEL), 1 << MAX_LEVEL);
        assert_eq!(level_bit(MAX_LEVEL + 1), 0);
    }
}

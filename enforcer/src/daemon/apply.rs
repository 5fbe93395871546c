//! Writing a validated policy set into the kernel: policies get ids 1..=N in
//! order; rules the set no longer has are removed; ids no longer used are turned
//! off. Validation has happened before anything is written.

use std::{collections::HashSet, os::unix::fs::MetadataExt};

use enforcer_common::policy::Policy;

use crate::{
    bpf::{BpfError, Enforcer},
    cgroup,
    clock::Jitter,
    config::PolicySpec,
};

/// Why a policy set cannot be applied (the environment, not the text).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("policy \"{policy}\": cgroup: {path} is not a cgroup v2 directory")]
    Cgroup { policy: String, path: String },
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// The policy id of the `index`-th policy of a set.
pub const fn policy_id(index: usize) -> u32 {
    index as u32 + 1
}

/// Checks what validation of the text cannot: scoped cgroups exist.
pub fn check(specs: &[PolicySpec]) -> Result<Vec<Option<(u64, u32)>>, ApplyError> {
    specs.iter().map(scope).collect()
}

/// The (id, level) of a policy's cgroup scope.
fn scope(spec: &PolicySpec) -> Result<Option<(u64, u32)>, ApplyError> {
    let Some(path) = &spec.cgroup else {
        return Ok(None);
    };
    let err = || ApplyError::Cgroup {
        policy: spec.name.clone(),
        path: path.display().to_string(),
    };
    let root = cgroup::v2_mount().map_err(|_| err())?;
    if !cgroup::is_v2_dir(path) {
        return Err(err());
    }
    let level = path
        .strip_prefix(&root)
        .map_err(|_| err())?
        .components()
        .count() as u32;
    let id = std::fs::metadata(path).map_err(|_| err())?.ino();
    Ok(Some((id, level)))
}

/// Writes `specs` into the kernel, replacing whatever policy set was there.
pub fn apply(
    enforcer: &mut Enforcer,
    specs: &[PolicySpec],
    previous: usize,
    jitter: &mut Jitter,
) -> Result<(), ApplyError> {
    let scopes = check(specs)?;
    for (i, (spec, scope)) in specs.iter().zip(&scopes).enumerate() {
        let backoff = spec.backoff(|| jitter.unit());
        enforcer.set_policy(policy_id(i), &spec.kernel(*scope), &backoff)?;
    }
    let wanted: HashSet<_> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.rules.iter().map(move |r| (*r, policy_id(i))))
        .collect();
    for (rule, id) in &wanted {
        enforcer.insert_rule(rule, *id)?;
    }
    for (rule, id) in enforcer.rules()? {
        if !wanted.contains(&(rule, id)) {
            enforcer.remove_rule(&rule)?;
        }
    }
    // Ids beyond the new set: off (a zeroed policy), in case a rule still points
    // there for the instant between the writes above.
    for index in specs.len()..previous.max(specs.len()) {
        let backoff = Default::default();
        enforcer.set_policy(policy_id(index), &Policy::default(), &backoff)?;
    }
    Ok(())
}

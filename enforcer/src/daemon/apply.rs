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

/// The positional id of the `index`-th policy of a set (the daemon's start).
pub const fn policy_id(index: usize) -> u32 {
    index as u32 + 1
}

/// Ids for a new policy set: a name that had an id keeps it, a new name takes
/// the smallest free one. Also the ids no longer used.
pub fn assign_ids(previous: &[(&str, u32)], specs: &[PolicySpec]) -> (Vec<u32>, Vec<u32>) {
    let kept: Vec<Option<u32>> = specs
        .iter()
        .map(|s| {
            previous
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, id)| *id)
        })
        .collect();
    let mut taken: HashSet<u32> = kept.iter().flatten().copied().collect();
    let mut next = 1;
    let ids = kept
        .into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.insert(next);
                next
            })
        })
        .collect::<Vec<_>>();
    let freed = previous
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !ids.contains(id))
        .collect();
    (ids, freed)
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

/// Writes `specs` into the kernel under `ids`, replacing whatever policy set was
/// there; `freed` ids are turned off.
pub fn apply(
    enforcer: &mut Enforcer,
    specs: &[PolicySpec],
    ids: &[u32],
    freed: &[u32],
    jitter: &mut Jitter,
) -> Result<(), ApplyError> {
    let scopes = check(specs)?;
    for ((spec, scope), id) in specs.iter().zip(&scopes).zip(ids) {
        let backoff = spec.backoff(|| jitter.unit());
        enforcer.set_policy(*id, &spec.kernel(*scope), &backoff)?;
    }
    crate::crash::point("apply.policies-written");
    let wanted: HashSet<_> = specs
        .iter()
        .zip(ids)
        .flat_map(|(s, id)| s.rules.iter().map(move |r| (*r, *id)))
        .collect();
    for (rule, id) in &wanted {
        enforcer.insert_rule(rule, *id)?;
    }
    crate::crash::point("apply.rules-inserted");
    for (rule, id) in enforcer.rules()? {
        if !wanted.contains(&(rule, id)) {
            enforcer.remove_rule(&rule)?;
        }
    }
    // Freed ids: off (a zeroed policy), in case a rule still pointed there for the
    // instant between the writes above. Their shared counts stay: the gate moves
    // each destination (and its counts) to its new policy at its next connect,
    // and garbage collection forgets the rest.
    for id in freed {
        enforcer.set_policy(*id, &Policy::default(), &Default::default())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn specs(names: &[&str]) -> Vec<PolicySpec> {
        let text: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("[[policy]]\nname = \"{n}\"\nmatch = [\"10.0.{i}.0/24:80\"]\n"))
            .collect();
        Config::parse(&text, "t").unwrap().policies
    }

    #[test]
    fn ids_stay_with_their_names() {
        let previous = [("a", 1), ("b", 2), ("c", 3)];
        // b removed, d added: d takes the smallest id no kept name has, b's 2.
        let (ids, freed) = assign_ids(&previous, &specs(&["c", "a", "d"]));
        assert_eq!(ids, [3, 1, 2]);
        assert_eq!(freed, Vec::<u32>::new(), "2 is reused by d");
        let (ids, freed) = assign_ids(&previous, &specs(&["a"]));
        assert_eq!((ids, freed), (vec![1], vec![2, 3]));
        let (ids, _) = assign_ids(&[], &specs(&["x", "y"]));
        assert_eq!(ids, [1, 2]);
    }
}

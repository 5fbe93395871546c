//! Writing a validated policy set into the kernel, whole
//! ([`crate::bpf::PolicyBanks::replace`]): the programs read the previous set or
//! this one, never a mix. A policy keeps its id across sets (sockets and
//! destinations refer to it by id); a new one takes the smallest free id.
//! Validation has happened before anything is written.

use std::collections::HashSet;

use crate::{
    bpf::{BpfError, Enforcer, KernelPolicies},
    cgroup,
    clock::Jitter,
    config::PolicySpec,
};

/// Why a policy set cannot be applied (the environment, not the text).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("policy \"{policy}\": cgroup: {path} is not a cgroup v2 directory")]
    Cgroup { policy: String, path: String },
    #[error(
        "policy \"{policy}\": workloads: {pattern} is not below the cgroup v2 hierarchy (mounted at {mount})"
    )]
    Workloads {
        policy: String,
        pattern: String,
        mount: String,
    },
    #[error("policy \"{policy}\": workloads: finding the cgroup v2 hierarchy: {error}")]
    Hierarchy {
        policy: String,
        error: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// Ids for a new policy set: a name that had an id keeps it, a new name takes
/// the smallest free one.
pub fn assign_ids(previous: &[(&str, u32)], specs: &[PolicySpec]) -> Vec<u32> {
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
    kept.into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.insert(next);
                next
            })
        })
        .collect()
}

/// The ids the running set gave the policies of `specs`, from what the
/// kernel runs: `(id, epoch)` of each policy there. An epoch is a hash of
/// the name ([`PolicySpec::epoch`]), so a daemon that adopts its
/// predecessor's pins learns its ids from them. Each id goes to one name at
/// most, and each name to one id.
pub fn running_ids<'a>(kernel: &[(u32, u32)], specs: &'a [PolicySpec]) -> Vec<(&'a str, u32)> {
    let mut found: Vec<(&str, u32)> = Vec::new();
    for (id, epoch) in kernel {
        let name = specs
            .iter()
            .map(|s| (s.name.as_str(), s.epoch()))
            .find(|(name, e)| e == epoch && !found.iter().any(|(n, _)| n == name));
        if let Some((name, _)) = name {
            found.push((name, *id));
        }
    }
    found
}

/// `(id, epoch)` of every policy the kernel runs (a zeroed id has epoch 0).
pub fn kernel_epochs(enforcer: &Enforcer) -> Result<Vec<(u32, u32)>, BpfError> {
    let maps = enforcer.maps();
    let mut epochs = Vec::new();
    for id in 1..enforcer_common::rules::MAX_POLICIES {
        let epoch = maps.policies.policy(&maps.config, id)?.epoch;
        if epoch != 0 {
            epochs.push((id, epoch));
        }
    }
    Ok(epochs)
}

/// Checks what validation of the text cannot: scoped cgroups exist.
pub fn check(specs: &[PolicySpec]) -> Result<Vec<Option<(u64, u32)>>, ApplyError> {
    specs.iter().map(scope).collect()
}

/// The (id, level) of a policy's cgroup scope; its workload selectors
/// checked to be where cgroups are.
fn scope(spec: &PolicySpec) -> Result<Option<(u64, u32)>, ApplyError> {
    if !spec.workloads.is_empty() {
        let mount = cgroup::v2_mount().map_err(|error| ApplyError::Hierarchy {
            policy: spec.name.clone(),
            error,
        })?;
        if let Some(p) = spec.workloads.iter().find(|p| !p.is_below(&mount)) {
            return Err(ApplyError::Workloads {
                policy: spec.name.clone(),
                pattern: p.to_string(),
                mount: mount.display().to_string(),
            });
        }
    }
    let Some(path) = &spec.cgroup else {
        return Ok(None);
    };
    cgroup::scope(path)
        .map(Some)
        .ok_or_else(|| ApplyError::Cgroup {
            policy: spec.name.clone(),
            path: path.display().to_string(),
        })
}

/// Writes `specs` into the kernel under `ids`, replacing whatever policy set
/// was there, whole.
pub fn apply(
    enforcer: &mut Enforcer,
    specs: &[PolicySpec],
    ids: &[u32],
    jitter: &mut Jitter,
) -> Result<(), ApplyError> {
    let scopes = check(specs)?;
    let policies = specs
        .iter()
        .zip(&scopes)
        .zip(ids)
        .map(|((spec, scope), id)| (*id, spec.kernel(*scope), spec.backoff_row(|| jitter.unit())))
        .collect();
    let rules = specs
        .iter()
        .zip(ids)
        .flat_map(|(s, id)| s.rules.iter().map(move |r| (*r, *id)))
        .collect();
    let maps = enforcer.maps_mut();
    maps.policies
        .replace(&mut maps.config, &KernelPolicies { policies, rules })?;
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
        assert_eq!(assign_ids(&previous, &specs(&["c", "a", "d"])), [3, 1, 2]);
        assert_eq!(assign_ids(&previous, &specs(&["a"])), [1]);
        assert_eq!(assign_ids(&[], &specs(&["x", "y"])), [1, 2]);
    }

    #[test]
    fn a_restart_learns_the_running_ids_from_the_epochs() {
        let running = specs(&["a", "b", "c"]);
        let epoch = |i: usize| running[i].epoch();
        // The predecessor ran c at 1, a at 7 (b was removed at runtime), and
        // an id of a policy this configuration does not have.
        let kernel = [(1, epoch(2)), (4, 12345), (7, epoch(0))];
        let known = running_ids(&kernel, &running);
        assert_eq!(known, [("c", 1), ("a", 7)]);
        assert_eq!(assign_ids(&known, &running), [7, 2, 1], "b takes a free id");
        // One name never takes two ids (a collision of epochs, or a stale id).
        let twice = [(3, epoch(0)), (5, epoch(0))];
        assert_eq!(running_ids(&twice, &running), [("a", 3)]);
    }
}

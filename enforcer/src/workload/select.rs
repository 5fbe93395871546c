//! What the workload selectors match in a walked tree, as pure code: the
//! kernel's entries for the policies' scopes, the classes' members, and how
//! many cgroups each pattern matches (a pattern matching nothing is valid,
//! and reported).

use std::collections::{BTreeMap, BTreeSet};

use enforcer_common::{class::Priority, workload::level_bit};

use super::{Cgroup, Pattern};

/// Who a selector belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A policy or a chaos fault: its scope ([`enforcer_common::workload`]).
    Scope(u32),
    /// A priority class.
    Class(Priority),
}

/// One owner's selectors.
#[derive(Clone, Copy, Debug)]
pub struct Selectors<'a> {
    pub owner: Owner,
    pub patterns: &'a [Pattern],
}

/// A scope's matches as the kernel holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeEntries {
    /// (cgroup id, level) of each matched cgroup.
    pub cgroups: BTreeSet<(u64, u32)>,
    /// A bit per level holding one of them.
    pub levels: u32,
}

/// What the selectors match now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Per scope with selectors (an empty entry when they match nothing).
    pub scopes: BTreeMap<u32, ScopeEntries>,
    /// Cgroups the classes' selectors put in a class: to the highest
    /// priority among those whose selectors match it.
    pub classes: BTreeMap<u64, Priority>,
    /// For each owner, in order, each of its patterns' matched cgroups.
    pub counts: Vec<(Owner, Vec<usize>)>,
}

impl Selection {
    /// How many cgroups each of `owner`'s patterns matches.
    pub fn counts_of(&self, owner: Owner) -> Option<&[usize]> {
        self.counts
            .iter()
            .find(|(o, _)| *o == owner)
            .map(|(_, n)| n.as_slice())
    }
}

/// Matches `owners`' selectors against the `tree` walked for them.
pub fn select(owners: &[Selectors<'_>], tree: &[Cgroup]) -> Selection {
    let mut selection = Selection::default();
    let paths: Vec<Vec<&str>> = tree.iter().map(Cgroup::components).collect();
    for s in owners {
        let mut counts = Vec::with_capacity(s.patterns.len());
        if let Owner::Scope(scope) = s.owner {
            selection.scopes.entry(scope).or_default();
        }
        for pattern in s.patterns {
            let mut n = 0;
            for (cgroup, path) in tree.iter().zip(&paths) {
                if !pattern.matches(path) {
                    continue;
                }
                n += 1;
                match s.owner {
                    Owner::Scope(scope) => {
                        let entries = selection.scopes.entry(scope).or_default();
                        entries.cgroups.insert((cgroup.id, cgroup.level));
                        entries.levels |= level_bit(cgroup.level);
                    }
                    Owner::Class(priority) => {
                        let class = selection.classes.entry(cgroup.id).or_insert(priority);
                        if (priority as u32) < (*class as u32) {
                            *class = priority;
                        }
                    }
                }
            }
            counts.push(n);
        }
        selection.counts.push((s.owner, counts));
    }
    selection
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tree(dirs: &[(&str, u64)]) -> Vec<Cgroup> {
        dirs.iter()
            .map(|(rel, id)| Cgroup {
                path: PathBuf::from("/sys/fs/cgroup").join(rel),
                id: *id,
                level: rel.split('/').filter(|c| !c.is_empty()).count() as u32,
            })
            .collect()
    }

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    const TREE: &[(&str, u64)] = &[
        ("", 1),
        ("kubepods.slice", 2),
        ("kubepods.slice/kubepods-burstable.slice", 3),
        (
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podA.slice",
            4,
        ),
        (
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podB.slice",
            5,
        ),
        ("kubepods.slice/kubepods-podC.slice", 6),
    ];

    #[test]
    fn a_scope_holds_its_matches_and_their_levels() {
        let burstable = patterns(&["/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*"]);
        let guaranteed = patterns(&["/sys/fs/cgroup/kubepods.slice/kubepods-pod*.slice"]);
        let owners = [
            Selectors {
                owner: Owner::Scope(3),
                patterns: &burstable,
            },
            Selectors {
                owner: Owner::Scope(7),
                patterns: &guaranteed,
            },
        ];
        let s = select(&owners, &tree(TREE));
        assert_eq!(s.scopes[&3].cgroups, BTreeSet::from([(4, 3), (5, 3)]));
        assert_eq!(s.scopes[&3].levels, 1 << 3);
        assert_eq!(s.scopes[&7].cgroups, BTreeSet::from([(6, 2)]));
        assert_eq!(s.scopes[&7].levels, 1 << 2);
        assert_eq!(s.counts_of(Owner::Scope(3)), Some(&[2][..]));
        assert_eq!(s.counts_of(Owner::Scope(7)), Some(&[1][..]));
    }

    #[test]
    fn a_pattern_matching_nothing_is_counted_and_its_scope_is_empty() {
        let none = patterns(&["/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/*"]);
        let owners = [Selectors {
            owner: Owner::Scope(1),
            patterns: &none,
        }];
        let s = select(&owners, &tree(TREE));
        assert_eq!(s.scopes[&1], ScopeEntries::default());
        assert_eq!(s.counts_of(Owner::Scope(1)), Some(&[0][..]));
    }

    #[test]
    fn a_cgroup_two_classes_match_goes_to_the_higher_priority() {
        let every_pod = patterns(&["/sys/fs/cgroup/kubepods.slice/**/kubepods-*pod*.slice"]);
        let pod_a = patterns(&["/sys/fs/cgroup/kubepods.slice/*/kubepods-burstable-podA.slice"]);
        let owners = [
            Selectors {
                owner: Owner::Class(Priority::Sheddable),
                patterns: &every_pod,
            },
            Selectors {
                owner: Owner::Class(Priority::High),
                patterns: &pod_a,
            },
        ];
        let s = select(&owners, &tree(TREE));
        assert_eq!(
            s.classes,
            BTreeMap::from([
                (4, Priority::High),
                (5, Priority::Sheddable),
                (6, Priority::Sheddable)
            ])
        );
        assert_eq!(
            s.counts_of(Owner::Class(Priority::Sheddable)),
            Some(&[3][..])
        );
        assert_eq!(s.counts_of(Owner::Class(Priority::High)), Some(&[1][..]));
        assert!(s.scopes.is_empty());
    }
}

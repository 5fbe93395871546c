//! The cgroup v2 tree as far as workload selectors look: every directory on
//! the way to a possible match, each with its id and level. The daemon
//! watches the directories it walked and walks again when one changes.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use enforcer_common::workload::MAX_LEVEL;

use super::{Pattern, pattern::components};

/// A cgroup directory of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: PathBuf,
    /// Its id: the directory's inode, as the kernel's helpers return it.
    pub id: u64,
    /// Its depth below the hierarchy's root (the root is 0).
    pub level: u32,
}

impl Cgroup {
    /// The components of its absolute path, as patterns match them.
    pub fn components(&self) -> Vec<&str> {
        components(&self.path)
    }
}

/// Walks the hierarchy mounted at `mount` into every directory where one of
/// `patterns` may match (at most [`MAX_LEVEL`] down, the deepest the gate
/// looks): each directory visited, parents before children. Directories
/// that vanish during the walk (workloads go while it runs) are left out.
pub fn walk(mount: &Path, patterns: &[&Pattern]) -> Vec<Cgroup> {
    let mut found = Vec::new();
    let wanted = |path: &Path| {
        let parts = components(path);
        patterns.iter().any(|p| p.may_match_below(&parts))
    };
    if !wanted(mount) {
        return found;
    }
    let mut pending = vec![(mount.to_path_buf(), 0)];
    while let Some((path, level)) = pending.pop() {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if level < MAX_LEVEL
            && let Ok(entries) = fs::read_dir(&path)
        {
            for entry in entries.filter_map(Result::ok) {
                let child = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) && wanted(&child) {
                    pending.push((child, level + 1));
                }
            }
        }
        found.push(Cgroup {
            path,
            id: meta.ino(),
            level,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_goes_only_where_a_pattern_may_match() {
        let root = std::env::temp_dir().join(format!(
            "enforcer-tree-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        for dir in [
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-a.scope",
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice",
            "system.slice/sshd.service",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let pattern: Pattern = format!(
            "{}/kubepods.slice/kubepods-burstable.slice/*",
            root.display()
        )
        .parse()
        .unwrap();
        let mut walked: Vec<(String, u32)> = walk(&root, &[&pattern])
            .into_iter()
            .map(|c| {
                let rel = c.path.strip_prefix(&root).unwrap().display().to_string();
                (rel, c.level)
            })
            .collect();
        walked.sort();
        assert_eq!(
            walked,
            [
                (String::new(), 0),
                ("kubepods.slice".into(), 1),
                ("kubepods.slice/kubepods-burstable.slice".into(), 2),
                (
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".into(),
                    3
                ),
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }
}

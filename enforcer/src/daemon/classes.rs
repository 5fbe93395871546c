//! The priority classes as they run: each configured class with its cgroups
//! resolved to the ids the kernel knows them by (a cgroup v2 directory's
//! inode is its cgroup id), written into the kernel
//! ([`crate::bpf::ClassMaps::replace`]) whenever a configuration is applied:
//! at the start and on every reload. Resolving is the part that can be the
//! operator's mistake (a cgroup that does not exist), and it happens before
//! anything is written.

use std::{io, os::unix::fs::MetadataExt as _, path::Path};

use enforcer_common::class::{CLASSES, ClassTable, Priority};

use crate::{
    bpf::{BpfError, Enforcer},
    cgroup,
    config::ClassSpec,
};

/// The deepest level below the cgroup v2 root at which the gate looks for a
/// listed cgroup (`MAX_LEVEL` in enforcer-ebpf/src/classes.rs): a class
/// listed deeper would never be found.
pub const MAX_LEVEL: usize = 16;

/// A class as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningClass {
    pub spec: ClassSpec,
    /// The ids of `spec.cgroups`, in its order.
    pub ids: Vec<u64>,
    /// False for the default class no `[[class]]` declared (processes in no
    /// listed cgroup), which runs whenever other classes do.
    pub declared: bool,
}

/// Why a class set cannot be applied (the host, not the text).
#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("class \"{class}\": cgroups: {path}: no such cgroup directory")]
    Missing { class: String, path: String },
    #[error("class \"{class}\": cgroups: {path}: {error}")]
    Unreadable {
        class: String,
        path: String,
        error: io::Error,
    },
    #[error(
        "class \"{class}\": cgroups: {path} is not a cgroup v2 directory (the hierarchy is mounted at {root})"
    )]
    NotCgroup {
        class: String,
        path: String,
        root: String,
    },
    #[error(
        "class \"{class}\": cgroups: {path} is {level} levels below the cgroup v2 root; classes are found at most {MAX_LEVEL} levels down"
    )]
    TooDeep {
        class: String,
        path: String,
        level: usize,
    },
    #[error(
        "class \"{class}\": cgroups: {path} is the same cgroup as {other} (class \"{other_class}\")"
    )]
    Same {
        class: String,
        path: String,
        other: String,
        other_class: String,
    },
    #[error(
        "class \"{class}\": workloads: {pattern} is not below the cgroup v2 hierarchy (mounted at {root})"
    )]
    WorkloadsOutside {
        class: String,
        pattern: String,
        root: String,
    },
    #[error("classes: finding the cgroup v2 hierarchy: {0}")]
    Hierarchy(io::Error),
}

/// Resolves `specs` against the host's cgroup v2 hierarchy; with any class,
/// the default class is there too (declared or not).
pub fn resolve(specs: &[ClassSpec]) -> Result<Vec<RunningClass>, ClassError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let root = cgroup::v2_mount().map_err(ClassError::Hierarchy)?;
    resolve_in(&root, specs)
}

/// [`resolve`] in the hierarchy mounted at `root`.
pub fn resolve_in(root: &Path, specs: &[ClassSpec]) -> Result<Vec<RunningClass>, ClassError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let root = root.canonicalize().map_err(ClassError::Hierarchy)?;
    // Every id once: (id, its path as listed, its class).
    let mut seen: Vec<(u64, &Path, &str)> = Vec::new();
    let mut running = Vec::with_capacity(specs.len() + 1);
    for spec in specs {
        if let Some(p) = spec.workloads.iter().find(|p| !p.is_below(&root)) {
            return Err(ClassError::WorkloadsOutside {
                class: spec.name.clone(),
                pattern: p.to_string(),
                root: root.display().to_string(),
            });
        }
        let mut ids = Vec::with_capacity(spec.cgroups.len());
        for path in &spec.cgroups {
            let id = cgroup_id(&root, &spec.name, path)?;
            if let Some((_, other, other_class)) = seen.iter().find(|(i, ..)| *i == id) {
                return Err(ClassError::Same {
                    class: spec.name.clone(),
                    path: path.display().to_string(),
                    other: other.display().to_string(),
                    other_class: (*other_class).to_owned(),
                });
            }
            seen.push((id, path, &spec.name));
            ids.push(id);
        }
        running.push(RunningClass {
            spec: spec.clone(),
            ids,
            declared: true,
        });
    }
    if !specs.iter().any(|s| s.priority == Priority::Default) {
        running.push(RunningClass {
            spec: ClassSpec::implicit_default(),
            ids: Vec::new(),
            declared: false,
        });
    }
    // Highest priority first, as `class list` shows them.
    running.sort_by_key(|c| c.spec.priority as u32);
    Ok(running)
}

/// The id of the cgroup at `path` (listed by class `class`), checked to be a
/// cgroup v2 directory the gate can find.
fn cgroup_id(root: &Path, class: &str, path: &Path) -> Result<u64, ClassError> {
    let shown = || path.display().to_string();
    let real = path.canonicalize().map_err(|error| {
        if error.kind() == io::ErrorKind::NotFound {
            ClassError::Missing {
                class: class.to_owned(),
                path: shown(),
            }
        } else {
            ClassError::Unreadable {
                class: class.to_owned(),
                path: shown(),
                error,
            }
        }
    })?;
    let not_cgroup = || ClassError::NotCgroup {
        class: class.to_owned(),
        path: shown(),
        root: root.display().to_string(),
    };
    let below = real.strip_prefix(root).map_err(|_| not_cgroup())?;
    if !cgroup::is_v2_dir(&real) {
        return Err(not_cgroup());
    }
    let level = below.components().count();
    if level > MAX_LEVEL {
        return Err(ClassError::TooDeep {
            class: class.to_owned(),
            path: shown(),
            level,
        });
    }
    let meta = std::fs::metadata(&real).map_err(|error| ClassError::Unreadable {
        class: class.to_owned(),
        path: shown(),
        error,
    })?;
    Ok(meta.ino())
}

/// What the kernel reads for `classes`: the shares by priority and every
/// listed cgroup's class, then the `selected` members their workload
/// selectors match that no class lists outright; off (`enabled` 0, no
/// cgroups) for none.
pub fn kernel(
    classes: &[RunningClass],
    selected: impl Iterator<Item = (u64, Priority)>,
) -> (ClassTable, Vec<(u64, Priority)>) {
    let mut table = ClassTable {
        enabled: u32::from(!classes.is_empty()),
        ..ClassTable::default()
    };
    let mut cgroups = Vec::new();
    for c in classes {
        table.share_permille[c.spec.priority as usize] = c.spec.share_permille();
        cgroups.extend(c.ids.iter().map(|id| (*id, c.spec.priority)));
    }
    let listed = cgroups.len();
    for (id, p) in selected {
        if !cgroups[..listed].iter().any(|(l, _)| *l == id) {
            cgroups.push((id, p));
        }
    }
    (table, cgroups)
}

/// Writes `classes`, with the members their selectors found (`selected`),
/// into the kernel in place of whatever set was there.
pub fn write(
    enforcer: &mut Enforcer,
    classes: &[RunningClass],
    selected: impl Iterator<Item = (u64, Priority)>,
) -> Result<(), BpfError> {
    let (table, cgroups) = kernel(classes, selected);
    enforcer.maps_mut().classes.replace(table, &cgroups)
}

/// The running classes' names by priority (`None`: no class of that
/// priority, or classes are off).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassNames(pub [Option<String>; CLASSES]);

impl ClassNames {
    pub fn of(classes: &[RunningClass]) -> Self {
        let mut names: [Option<String>; CLASSES] = Default::default();
        for c in classes {
            names[c.spec.priority as usize] = Some(c.spec.name.clone());
        }
        Self(names)
    }

    /// Whether classes are on.
    pub fn enabled(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }

    /// The priority of the class `name`.
    pub fn priority(&self, name: &str) -> Option<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| self.0[*p as usize].as_deref() == Some(name))
    }

    /// Each running class: its priority and name, highest first.
    pub fn iter(&self) -> impl Iterator<Item = (Priority, &str)> {
        Priority::ALL
            .into_iter()
            .filter_map(|p| self.0[p as usize].as_deref().map(|n| (p, n)))
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use super::*;
    use crate::config::Config;

    /// A fake cgroup v2 hierarchy under a temporary directory: directories
    /// with the two files [`cgroup::is_v2_dir`] looks for.
    struct Hierarchy(PathBuf);

    impl Hierarchy {
        fn new() -> Self {
            let root = std::env::temp_dir().join(format!(
                "enforcer-classes-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            let h = Self(root);
            h.cgroup("");
            h
        }

        fn cgroup(&self, rel: &str) -> PathBuf {
            let dir = self.0.join(rel);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup.procs"), "").unwrap();
            fs::write(dir.join("cgroup.controllers"), "").unwrap();
            dir
        }

        fn ino(&self, rel: &str) -> u64 {
            fs::metadata(self.0.join(rel)).unwrap().ino()
        }
    }

    impl Drop for Hierarchy {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn classes(text: &str) -> Vec<ClassSpec> {
        Config::parse(text, "t").unwrap().classes
    }

    #[test]
    fn cgroups_resolve_to_their_ids_and_the_default_class_runs_too() {
        let h = Hierarchy::new();
        let api = h.cgroup("api.slice");
        let batch = h.cgroup("batch.slice/jobs");
        let specs = classes(&format!(
            "[[class]]\nname = \"batch\"\npriority = \"sheddable\"\ncgroups = [\"{}\"]\n\
             [[class]]\nname = \"api\"\npriority = \"critical\"\nshare = 0.5\ncgroups = [\"{}\"]\n",
            batch.display(),
            api.display()
        ));
        let running = resolve_in(&h.0, &specs).unwrap();
        let shown: Vec<(&str, Priority, &[u64], bool)> = running
            .iter()
            .map(|c| {
                (
                    c.spec.name.as_str(),
                    c.spec.priority,
                    c.ids.as_slice(),
                    c.declared,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("api", Priority::Critical, &[h.ino("api.slice")][..], true),
                ("default", Priority::Default, &[][..], false),
                (
                    "batch",
                    Priority::Sheddable,
                    &[h.ino("batch.slice/jobs")][..],
                    true
                ),
            ]
        );
        // A member a selector found is added, unless a class lists it
        // outright: the listed class keeps it.
        let selected = [
            (h.ino("api.slice"), Priority::Sheddable),
            (7, Priority::High),
        ];
        let (table, mut cgroups) = kernel(&running, selected.into_iter());
        assert_eq!(
            table,
            ClassTable {
                share_permille: [500, 0, 0, 0],
                enabled: 1,
                _pad: 0
            }
        );
        cgroups.sort_by_key(|(id, _)| *id);
        let mut want = vec![
            (h.ino("api.slice"), Priority::Critical),
            (h.ino("batch.slice/jobs"), Priority::Sheddable),
            (7, Priority::High),
        ];
        want.sort_by_key(|(id, _)| *id);
        assert_eq!(cgroups, want);
        let names = ClassNames::of(&running);
        assert_eq!(names.priority("batch"), Some(Priority::Sheddable));
        assert_eq!(names.priority("nope"), None);
        assert_eq!(
            names.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            ["api", "default", "batch"]
        );
    }

    #[test]
    fn a_declared_default_class_is_the_one_that_runs() {
        let h = Hierarchy::new();
        let specs = classes("[[class]]\nname = \"rest\"\npriority = \"default\"\nshare = 0.25\n");
        let running = resolve_in(&h.0, &specs).unwrap();
        assert_eq!(running.len(), 1);
        assert!(running[0].declared);
        assert_eq!(
            ClassNames::of(&running).priority("rest"),
            Some(Priority::Default)
        );
        let (table, cgroups) = kernel(&running, std::iter::empty());
        assert_eq!(table.share_permille, [0, 0, 250, 0]);
        assert_eq!(table.enabled, 1);
        assert!(cgroups.is_empty());
    }

    #[test]
    fn no_classes_turn_them_off() {
        assert_eq!(resolve(&[]).unwrap(), []);
        let (table, cgroups) = kernel(&[], std::iter::empty());
        assert_eq!(table, ClassTable::default());
        assert!(cgroups.is_empty());
        assert!(!ClassNames::of(&[]).enabled());
    }

    #[test]
    fn what_cannot_be_found_is_refused_naming_the_class_and_the_path() {
        let h = Hierarchy::new();
        let plain = h.0.join("plain");
        fs::create_dir_all(&plain).unwrap();
        let deep = h.cgroup(
            &(0..=MAX_LEVEL)
                .map(|i| format!("l{i}/"))
                .collect::<String>(),
        );
        let ok = h.cgroup("ok");
        let outside = std::env::temp_dir();
        let refused = |paths: &[&Path]| {
            let list: Vec<String> = paths
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect();
            let specs = classes(&format!(
                "[[class]]\nname = \"batch\"\npriority = \"sheddable\"\ncgroups = [{}]\n",
                list.join(", ")
            ));
            resolve_in(&h.0, &specs).unwrap_err().to_string()
        };
        let missing = h.0.join("gone");
        assert_eq!(
            refused(&[&missing]),
            format!(
                "class \"batch\": cgroups: {}: no such cgroup directory",
                missing.display()
            )
        );
        assert_eq!(
            refused(&[&plain]),
            format!(
                "class \"batch\": cgroups: {} is not a cgroup v2 directory (the hierarchy is mounted at {})",
                plain.display(),
                h.0.canonicalize().unwrap().display()
            )
        );
        assert!(
            refused(&[&outside]).contains("is not a cgroup v2 directory"),
            "outside the hierarchy"
        );
        assert_eq!(
            refused(&[&deep]),
            format!(
                "class \"batch\": cgroups: {} is 17 levels below the cgroup v2 root; classes are found at most 16 levels down",
                deep.display()
            )
        );
        // Two spellings of one directory.
        let again = h.0.join("ok/../ok/.");
        assert_eq!(
            refused(&[&ok, &again]),
            format!(
                "class \"batch\": cgroups: {} is the same cgroup as {} (class \"batch\")",
                again.display(),
                ok.display()
            )
        );
    }
}

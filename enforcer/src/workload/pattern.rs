//! A workload selector as written: an absolute cgroup v2 path whose
//! components may be globs (`*`, `?`, `[a-z]`, `{a,b}`, within one
//! component) or `**` (any number of components, none included). The
//! kubelet's layouts, for instance:
//!
//! - `/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*` — every
//!   burstable pod (systemd driver);
//! - `/sys/fs/cgroup/kubepods.slice/**/kubepods-*pod<UID>.slice` — one pod of
//!   any QoS class, its UID's `-` written `_` as systemd escapes it;
//! - `/sys/fs/cgroup/kubepods/burstable/pod*` — the cgroupfs driver's.
//!
//! A pattern selects the cgroups it matches and, through them, every
//! process below them.

use std::{fmt, path::Path};

use globset::{GlobBuilder, GlobMatcher};

/// One component of a pattern.
#[derive(Clone, Debug)]
enum Part {
    Name(String),
    Glob(GlobMatcher),
    /// `**`.
    AnyDepth,
}

impl Part {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Glob(g) => g.is_match(name),
            Self::AnyDepth => true,
        }
    }
}

/// A parsed workload selector.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    parts: Vec<Part>,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// As its text, for the API and the saved experiments.
impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text} is not an absolute path"));
        };
        let mut parts = Vec::new();
        for component in rest.split('/').filter(|c| !c.is_empty()) {
            parts.push(match component {
                "." | ".." => return Err(format!("{text}: `{component}` is not a cgroup name")),
                "**" => Part::AnyDepth,
                c if c.contains("**") => {
                    return Err(format!(
                        "{text}: `**` must be a whole component (any number of cgroups), not part of `{c}`"
                    ));
                }
                c if c.contains(['*', '?', '[', ']', '{', '}', '\\']) => {
                    let glob = GlobBuilder::new(c)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| format!("{text}: `{c}`: {}", e.kind()))?;
                    Part::Glob(glob.compile_matcher())
                }
                c => Part::Name(c.to_owned()),
            });
        }
        if parts.is_empty() {
            return Err(format!("{text} names no cgroup"));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }
}

impl Pattern {
    /// Whether the directory whose absolute path has the components `path`
    /// is one the pattern selects.
    pub fn matches(&self, path: &[&str]) -> bool {
        walk(&self.parts, path, false)
    }

    /// Whether `path`, or a directory below it, may be one the pattern
    /// selects: where to look (and watch) for workloads.
    pub fn may_match_below(&self, path: &[&str]) -> bool {
        walk(&self.parts, path, true)
    }

    /// Whether every match is below `dir` (the cgroup v2 mount): its fixed
    /// leading components are `dir`'s.
    pub fn is_below(&self, dir: &Path) -> bool {
        self.fixed_prefix().starts_with(&components(dir))
    }

    /// The leading components without a glob: where every match is.
    pub fn fixed_prefix(&self) -> Vec<&str> {
        self.parts
            .iter()
            .map_while(|p| match p {
                Part::Name(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The components of the absolute `path`, as patterns match them.
pub fn components(path: &Path) -> Vec<&str> {
    path.iter()
        .filter_map(|c| c.to_str())
        .filter(|c| *c != "/")
        .collect()
}

/// Whether `parts` match `path` whole or, with `prefix`, whether `path`
/// matches a leading part of them (the rest may be matched below it).
fn walk(parts: &[Part], path: &[&str], prefix: bool) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((Part::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| walk(rest, &path[skip..], prefix))
        }
        Some((part, rest)) => match path.split_first() {
            None => prefix,
            Some((name, below)) => part.matches(name) && walk(rest, below, prefix),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        text.parse().unwrap()
    }

    fn path(text: &str) -> Vec<&str> {
        text.split('/').filter(|c| !c.is_empty()).collect()
    }

    const POD: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/\
                       kubepods-burstable-pod0f3b_1c2d.slice";

    #[test]
    fn a_glob_matches_within_one_component() {
        let burstable = p("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*");
        assert!(burstable.matches(&path(POD)));
        // Not the QoS slice itself, nor a container below the pod.
        assert!(!burstable.matches(&path(
            "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice"
        )));
        assert!(!burstable.matches(&path(&format!("{POD}/cri-containerd-ab12.scope"))));
        // Nor a pod of another QoS class.
        assert!(!burstable.matches(&path(
            "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
        )));
    }

    #[test]
    fn any_depth_matches_one_pod_of_any_qos_class() {
        let pod = p("/sys/fs/cgroup/kubepods.slice/**/kubepods-*pod0f3b_1c2d.slice");
        assert!(pod.matches(&path(POD)));
        // A guaranteed pod sits right below kubepods.slice: `**` takes none.
        assert!(pod.matches(&path(
            "/sys/fs/cgroup/kubepods.slice/kubepods-pod0f3b_1c2d.slice"
        )));
        assert!(!pod.matches(&path("/sys/fs/cgroup/kubepods.slice/kubepods-pod9.slice")));
        assert!(!pod.matches(&path(
            "/sys/fs/cgroup/system.slice/kubepods-pod0f3b_1c2d.slice"
        )));
    }

    #[test]
    fn where_to_look_is_every_directory_on_the_way_to_a_match() {
        let burstable = p("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*");
        assert!(burstable.may_match_below(&path("/sys/fs/cgroup")));
        assert!(burstable.may_match_below(&path("/sys/fs/cgroup/kubepods.slice")));
        assert!(!burstable.may_match_below(&path("/sys/fs/cgroup/system.slice")));
        assert!(!burstable.may_match_below(&path(&format!("{POD}/cri-containerd-ab12.scope"))));
        let deep = p("/sys/fs/cgroup/kubepods.slice/**/cri-*.scope");
        assert!(deep.may_match_below(&path(&format!("{POD}/cri-containerd-ab12.scope"))));
        assert!(!deep.may_match_below(&path("/sys/fs/cgroup/system.slice")));
    }

    #[test]
    fn the_cgroupfs_drivers_layout() {
        let pods = p("/sys/fs/cgroup/kubepods/burstable/pod*");
        assert!(pods.matches(&path("/sys/fs/cgroup/kubepods/burstable/pod0f3b-1c2d")));
        assert!(!pods.matches(&path("/sys/fs/cgroup/kubepods/besteffort/pod0f3b-1c2d")));
        assert_eq!(
            pods.fixed_prefix(),
            ["sys", "fs", "cgroup", "kubepods", "burstable"]
        );
        assert!(pods.is_below("/sys/fs/cgroup".as_ref()));
        assert!(!pods.is_below("/sys/fs/cgroup/unified".as_ref()));
        assert!(!p("/sys/fs/*/kubepods").is_below("/sys/fs/cgroup".as_ref()));
    }

    proptest::proptest! {
        /// The walk's pruning is sound: every directory on the way to a
        /// match may lead to one (so the walk goes there), and a match may
        /// too; a pattern matches its own literal text.
        #[test]
        fn the_way_to_every_match_is_walked(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "ab", "*", "a*", "?", "**", "{a,b}"]),
                1..5,
            ),
            path in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "ab", "ba"]),
                0..6,
            ),
        ) {
            let pattern = p(&format!("/{}", parts.join("/")));
            if pattern.matches(&path) {
                for end in 0..=path.len() {
                    proptest::prop_assert!(
                        pattern.may_match_below(&path[..end]),
                        "{pattern} matches {path:?} but not on the way, at {end}"
                    );
                }
            }
        }

        /// A pattern without a glob is a path: it matches that path alone.
        #[test]
        fn a_pattern_without_globs_matches_its_own_path_only(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "ab"]),
                1..5,
            ),
            path in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "ab"]),
                0..6,
            ),
        ) {
            let pattern = p(&format!("/{}", parts.join("/")));
            proptest::prop_assert!(pattern.matches(&parts));
            proptest::prop_assert_eq!(pattern.matches(&path), path == parts);
            proptest::prop_assert_eq!(pattern.fixed_prefix(), parts);
        }
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let err = |t: &str| t.parse::<Pattern>().unwrap_err();
        assert!(err("kubepods.slice/*").contains("not an absolute path"));
        assert!(err("/sys/fs/cgroup/../x").contains("`..`"));
        assert!(err("/sys/fs/cgroup/a**").contains("whole component"));
        assert!(err("/sys/fs/cgroup/[a").contains("`[a`"));
        assert!(err("/").contains("names no cgroup"));
    }
}

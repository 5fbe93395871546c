//! `[[class]]`: priority classes sharing each capped destination's limit
//! ([`enforcer_common::class`]). A process belongs to the class of the
//! nearest ancestor of its cgroup that a class lists; to `default` when none
//! does. The kernel keeps its counts per priority, so there is at most one
//! class per priority; which cgroups exist is checked when the classes are
//! applied ([`crate::daemon::classes`]).

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
};

use enforcer_common::class::{CLASSES, Priority};
use serde::Deserialize;
use toml::Spanned;

use super::{Invalid, check_name, invalid, knobs::Lines};
use crate::workload::Pattern;

/// A `[[class]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClassFile {
    name: Spanned<String>,
    #[serde(default)]
    cgroups: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    #[serde(default)]
    workloads: Option<Spanned<Vec<Spanned<String>>>>,
    priority: Spanned<String>,
    #[serde(default)]
    share: Option<Spanned<f64>>,
}

/// A class, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    pub name: String,
    pub priority: Priority,
    /// Absolute cgroup v2 directories: their processes, and those of the
    /// cgroups below them (unless a nearer one is listed), are of this class.
    pub cgroups: Vec<PathBuf>,
    /// Cgroup path patterns: the cgroups they match now are of this class
    /// too, unless a class lists one outright or a higher class's patterns
    /// match it as well.
    pub workloads: Vec<Pattern>,
    /// The guaranteed share of any capped destination's limit, in [0, 1].
    pub share: f64,
}

/// The priorities by name, highest first.
pub const PRIORITIES: [(&str, Priority); CLASSES] = [
    ("critical", Priority::Critical),
    ("high", Priority::High),
    ("default", Priority::Default),
    ("sheddable", Priority::Sheddable),
];

/// The name of the class of processes in no listed cgroup, when the
/// configuration declares no `default` class of its own.
pub const DEFAULT_NAME: &str = "default";

impl ClassSpec {
    /// The share as the kernel reads it: thousandths of the cap.
    pub fn share_permille(&self) -> u32 {
        permille(self.share)
    }

    /// The class of processes in no listed cgroup, as it runs when no
    /// `default` class is declared: no share, no cgroups.
    pub fn implicit_default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            priority: Priority::Default,
            cgroups: Vec::new(),
            workloads: Vec::new(),
            share: 0.0,
        }
    }
}

fn permille(share: f64) -> u32 {
    (share * 1000.0).round().clamp(0.0, 1000.0) as u32
}

/// Validates the `[[class]]` tables; errors name the class, the field and
/// the line.
pub(super) fn resolve(files: &[ClassFile], lines: &Lines<'_>) -> Result<Vec<ClassSpec>, Invalid> {
    let mut names = HashSet::new();
    let mut priorities: HashMap<u32, &str> = HashMap::new();
    let mut listed: HashMap<PathBuf, &str> = HashMap::new();
    let mut total = 0u32;
    let mut specs = Vec::with_capacity(files.len());
    for file in files {
        let name = file.name.get_ref().as_str();
        let name_line = lines.of(&file.name);
        check_name("class.name", name, name_line)?;
        if !names.insert(name) {
            return invalid("class.name", name_line, format!("`{name}` is used twice"));
        }
        let field = |f: &str| format!("class \"{name}\": {f}");

        let written = file.priority.get_ref();
        let priority_line = lines.of(&file.priority);
        let Some((_, priority)) = PRIORITIES.iter().find(|(n, _)| n == written) else {
            let all: Vec<&str> = PRIORITIES.iter().map(|(n, _)| *n).collect();
            return invalid(
                &field("priority"),
                priority_line,
                format!("`{written}` is not one of {}", all.join(", ")),
            );
        };
        let priority = *priority;
        if let Some(other) = priorities.insert(priority as u32, name) {
            return invalid(
                &field("priority"),
                priority_line,
                format!(
                    "`{written}` is already the priority of class \"{other}\": at most one class \
                     per priority (the kernel counts connections per priority)"
                ),
            );
        }
        if name == DEFAULT_NAME && priority != Priority::Default {
            return invalid(
                "class.name",
                name_line,
                format!(
                    "`{DEFAULT_NAME}` names the class of processes in no listed cgroup: it needs \
                     priority = \"default\" (this one is {written}); give this class another name"
                ),
            );
        }

        let mut cgroups = Vec::new();
        if let Some(list) = &file.cgroups {
            for entry in list.get_ref() {
                let path = entry.get_ref();
                if !path.is_absolute() {
                    return invalid(
                        &field("cgroups"),
                        lines.of(entry),
                        format!("{} is not an absolute path", path.display()),
                    );
                }
                if let Some(other) = listed.insert(path.clone(), name) {
                    let also = if other == name {
                        "twice in this class".to_owned()
                    } else {
                        format!("also by class \"{other}\"")
                    };
                    return invalid(
                        &field("cgroups"),
                        lines.of(entry),
                        format!("{} is listed twice ({also})", path.display()),
                    );
                }
                cgroups.push(path.clone());
            }
        }
        let workloads = super::workloads(&field("workloads"), file.workloads.as_ref(), lines)?;
        if cgroups.is_empty() && workloads.is_empty() && priority != Priority::Default {
            let line = file.cgroups.as_ref().map_or(name_line, |c| lines.of(c));
            return invalid(
                &field("cgroups"),
                line,
                "needs at least one cgroup directory or workloads pattern (only the default \
                 class may list none: processes in no listed cgroup are its members)",
            );
        }

        let share = match &file.share {
            None => 0.0,
            Some(s) => {
                let v = *s.get_ref();
                if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                    return invalid(
                        &field("share"),
                        lines.of(s),
                        format!("must be in [0, 1], got {v}"),
                    );
                }
                total += permille(v);
                if total > 1000 {
                    return invalid(
                        &field("share"),
                        lines.of(s),
                        format!(
                            "the shares add up to {}, more than 1",
                            f64::from(total) / 1000.0
                        ),
                    );
                }
                v
            }
        };
        specs.push(ClassSpec {
            name: name.to_owned(),
            priority,
            cgroups,
            workloads,
            share,
        });
    }
    Ok(specs)
}

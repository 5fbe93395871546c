//! The configuration file: TOML with `[daemon]`, `[defaults]`, `[[policy]]`
//! and `[[class]]` tables. Every key and its default is documented in `default.toml`, which is
//! embedded in the binary; a file is laid over it (a `[[policy]]` or `[[class]]`
//! list in the file replaces the embedded one). Errors name the field and the line.

pub mod class;
mod daemon;
pub mod knobs;
pub mod policy;
pub mod values;

use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
};

use enforcer_common::rules::MAX_POLICIES;
use serde::Deserialize;

pub use class::ClassSpec;
use daemon::DaemonTable;
pub use daemon::{DaemonConfig, DaemonOverrides};
use knobs::{Knobs, KnobsFile, Lines, PolicyFile};
pub use policy::PolicySpec;

use crate::rule::Rule;

/// The embedded default configuration, also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where `enforcer run` looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/enforcer/enforcer.toml";

/// One problem with a configuration: the field, the line (for files) and what
/// is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{field}: {message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct Invalid {
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
}

/// A configuration that cannot be used. Nothing has been applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: Invalid },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
}

/// The resolved, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// `[defaults]` as resolved: what policies added later (`enforcer policy
    /// set`) inherit.
    pub defaults: Knobs,
    pub policies: Vec<PolicySpec>,
    /// `[[class]]`: the priority classes; none: every caller is `default`
    /// and classes are off.
    pub classes: Vec<ClassSpec>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    daemon: DaemonTable,
    #[serde(default)]
    defaults: KnobsFile,
    #[serde(default, rename = "policy")]
    policies: Option<Vec<PolicyFile>>,
    #[serde(default, rename = "class")]
    classes: Option<Vec<class::ClassFile>>,
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Self {
        Self::parse(DEFAULT_TOML, "embedded defaults")
            .expect("the embedded defaults are valid (unit-tested)")
    }

    /// Parses `text`, lays it over the embedded defaults and validates the whole;
    /// `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, &DaemonOverrides::default())
    }

    /// As [`Self::parse`], with flags or environment variables laid on top.
    pub fn parse_with(
        text: &str,
        origin: &str,
        overrides: &DaemonOverrides,
    ) -> Result<Self, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        };
        let invalid = |problem| ConfigError::Invalid {
            origin: origin.to_owned(),
            problem,
        };
        let base: File =
            toml::from_str(DEFAULT_TOML).expect("the embedded defaults parse (unit-tested)");
        let file: File = toml::from_str(text).map_err(syntax)?;
        let (base_lines, lines) = (Lines(None), Lines(Some(text)));

        let mut defaults = Knobs::default();
        defaults.overlay(&base.defaults, &base_lines);
        defaults.overlay(&file.defaults, &lines);
        policy::check_adaptive_defaults(&defaults.adaptive).map_err(invalid)?;
        policy::check_outlier_defaults(&defaults.outlier).map_err(invalid)?;
        let daemon =
            DaemonConfig::resolve(base.daemon, file.daemon, &lines, overrides).map_err(invalid)?;
        let (policies, policy_lines) = match file.policies {
            Some(p) => (p, &lines),
            None => (base.policies.unwrap_or_default(), &base_lines),
        };
        let policies = resolve_policies(&policies, &defaults, policy_lines, daemon.rules_capacity)
            .map_err(invalid)?;
        let (classes, class_lines) = match file.classes {
            Some(c) => (c, &lines),
            None => (base.classes.unwrap_or_default(), &base_lines),
        };
        let classes = class::resolve(&classes, class_lines).map_err(invalid)?;
        Ok(Self {
            daemon,
            defaults,
            policies,
            classes,
        })
    }

    /// Reads `path`; the embedded defaults when `path` is the default location
    /// and does not exist.
    pub fn load(path: &Path, overrides: &DaemonOverrides) -> Result<Self, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse_with(&text, &path.display().to_string(), overrides),
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) => {
                Self::parse_with("", "embedded defaults", overrides)
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// `[[policy]]` tables (`enforcer policy apply`, `policy set`), inheriting
    /// this configuration's defaults. Any other table is refused.
    pub fn parse_policies(&self, text: &str, origin: &str) -> Result<Vec<PolicySpec>, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PoliciesOnly {
            #[serde(default, rename = "policy")]
            policies: Vec<PolicyFile>,
        }
        let file: PoliciesOnly = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        resolve_policies(
            &file.policies,
            &self.defaults,
            &Lines(Some(text)),
            self.daemon.rules_capacity,
        )
        .map_err(|problem| ConfigError::Invalid {
            origin: origin.to_owned(),
            problem,
        })
    }

    /// Checks a whole policy set put together from several sources: names
    /// and rules unique, within the kernel's capacities.
    pub fn check_set(&self, specs: &[PolicySpec]) -> Result<(), Invalid> {
        check_set(specs, self.daemon.rules_capacity)
    }
}

fn check_set(specs: &[PolicySpec], rules_capacity: u32) -> Result<(), Invalid> {
    if specs.len() >= MAX_POLICIES as usize {
        return invalid(
            "policy",
            None,
            format!("at most {} policies, got {}", MAX_POLICIES - 1, specs.len()),
        );
    }
    let mut names = HashSet::new();
    let mut rules = HashSet::new();
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            return invalid(
                "policy.name",
                None,
                format!("`{}` is used twice", spec.name),
            );
        }
        for rule in &spec.rules {
            if !rules.insert(*rule) {
                return invalid(
                    &format!("policy \"{}\": match", spec.name),
                    None,
                    format!("{rule} overlaps another policy's rule with the same prefix and port"),
                );
            }
        }
    }
    check_rule_count(rules.len(), rules_capacity)
}

/// A policy set holds at most `daemon.rules_capacity` rules.
fn check_rule_count(rules: usize, capacity: u32) -> Result<(), Invalid> {
    if rules > capacity as usize {
        return invalid(
            "policy.match",
            None,
            format!("at most {capacity} rules (daemon.rules_capacity), got {rules}"),
        );
    }
    Ok(())
}

/// A policy's or a class's name: what the CLI, metrics labels and saved
/// files can carry as it is.
fn check_name(field: &str, name: &str, line: Option<usize>) -> Result<(), Invalid> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if fits {
        return Ok(());
    }
    invalid(
        field,
        line,
        format!("`{name}`: 1..=64 of A-Z a-z 0-9 - _ ."),
    )
}

fn invalid<T>(field: &str, line: Option<usize>, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field: field.to_owned(),
        line,
        message: message.into(),
    })
}

/// A `workloads` list: each entry a cgroup path pattern
/// ([`crate::workload::Pattern`]), none twice, at least one when the key is
/// there; `field` names the owner and the key.
fn workloads(
    field: &str,
    list: Option<&toml::Spanned<Vec<toml::Spanned<String>>>>,
    lines: &knobs::Lines<'_>,
) -> Result<Vec<crate::workload::Pattern>, Invalid> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.get_ref().is_empty() {
        return invalid(
            field,
            lines.of(list),
            "needs at least one cgroup path pattern (leave the key out instead)",
        );
    }
    let mut patterns: Vec<crate::workload::Pattern> = Vec::new();
    for entry in list.get_ref() {
        let pattern: crate::workload::Pattern = match entry.get_ref().parse() {
            Ok(p) => p,
            Err(e) => return invalid(field, lines.of(entry), e),
        };
        if patterns.contains(&pattern) {
            return invalid(field, lines.of(entry), format!("{pattern} is listed twice"));
        }
        patterns.push(pattern);
    }
    Ok(patterns)
}

fn resolve_policies(
    files: &[PolicyFile],
    defaults: &Knobs,
    lines: &Lines<'_>,
    rules_capacity: u32,
) -> Result<Vec<PolicySpec>, Invalid> {
    if files.len() >= MAX_POLICIES as usize {
        return invalid(
            "policy",
            None,
            format!("at most {} policies, got {}", MAX_POLICIES - 1, files.len()),
        );
    }
    let mut names = HashSet::new();
    let mut seen_rules: HashSet<Rule> = HashSet::new();
    let mut specs = Vec::with_capacity(files.len());
    for file in files {
        let name = file.name.get_ref();
        let name_line = lines.of(&file.name);
        check_name("policy.name", name, name_line)?;
        if !names.insert(name.clone()) {
            return invalid("policy.name", name_line, format!("`{name}` is used twice"));
        }
        let field = |f: &str| format!("policy \"{name}\": {f}");
        if file.matches.get_ref().is_empty() {
            return invalid(
                &field("match"),
                lines.of(&file.matches),
                "needs at least one CIDR:PORT",
            );
        }
        let mut rules = Vec::new();
        for m in file.matches.get_ref() {
            let rule: Rule = match m.get_ref().parse() {
                Ok(r) => r,
                Err(e) => return invalid(&field("match"), lines.of(m), e.to_string()),
            };
            if !seen_rules.insert(rule) {
                // Two spellings of one rule (`[::ffff:10.0.0.0/104]:80` is
                // 10.0.0.0/8:80) are one rule: say which.
                let written = m.get_ref();
                let rule = if *written == rule.to_string() {
                    rule.to_string()
                } else {
                    format!("`{written}` is {rule}, which")
                };
                return invalid(
                    &field("match"),
                    lines.of(m),
                    format!("{rule} overlaps an earlier rule with the same prefix and port"),
                );
            }
            rules.push(rule);
        }
        let cgroup = match &file.cgroup {
            Some(c) if !c.get_ref().is_absolute() => {
                return invalid(
                    &field("cgroup"),
                    lines.of(c),
                    format!("{} is not an absolute path", c.get_ref().display()),
                );
            }
            c => c.as_ref().map(|c| c.get_ref().clone()),
        };
        let workloads = workloads(&field("workloads"), file.workloads.as_ref(), lines)?;
        if let (Some(c), false) = (&cgroup, workloads.is_empty()) {
            return invalid(
                &field("workloads"),
                file.workloads.as_ref().and_then(|w| lines.of(w)),
                format!(
                    "a policy is scoped by a cgroup ({}) or by workloads, not both",
                    c.display()
                ),
            );
        }
        let mut knobs = defaults.clone();
        knobs.overlay(&file.knobs(), lines);
        // Outlier detection is on for a policy with a table of its own
        // (`[defaults.outlier]` only fills in the keys it leaves out).
        let outlier = file.outlier.is_some();
        let spec = PolicySpec::resolve(name, rules, cgroup, workloads, &knobs, outlier)?;
        // `[defaults.adaptive]` applies to the auto policies alone; a
        // policy's own adaptive settings are a mistake on any other.
        if let Some(table) = &file.adaptive
            && spec.adaptive.is_none()
        {
            let cap = spec
                .max_connections
                .map_or("unset".to_owned(), |n| n.to_string());
            return invalid(
                &field("adaptive"),
                lines.of(table),
                format!("needs max_connections = \"auto\" (it is {cap})"),
            );
        }
        specs.push(spec);
    }
    check_rule_count(seen_rules.len(), rules_capacity)?;
    Ok(specs)
}

#[cfg(test)]
mod tests;

//! The configuration file: TOML with `[daemon]`, `[defaults]` and `[[policy]]`
//! tables. Every key and its default is documented in `default.toml`, which is
//! embedded in the binary; a file is laid over it (a `[[policy]]` list in the file
//! replaces the embedded one). Errors name the field and the line.

pub mod knobs;
pub mod policy;
pub mod values;

use std::{
    collections::HashSet,
    fs, io,
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use enforcer_common::rules::MAX_POLICIES;
use serde::Deserialize;
use toml::Spanned;

use knobs::{Knobs, KnobsFile, Lines, PolicyFile};
pub use policy::PolicySpec;
use values::Dur;

use crate::{bpf::PacketHook, rule::Rule};

/// The embedded default configuration, also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The most healers `daemon.max_healers` may allow: each is a task and, for
/// another namespace, a thread per probe.
const MAX_HEALERS_LIMIT: u32 = 65_536;

/// The largest `daemon.rules_capacity`: rule tries allocate per rule, so this
/// bounds what a policy set may make the kernel allocate (two sets at most).
const MAX_RULES_CAPACITY: u32 = 1 << 20;

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Empty: the cgroup v2 root.
    pub cgroup: PathBuf,
    pub pin_root: PathBuf,
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    pub metrics: SocketAddr,
    pub state_dir: PathBuf,
    pub dests_capacity: u32,
    /// Share of the destination map's capacity past which the daemon evicts
    /// idle destinations, least recently used first…
    pub dests_high_water: f64,
    /// …until the map holds at most this share again.
    pub dests_low_water: f64,
    pub max_series: u32,
    pub gc_idle: Duration,
    /// Packet plane: interfaces facing guests whose connections are enforced
    /// on their packets.
    pub interfaces: Vec<String>,
    pub packet_hook: PacketHook,
    pub flow_syn_timeout: Duration,
    pub flow_idle_timeout: Duration,
    pub flows_capacity: u32,
    /// Capacity of each of the kernel's two rule maps: the most rules a
    /// policy set may have.
    pub rules_capacity: u32,
    /// Healing: at most this many destinations probed at once.
    pub max_healers: u32,
    /// Keep what entering other network namespaces needs (`CAP_SYS_ADMIN`,
    /// `CAP_SYS_PTRACE`): naming them, healing from inside them.
    pub enter_namespaces: bool,
    /// Turn on BPF run-time statistics (host-wide) and keep what reading
    /// them needs (`CAP_SYS_ADMIN`).
    pub bpf_run_stats: bool,
    /// The programs log their rare paths (aya-log) and the daemon reads the
    /// lines into its own log.
    pub kernel_log: bool,
}

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    cgroup: Option<Spanned<PathBuf>>,
    pin_root: Option<Spanned<PathBuf>>,
    pin_dir: Option<Spanned<PathBuf>>,
    socket: Option<Spanned<PathBuf>>,
    metrics: Option<Spanned<String>>,
    state_dir: Option<Spanned<PathBuf>>,
    dests_capacity: Option<Spanned<u32>>,
    dests_high_water: Option<Spanned<f64>>,
    dests_low_water: Option<Spanned<f64>>,
    max_series: Option<Spanned<u32>>,
    gc_idle: Option<Spanned<Dur>>,
    interfaces: Option<Spanned<Vec<String>>>,
    packet_hook: Option<Spanned<String>>,
    flow_syn_timeout: Option<Spanned<Dur>>,
    flow_idle_timeout: Option<Spanned<Dur>>,
    flows_capacity: Option<Spanned<u32>>,
    rules_capacity: Option<Spanned<u32>>,
    max_healers: Option<Spanned<u32>>,
    enter_namespaces: Option<Spanned<bool>>,
    bpf_run_stats: Option<Spanned<bool>>,
    kernel_log: Option<Spanned<bool>>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    daemon: DaemonFile,
    #[serde(default)]
    defaults: KnobsFile,
    #[serde(default, rename = "policy")]
    policies: Option<Vec<PolicyFile>>,
}

/// Daemon settings from flags or `ENFORCER_*` variables, which win over the file.
#[derive(Clone, Debug, Default)]
pub struct DaemonOverrides {
    pub cgroup: Option<PathBuf>,
    pub pin_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub metrics: Option<String>,
    pub interfaces: Option<Vec<String>>,
    pub dests_high_water: Option<f64>,
    pub dests_low_water: Option<f64>,
    pub max_healers: Option<u32>,
    pub kernel_log: Option<bool>,
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
        let daemon =
            resolve_daemon(&base.daemon, &file.daemon, &lines, overrides).map_err(invalid)?;
        let (policies, policy_lines) = match file.policies {
            Some(p) => (p, &lines),
            None => (base.policies.unwrap_or_default(), &base_lines),
        };
        let policies = resolve_policies(&policies, &defaults, policy_lines, daemon.rules_capacity)
            .map_err(invalid)?;
        Ok(Self {
            daemon,
            defaults,
            policies,
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

fn invalid<T>(field: &str, line: Option<usize>, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field: field.to_owned(),
        line,
        message: message.into(),
    })
}

/// A daemon key: from the flags, else the file, else the embedded defaults.
fn pick<T: Clone>(
    over: Option<T>,
    file: &Option<Spanned<T>>,
    base: &Option<Spanned<T>>,
    lines: &Lines<'_>,
) -> (T, Option<usize>) {
    if let Some(v) = over {
        return (v, None);
    }
    if let Some(v) = file {
        return (v.get_ref().clone(), lines.of(v));
    }
    let v = base
        .as_ref()
        .expect("the embedded defaults set every daemon key (unit-tested)");
    (v.get_ref().clone(), None)
}

fn resolve_daemon(
    base: &DaemonFile,
    file: &DaemonFile,
    lines: &Lines<'_>,
    over: &DaemonOverrides,
) -> Result<DaemonConfig, Invalid> {
    let (cgroup, cgroup_line) = pick(over.cgroup.clone(), &file.cgroup, &base.cgroup, lines);
    if !cgroup.as_os_str().is_empty() && !cgroup.is_absolute() {
        return invalid(
            "daemon.cgroup",
            cgroup_line,
            format!("{} is not an absolute path", cgroup.display()),
        );
    }
    let (pin_root, root_line) = pick(None, &file.pin_root, &base.pin_root, lines);
    let (pin_dir, dir_line) = pick(over.pin_dir.clone(), &file.pin_dir, &base.pin_dir, lines);
    if !pin_root.is_absolute() {
        return invalid(
            "daemon.pin_root",
            root_line,
            format!("{} is not an absolute path", pin_root.display()),
        );
    }
    if !inside(&pin_dir, &pin_root) {
        return invalid(
            "daemon.pin_dir",
            dir_line,
            format!(
                "{} is not a directory below the pin root {}",
                pin_dir.display(),
                pin_root.display()
            ),
        );
    }
    let (socket, socket_line) = pick(over.socket.clone(), &file.socket, &base.socket, lines);
    if !socket.is_absolute() {
        return invalid(
            "daemon.socket",
            socket_line,
            format!("{} is not an absolute path", socket.display()),
        );
    }
    let (metrics, metrics_line) = pick(over.metrics.clone(), &file.metrics, &base.metrics, lines);
    let Ok(metrics) = metrics.parse::<SocketAddr>() else {
        return invalid(
            "daemon.metrics",
            metrics_line,
            format!("`{metrics}` is not an address like 127.0.0.1:9464"),
        );
    };
    let (state_dir, line) = pick(None, &file.state_dir, &base.state_dir, lines);
    if !state_dir.is_absolute() {
        return invalid(
            "daemon.state_dir",
            line,
            format!("{} is not an absolute path", state_dir.display()),
        );
    }
    let (dests_capacity, line) = pick(None, &file.dests_capacity, &base.dests_capacity, lines);
    if !(1..=16 * 1024 * 1024).contains(&dests_capacity) {
        return invalid(
            "daemon.dests_capacity",
            line,
            format!("must be 1..=16777216, got {dests_capacity}"),
        );
    }
    let (dests_high_water, dests_low_water) = water_marks(base, file, lines, over)?;
    let (max_series, line) = pick(None, &file.max_series, &base.max_series, lines);
    if !(1..=100_000).contains(&max_series) {
        return invalid(
            "daemon.max_series",
            line,
            format!("must be 1..=100000, got {max_series}"),
        );
    }
    let (gc_idle, line) = pick(None, &file.gc_idle, &base.gc_idle, lines);
    if gc_idle.0 < Duration::from_secs(10) || gc_idle.0 > Duration::from_secs(86_400) {
        return invalid(
            "daemon.gc_idle",
            line,
            format!("must be 10s..=24h, got {gc_idle}"),
        );
    }
    let (interfaces, line) = pick(
        over.interfaces.clone(),
        &file.interfaces,
        &base.interfaces,
        lines,
    );
    check_interfaces(&interfaces, line)?;
    let (packet_hook, line) = pick(None, &file.packet_hook, &base.packet_hook, lines);
    let packet_hook = packet_hook
        .parse::<PacketHook>()
        .or_else(|message| invalid("daemon.packet_hook", line, message))?;
    let (flow_syn_timeout, line) =
        pick(None, &file.flow_syn_timeout, &base.flow_syn_timeout, lines);
    if flow_syn_timeout.0 < Duration::from_millis(100)
        || flow_syn_timeout.0 > Duration::from_secs(600)
    {
        return invalid(
            "daemon.flow_syn_timeout",
            line,
            format!("must be 100ms..=10m, got {flow_syn_timeout}"),
        );
    }
    let (flow_idle_timeout, line) = pick(
        None,
        &file.flow_idle_timeout,
        &base.flow_idle_timeout,
        lines,
    );
    if flow_idle_timeout.0 < Duration::from_secs(1)
        || flow_idle_timeout.0 > Duration::from_secs(7 * 86_400)
    {
        return invalid(
            "daemon.flow_idle_timeout",
            line,
            format!("must be 1s..=7d, got {flow_idle_timeout}"),
        );
    }
    let (flows_capacity, line) = pick(None, &file.flows_capacity, &base.flows_capacity, lines);
    if !(1..=16 * 1024 * 1024).contains(&flows_capacity) {
        return invalid(
            "daemon.flows_capacity",
            line,
            format!("must be 1..=16777216, got {flows_capacity}"),
        );
    }
    let (rules_capacity, line) = pick(None, &file.rules_capacity, &base.rules_capacity, lines);
    if !(1..=MAX_RULES_CAPACITY).contains(&rules_capacity) {
        return invalid(
            "daemon.rules_capacity",
            line,
            format!("must be 1..={MAX_RULES_CAPACITY}, got {rules_capacity}"),
        );
    }
    let (max_healers, line) = pick(
        over.max_healers,
        &file.max_healers,
        &base.max_healers,
        lines,
    );
    if !(1..=MAX_HEALERS_LIMIT).contains(&max_healers) {
        return invalid(
            "daemon.max_healers",
            line,
            format!("must be 1..={MAX_HEALERS_LIMIT}, got {max_healers}"),
        );
    }
    let (enter_namespaces, _) = pick(None, &file.enter_namespaces, &base.enter_namespaces, lines);
    let (bpf_run_stats, _) = pick(None, &file.bpf_run_stats, &base.bpf_run_stats, lines);
    let (kernel_log, _) = pick(over.kernel_log, &file.kernel_log, &base.kernel_log, lines);
    Ok(DaemonConfig {
        cgroup,
        pin_root,
        pin_dir,
        socket,
        metrics,
        state_dir,
        dests_capacity,
        dests_high_water,
        dests_low_water,
        max_series,
        gc_idle: gc_idle.0,
        interfaces,
        packet_hook,
        flow_syn_timeout: flow_syn_timeout.0,
        flow_idle_timeout: flow_idle_timeout.0,
        flows_capacity,
        rules_capacity,
        max_healers,
        enter_namespaces,
        bpf_run_stats,
        kernel_log,
    })
}

/// `daemon.dests_high_water` in (0, 1] and `daemon.dests_low_water` in (0,
/// high): eviction needs a gap to work in, or every scan would evict again.
fn water_marks(
    base: &DaemonFile,
    file: &DaemonFile,
    lines: &Lines<'_>,
    over: &DaemonOverrides,
) -> Result<(f64, f64), Invalid> {
    let (high, line) = pick(
        over.dests_high_water,
        &file.dests_high_water,
        &base.dests_high_water,
        lines,
    );
    if !(high > 0.0 && high <= 1.0) {
        return invalid(
            "daemon.dests_high_water",
            line,
            format!("must be a share of the capacity in (0, 1], got {high}"),
        );
    }
    let (low, line) = pick(
        over.dests_low_water,
        &file.dests_low_water,
        &base.dests_low_water,
        lines,
    );
    if !(low > 0.0 && low < high) {
        return invalid(
            "daemon.dests_low_water",
            line,
            format!("must be in (0, dests_high_water = {high}), got {low}"),
        );
    }
    Ok((high, low))
}

/// Interface names as the kernel accepts them (1..=15 bytes, no `/`, `:` or
/// whitespace), each once. Whether they exist is checked when attaching.
fn check_interfaces(interfaces: &[String], line: Option<usize>) -> Result<(), Invalid> {
    let mut seen = HashSet::new();
    for name in interfaces {
        let valid = (1..=15).contains(&name.len())
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !valid {
            return invalid(
                "daemon.interfaces",
                line,
                format!("`{name}` is not an interface name (1..=15 bytes, no / : or spaces)"),
            );
        }
        if !seen.insert(name) {
            return invalid(
                "daemon.interfaces",
                line,
                format!("`{name}` is listed twice"),
            );
        }
    }
    Ok(())
}

/// Whether `path` is strictly below `root`, without `..` tricks.
fn inside(path: &Path, root: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.starts_with(root)
        && path != root
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
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return invalid(
                "policy.name",
                name_line,
                format!("`{name}`: 1..=64 of A-Z a-z 0-9 - _ ."),
            );
        }
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
        let mut knobs = defaults.clone();
        knobs.overlay(&file.knobs(), lines);
        specs.push(PolicySpec::resolve(name, rules, cgroup, &knobs)?);
    }
    check_rule_count(seen_rules.len(), rules_capacity)?;
    Ok(specs)
}

#[cfg(test)]
mod tests;

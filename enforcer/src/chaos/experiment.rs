//! An experiment as written (TOML, from a file or the API) and as validated:
//! every field is checked before anything is injected, and a problem names
//! the field and its line.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use enforcer_common::dest::DestKey;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    config::{
        Invalid,
        knobs::Lines,
        values::{Dur, Errno},
    },
    http::check::HttpCheck,
    rule::Rule,
    workload::Pattern,
};

/// The longest an experiment may inject for.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The shortest: below the safety valve's period nothing could be watched.
pub const MIN_DURATION: Duration = Duration::from_millis(100);
/// Delay faults drop at most this many SYNs per connect (the kernel's
/// retransmission timeouts double: 1 s, 2 s, 4 s, …; six add 63 s).
pub const MAX_DELAY_SYNS: u32 = 6;
/// Faults one experiment may hold.
pub const MAX_FAULTS: usize = 4;
/// Steady-state checks and abort conditions one experiment may hold, each.
pub const MAX_CHECKS: usize = 8;

/// A validated experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    /// How long the faults are injected.
    pub duration: Dur,
    /// How long the steady state is measured before injecting.
    pub baseline: Dur,
    /// How long recovery is awaited after injecting ends.
    pub recovery: Dur,
    pub faults: Vec<FaultSpec>,
    pub steady_state: Vec<SteadyState>,
    pub abort: Vec<AbortCondition>,
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// `connect()` fails at once with `errno`.
    Refuse { errno: u32 },
    /// Every SYN is dropped.
    Blackhole,
    /// The first `syns` SYNs are dropped.
    Delay { syns: u32 },
    /// The established connections to the targets are reset when the
    /// injection starts.
    Reset,
    /// While the injection lasts, a connection to the targets that carried
    /// `bytes` (received, and sent and acknowledged) is reset.
    AbortAfterBytes { bytes: u64 },
    /// Packet plane: a guest's SYN is answered with a RST.
    GuestRefuse,
    /// Packet plane: a guest's SYNs are dropped.
    GuestBlackhole,
    /// Packet plane: a share (the percentage) of a guest's packets to the
    /// targets is dropped.
    GuestLoss,
}

impl FaultKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Refuse { .. } => "refuse",
            Self::Blackhole => "blackhole",
            Self::Delay { .. } => "delay",
            Self::Reset => "reset",
            Self::AbortAfterBytes { .. } => "abort_after_bytes",
            Self::GuestRefuse => "guest_refuse",
            Self::GuestBlackhole => "guest_blackhole",
            Self::GuestLoss => "guest_loss",
        }
    }

    /// Whether the fault acts on guests' packets (the packet plane).
    pub const fn for_guests(self) -> bool {
        matches!(
            self,
            Self::GuestRefuse | Self::GuestBlackhole | Self::GuestLoss
        )
    }

    /// Whether the fault resets established connections, with the TCP
    /// socket iterator the daemon runs (when the injection starts, and for
    /// `abort_after_bytes` every [`super::VALVE_PERIOD`] while it lasts);
    /// else the kernel holds it in a slot of the chaos map for its duration.
    pub const fn resets(self) -> bool {
        matches!(self, Self::Reset | Self::AbortAfterBytes { .. })
    }

    /// Whether the kernel holds the fault in a slot of the chaos map.
    pub const fn armed(self) -> bool {
        !self.resets()
    }
}

/// One fault and its blast radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(flatten)]
    pub kind: FaultKind,
    pub targets: Targets,
}

/// Who and what a fault may touch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Destination prefixes and ports (in every network namespace).
    #[serde(with = "rules")]
    pub destinations: Vec<Rule>,
    /// Callers' cgroups (cgroup v2 directories); empty (and no
    /// `workloads`): every caller.
    pub cgroups: Vec<PathBuf>,
    /// Callers in the cgroups these patterns match as workloads come and go
    /// (never with `cgroups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Pattern>,
    /// Callers' priority classes, by name (`[[class]]`); empty: every class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Share of the matching connects affected, 0 < p ≤ 100.
    pub percentage: f64,
    /// The most connects affected (0: no cap).
    pub max_connects: u64,
}

impl Targets {
    /// Whether `dest` is one of the destinations, as the kernel matches it
    /// (an IPv4 address and its v4-mapped form are one).
    pub fn covers(&self, dest: SocketAddr) -> bool {
        let key = DestKey::from(dest);
        self.destinations.iter().any(|r| r.target().matches(&key))
    }
}

/// What a check measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Completed handshakes over every connect the gate saw (the breaker's
    /// refusals included), over a window: of one destination, or of every
    /// destination of a policy; for a priority class, the share of its
    /// connects not shed.
    SuccessRatio { of: RatioOf, window: Dur },
    /// 1 while an HTTP GET answers 200 within `timeout`, 0 otherwise.
    Http { url: String, timeout: Dur },
    /// The per-second rate of one of the kernel's counters
    /// (`enforcer_kernel_*`) over a window.
    Rate { metric: String, window: Dur },
}

/// Whose success ratio a measure is: `success_ratio = "ADDR:PORT"` (a
/// destination in the daemon's network namespace), `"policy:NAME"` or
/// `"class:NAME"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioOf {
    Destination(SocketAddr),
    Policy(String),
    Class(String),
}

impl std::str::FromStr for RatioOf {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let named = |name: &str| {
            (!name.is_empty())
                .then(|| name.to_owned())
                .ok_or_else(|| format!("`{text}`: a name after the colon"))
        };
        if let Some(name) = text.strip_prefix("policy:") {
            return Ok(Self::Policy(named(name)?));
        }
        if let Some(name) = text.strip_prefix("class:") {
            return Ok(Self::Class(named(name)?));
        }
        text.parse().map(Self::Destination).map_err(|_| {
            format!("`{text}`: an address like 127.0.0.1:8080, policy:NAME or class:NAME")
        })
    }
}

impl std::fmt::Display for RatioOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Destination(d) => d.fmt(f),
            Self::Policy(p) => write!(f, "policy {p}"),
            Self::Class(c) => write!(f, "class {c}"),
        }
    }
}

/// A measure that must stay within `tolerance` of its baseline for the
/// hypothesis to hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub name: String,
    pub measure: Measure,
    /// The largest deviation from the baseline that is still steady.
    pub tolerance: f64,
}

/// When to stop an experiment at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortCondition {
    /// A destination outside every fault's targets trips (or, if named, that
    /// one).
    Trip { destination: Option<SocketAddr> },
    /// A measure falls below a bound.
    Below { measure: Measure, bound: f64 },
    /// A measure rises above a bound.
    Above { measure: Measure, bound: f64 },
}

impl Experiment {
    /// Whether a fault names its callers by workload selectors.
    pub fn selects_workloads(&self) -> bool {
        self.faults.iter().any(|f| !f.targets.workloads.is_empty())
    }

    /// Parses and validates an experiment; `origin` names the text in
    /// syntax errors.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let file: File = toml::from_str(text).map_err(|e| Invalid {
            field: "experiment".to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().to_owned(),
        })?;
        file.validate(&Lines(Some(text)))
    }

    /// How long the whole experiment may run: baseline, injection, recovery.
    pub fn length(&self) -> Duration {
        self.baseline.0 + self.duration.0 + self.recovery.0
    }

    /// The policies and classes the experiment's measures name, each with
    /// the field that names it.
    pub fn named(&self) -> Vec<(String, &RatioOf)> {
        let steady = self
            .steady_state
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("steady_state[{i}].success_ratio"), Some(&s.measure)));
        let aborts = self.abort.iter().enumerate().map(|(i, a)| {
            let measure = match a {
                AbortCondition::Below { measure, .. } | AbortCondition::Above { measure, .. } => {
                    Some(measure)
                }
                AbortCondition::Trip { .. } => None,
            };
            (format!("abort[{i}].success_ratio"), measure)
        });
        steady
            .chain(aborts)
            .filter_map(|(field, m)| match m? {
                Measure::SuccessRatio { of, .. } if !matches!(of, RatioOf::Destination(_)) => {
                    Some((field, of))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether `dest` is a target of any fault.
    pub fn targets(&self, dest: SocketAddr) -> bool {
        self.faults.iter().any(|f| f.targets.covers(dest))
    }
}

/// The experiment as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Spanned<String>,
    duration: Spanned<Dur>,
    baseline: Option<Spanned<Dur>>,
    recovery: Option<Spanned<Dur>>,
    #[serde(default)]
    targets: TargetsFile,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<FaultFile>>,
    #[serde(default)]
    steady_state: Vec<Spanned<CheckFile>>,
    #[serde(default)]
    abort: Vec<Spanned<CheckFile>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    destinations: Option<Spanned<Vec<String>>>,
    cgroups: Option<Spanned<Vec<PathBuf>>>,
    workloads: Option<Spanned<Vec<String>>>,
    classes: Option<Spanned<Vec<String>>>,
    percentage: Option<Spanned<f64>>,
    max_connects: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    kind: Spanned<String>,
    errno: Option<Spanned<Errno>>,
    syns: Option<Spanned<u32>>,
    bytes: Option<Spanned<u64>>,
    // A fault's own targets, over `[targets]` (as TargetsFile: serde's
    // `flatten` cannot carry spans).
    destinations: Option<Spanned<Vec<String>>>,
    cgroups: Option<Spanned<Vec<PathBuf>>>,
    workloads: Option<Spanned<Vec<String>>>,
    classes: Option<Spanned<Vec<String>>>,
    percentage: Option<Spanned<f64>>,
    max_connects: Option<Spanned<u64>>,
}

impl FaultFile {
    fn targets(&self) -> TargetsFile {
        TargetsFile {
            destinations: self.destinations.clone(),
            cgroups: self.cgroups.clone(),
            workloads: self.workloads.clone(),
            classes: self.classes.clone(),
            percentage: self.percentage.clone(),
            max_connects: self.max_connects.clone(),
        }
    }
}

/// A steady-state check or an abort condition as written: one measure
/// (`success_ratio`, `http`, `metric`; or `trip` for aborts) and its bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    name: Option<String>,
    success_ratio: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    trip: Option<Spanned<String>>,
    window: Option<Spanned<Dur>>,
    timeout: Option<Spanned<Dur>>,
    tolerance: Option<Spanned<f64>>,
    below: Option<Spanned<f64>>,
    above: Option<Spanned<f64>>,
}

/// The default window of ratios and rates.
const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// The default timeout of HTTP checks.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

struct Checker<'a> {
    lines: &'a Lines<'a>,
}

impl Checker<'_> {
    fn bad<T>(
        &self,
        field: impl Into<String>,
        at: &Spanned<T>,
        message: impl Into<String>,
    ) -> Invalid {
        Invalid {
            field: field.into(),
            line: self.lines.of(at),
            message: message.into(),
        }
    }
}

impl File {
    fn validate(self, lines: &Lines<'_>) -> Result<Experiment, Invalid> {
        let c = Checker { lines };
        let name = self.name.get_ref();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(c.bad(
                "name",
                &self.name,
                "1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        let duration = *self.duration.get_ref();
        if !(MIN_DURATION..=MAX_DURATION).contains(&duration.0) {
            return Err(c.bad("duration", &self.duration, "must be 100ms..=24h"));
        }
        let bounded = |field: &str, value: &Option<Spanned<Dur>>, default: Duration| match value {
            Some(v) if v.get_ref().0 > MAX_DURATION => Err(c.bad(field, v, "must be at most 24h")),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(Dur(default)),
        };
        let baseline = bounded("baseline", &self.baseline, Duration::from_secs(5))?;
        let recovery = bounded("recovery", &self.recovery, Duration::from_secs(60))?;
        if self.faults.is_empty() {
            return Err(Invalid {
                field: "fault".to_owned(),
                line: None,
                message: "an experiment needs at least one [[fault]]".to_owned(),
            });
        }
        if self.faults.len() > MAX_FAULTS {
            return Err(c.bad(
                "fault",
                &self.faults[MAX_FAULTS],
                format!("at most {MAX_FAULTS} faults per experiment"),
            ));
        }
        let faults = self
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| c.fault(i, f, &self.targets))
            .collect::<Result<Vec<_>, _>>()?;
        for (field, list) in [("steady_state", &self.steady_state), ("abort", &self.abort)] {
            if list.len() > MAX_CHECKS {
                return Err(c.bad(field, &list[MAX_CHECKS], format!("at most {MAX_CHECKS}")));
            }
        }
        let steady_state = self
            .steady_state
            .iter()
            .enumerate()
            .map(|(i, s)| c.steady_state(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        if !steady_state.is_empty() && baseline.0.is_zero() {
            let at = self.baseline.as_ref().expect("zero only when written");
            return Err(c.bad(
                "baseline",
                at,
                "steady-state checks need a baseline to compare with",
            ));
        }
        let abort = self
            .abort
            .iter()
            .enumerate()
            .map(|(i, a)| c.abort(i, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Experiment {
            name: name.clone(),
            duration,
            baseline,
            recovery,
            faults,
            steady_state,
            abort,
        })
    }
}

impl Checker<'_> {
    fn fault(
        &self,
        i: usize,
        at: &Spanned<FaultFile>,
        defaults: &TargetsFile,
    ) -> Result<FaultSpec, Invalid> {
        let f = at.get_ref();
        let field = |k: &str| format!("fault[{i}].{k}");
        let kind = match f.kind.get_ref().as_str() {
            "refuse" => FaultKind::Refuse {
                errno: f
                    .errno
                    .as_ref()
                    .map_or(libc::ECONNREFUSED as u32, |e| e.get_ref().0),
            },
            "blackhole" => FaultKind::Blackhole,
            "reset" => FaultKind::Reset,
            "guest_refuse" => FaultKind::GuestRefuse,
            "guest_blackhole" => FaultKind::GuestBlackhole,
            "guest_loss" => FaultKind::GuestLoss,
            "abort_after_bytes" => match &f.bytes {
                Some(b) if *b.get_ref() > 0 => FaultKind::AbortAfterBytes {
                    bytes: *b.get_ref(),
                },
                Some(b) => return Err(self.bad(field("bytes"), b, "must be at least 1")),
                None => {
                    return Err(self.bad(
                        field("bytes"),
                        at,
                        "abort_after_bytes names the bytes a connection may carry",
                    ));
                }
            },
            "delay" => {
                let Some(syns) = &f.syns else {
                    return Err(self.bad(
                        field("syns"),
                        at,
                        "a delay names the SYNs it drops (1..=6)",
                    ));
                };
                if !(1..=MAX_DELAY_SYNS).contains(syns.get_ref()) {
                    return Err(self.bad(
                        field("syns"),
                        syns,
                        format!("must be 1..={MAX_DELAY_SYNS}"),
                    ));
                }
                FaultKind::Delay {
                    syns: *syns.get_ref(),
                }
            }
            other => {
                return Err(self.bad(
                    field("kind"),
                    &f.kind,
                    format!(
                        "unknown fault `{other}`; one of refuse, blackhole, delay, reset, \
                         abort_after_bytes, guest_refuse, guest_blackhole, guest_loss"
                    ),
                ));
            }
        };
        if let (Some(errno), false) = (&f.errno, matches!(kind, FaultKind::Refuse { .. })) {
            return Err(self.bad(field("errno"), errno, "only a refuse fault has an errno"));
        }
        if let (Some(syns), false) = (&f.syns, matches!(kind, FaultKind::Delay { .. })) {
            return Err(self.bad(
                field("syns"),
                syns,
                "only a delay fault drops a number of SYNs",
            ));
        }
        if let (Some(bytes), false) = (&f.bytes, matches!(kind, FaultKind::AbortAfterBytes { .. }))
        {
            return Err(self.bad(field("bytes"), bytes, "only abort_after_bytes has bytes"));
        }
        let targets = self.targets(i, at, &f.targets(), defaults)?;
        // Field names for a key given by the fault itself, or by [targets].
        let own = |k: &str, own: bool| {
            if own {
                field(k)
            } else {
                format!("targets.{k}")
            }
        };
        if kind.for_guests() {
            // A guest's packets belong to no cgroup of this host; the packet
            // path keeps no cap.
            self.destinations_only(
                f,
                defaults,
                own,
                "a guest fault acts on guests' packets, which belong to no cgroup or class: \
                 give it its own destinations and no cgroups or classes",
                "a guest fault has no cap (use percentage)",
            )?;
        }
        if kind.resets() {
            // The kernel's socket iterator tells a socket's destination, not
            // the cgroup of who opened it: a reset cannot keep to cgroups.
            self.destinations_only(
                f,
                defaults,
                own,
                "a fault that resets connections does so by destination only (every \
                 process's connections): give it its own destinations and no cgroups or \
                 classes",
                "a fault that resets connections has no cap",
            )?;
            let percentage = f.percentage.as_ref().or(defaults.percentage.as_ref());
            if let (Some(p), FaultKind::AbortAfterBytes { .. }) = (percentage, kind)
                && *p.get_ref() < 100.0
            {
                return Err(self.bad(
                    own("percentage", f.percentage.is_some()),
                    p,
                    "abort_after_bytes aborts every connection past its bytes (it is looked \
                     at every 100 ms: a share would end them all)",
                ));
            }
        }
        Ok(FaultSpec { kind, targets })
    }

    /// Refuses cgroups, classes and a cap for a fault that acts by
    /// destination only, from its own fields or `[targets]` (`own` names the
    /// field), saying `no_cgroups` (for either of the first two) or `no_cap`.
    fn destinations_only(
        &self,
        f: &FaultFile,
        defaults: &TargetsFile,
        own: impl Fn(&str, bool) -> String,
        no_cgroups: &str,
        no_cap: &str,
    ) -> Result<(), Invalid> {
        if let Some(c) = f.cgroups.as_ref().or(defaults.cgroups.as_ref()) {
            return Err(self.bad(own("cgroups", f.cgroups.is_some()), c, no_cgroups));
        }
        if let Some(w) = f.workloads.as_ref().or(defaults.workloads.as_ref()) {
            return Err(self.bad(own("workloads", f.workloads.is_some()), w, no_cgroups));
        }
        if let Some(c) = f.classes.as_ref().or(defaults.classes.as_ref()) {
            return Err(self.bad(own("classes", f.classes.is_some()), c, no_cgroups));
        }
        if let Some(m) = f.max_connects.as_ref().or(defaults.max_connects.as_ref()) {
            return Err(self.bad(own("max_connects", f.max_connects.is_some()), m, no_cap));
        }
        Ok(())
    }

    /// A fault's targets: its own fields over `[targets]`.
    fn targets(
        &self,
        i: usize,
        fault: &Spanned<FaultFile>,
        own: &TargetsFile,
        defaults: &TargetsFile,
    ) -> Result<Targets, Invalid> {
        let pick = |k: &str, own_set: bool| {
            if own_set {
                format!("fault[{i}].{k}")
            } else {
                format!("targets.{k}")
            }
        };
        let destinations = own.destinations.as_ref().or(defaults.destinations.as_ref());
        let Some(destinations) = destinations else {
            return Err(self.bad(
                format!("fault[{i}].destinations"),
                fault,
                "a fault needs destinations, its own or in [targets]",
            ));
        };
        let field = pick("destinations", own.destinations.is_some());
        if destinations.get_ref().is_empty() {
            return Err(self.bad(field, destinations, "must list at least one CIDR:PORT"));
        }
        if destinations.get_ref().len() > enforcer_common::chaos::MAX_TARGETS {
            return Err(self.bad(
                field,
                destinations,
                format!("at most {} per fault", enforcer_common::chaos::MAX_TARGETS),
            ));
        }
        let rules = destinations
            .get_ref()
            .iter()
            .map(|d| d.parse::<Rule>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                self.bad(
                    pick("destinations", own.destinations.is_some()),
                    destinations,
                    e.to_string(),
                )
            })?;
        let cgroups = own.cgroups.as_ref().or(defaults.cgroups.as_ref());
        let cgroup_paths = match cgroups {
            None => Vec::new(),
            Some(list) => {
                let field = pick("cgroups", own.cgroups.is_some());
                if list.get_ref().len() > enforcer_common::chaos::MAX_CGROUPS {
                    return Err(self.bad(
                        field,
                        list,
                        format!("at most {} per fault", enforcer_common::chaos::MAX_CGROUPS),
                    ));
                }
                if let Some(p) = list.get_ref().iter().find(|p| !p.is_absolute()) {
                    return Err(self.bad(
                        field,
                        list,
                        format!("`{}` is not an absolute cgroup v2 path", p.display()),
                    ));
                }
                list.get_ref().clone()
            }
        };
        let workloads = match own.workloads.as_ref().or(defaults.workloads.as_ref()) {
            None => Vec::new(),
            Some(list) => {
                let field = pick("workloads", own.workloads.is_some());
                if cgroups.is_some() {
                    return Err(self.bad(
                        field,
                        list,
                        format!(
                            "a fault's callers are {} or workloads, not both",
                            pick("cgroups", own.cgroups.is_some())
                        ),
                    ));
                }
                if list.get_ref().is_empty() {
                    return Err(self.bad(
                        field,
                        list,
                        "must list at least one cgroup path pattern",
                    ));
                }
                list.get_ref()
                    .iter()
                    .map(|w| w.parse::<Pattern>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.bad(field.clone(), list, e))?
            }
        };
        let classes = match own.classes.as_ref().or(defaults.classes.as_ref()) {
            None => Vec::new(),
            Some(list) => {
                let field = pick("classes", own.classes.is_some());
                let names = list.get_ref();
                if names.is_empty() {
                    return Err(self.bad(field, list, "must name at least one class"));
                }
                if let Some(n) = names.iter().find(|n| n.trim().is_empty()) {
                    return Err(self.bad(field, list, format!("`{n}` is not a class name")));
                }
                names.clone()
            }
        };
        let percentage = match own.percentage.as_ref().or(defaults.percentage.as_ref()) {
            None => 100.0,
            Some(p) => {
                let v = *p.get_ref();
                if !(v > 0.0 && v <= 100.0) {
                    return Err(self.bad(
                        pick("percentage", own.percentage.is_some()),
                        p,
                        "must be above 0 and at most 100",
                    ));
                }
                v
            }
        };
        let max_connects = own
            .max_connects
            .as_ref()
            .or(defaults.max_connects.as_ref())
            .map_or(0, |m| *m.get_ref());
        Ok(Targets {
            destinations: rules,
            cgroups: cgroup_paths,
            workloads,
            classes,
            percentage,
            max_connects,
        })
    }

    /// The one measure a check names.
    fn measure(&self, field: &str, at: &Spanned<CheckFile>) -> Result<Option<Measure>, Invalid> {
        let c = at.get_ref();
        let named = [
            c.success_ratio.is_some(),
            c.http.is_some(),
            c.metric.is_some(),
        ];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err(self.bad(field, at, "name one measure: success_ratio, http or metric"));
        }
        let window = match &c.window {
            Some(w)
                if w.get_ref().0 < Duration::from_millis(100) || w.get_ref().0 > MAX_DURATION =>
            {
                return Err(self.bad(format!("{field}.window"), w, "must be 100ms..=24h"));
            }
            Some(w) => *w.get_ref(),
            None => Dur(DEFAULT_WINDOW),
        };
        if let Some(of) = &c.success_ratio {
            let of = of
                .get_ref()
                .parse()
                .map_err(|e| self.bad(format!("{field}.success_ratio"), of, e))?;
            return Ok(Some(Measure::SuccessRatio { of, window }));
        }
        if let Some(url) = &c.http {
            if let Err(e) = HttpCheck::parse(url.get_ref()) {
                return Err(self.bad(format!("{field}.http"), url, e));
            }
            let timeout = c
                .timeout
                .as_ref()
                .map_or(Dur(DEFAULT_TIMEOUT), |t| *t.get_ref());
            if timeout.0 < Duration::from_millis(10) || timeout.0 > Duration::from_secs(60) {
                let t = c.timeout.as_ref().expect("the default is in range");
                return Err(self.bad(format!("{field}.timeout"), t, "must be 10ms..=60s"));
            }
            return Ok(Some(Measure::Http {
                url: url.get_ref().clone(),
                timeout,
            }));
        }
        if let Some(metric) = &c.metric {
            let known = enforcer_common::counters::GlobalCounter::ALL
                .iter()
                .any(|g| format!("enforcer_kernel_{}", g.name()) == *metric.get_ref());
            if !known {
                return Err(self.bad(
                    format!("{field}.metric"),
                    metric,
                    format!(
                        "`{}` is not one of the kernel's counters (enforcer_kernel_*, see `enforcer metrics`)",
                        metric.get_ref()
                    ),
                ));
            }
            return Ok(Some(Measure::Rate {
                metric: metric.get_ref().clone(),
                window,
            }));
        }
        Ok(None)
    }

    fn steady_state(&self, i: usize, at: &Spanned<CheckFile>) -> Result<SteadyState, Invalid> {
        let field = format!("steady_state[{i}]");
        let c = at.get_ref();
        for (key, set) in [
            ("trip", c.trip.is_some()),
            ("below", c.below.is_some()),
            ("above", c.above.is_some()),
        ] {
            if set {
                return Err(self.bad(
                    format!("{field}.{key}"),
                    at,
                    "belongs to [[abort]]; a steady-state check has a tolerance",
                ));
            }
        }
        let Some(measure) = self.measure(&field, at)? else {
            return Err(self.bad(field, at, "name a measure: success_ratio, http or metric"));
        };
        let tolerance = match &c.tolerance {
            Some(t) if !(*t.get_ref() >= 0.0 && t.get_ref().is_finite()) => {
                return Err(self.bad(format!("{field}.tolerance"), t, "must be a number ≥ 0"));
            }
            Some(t) => *t.get_ref(),
            None if matches!(measure, Measure::Rate { .. }) => {
                return Err(self.bad(
                    format!("{field}.tolerance"),
                    at,
                    "a rate check needs its tolerance (per second)",
                ));
            }
            None => 0.05,
        };
        let name = c.name.clone().unwrap_or_else(|| default_name(&measure));
        Ok(SteadyState {
            name,
            measure,
            tolerance,
        })
    }

    fn abort(&self, i: usize, at: &Spanned<CheckFile>) -> Result<AbortCondition, Invalid> {
        let field = format!("abort[{i}]");
        let c = at.get_ref();
        if let Some(t) = &c.tolerance {
            return Err(self.bad(
                format!("{field}.tolerance"),
                t,
                "belongs to [[steady_state]]; an abort condition has a bound (below/above)",
            ));
        }
        if let Some(trip) = &c.trip {
            if c.success_ratio.is_some() || c.http.is_some() || c.metric.is_some() {
                return Err(self.bad(&field, at, "a trip condition names no other measure"));
            }
            let destination = match trip.get_ref().as_str() {
                "non_target" => None,
                text => Some(text.parse().map_err(|_| {
                    self.bad(
                        format!("{field}.trip"),
                        trip,
                        format!("`{text}`: `non_target` or an address like 127.0.0.1:8080"),
                    )
                })?),
            };
            return Ok(AbortCondition::Trip { destination });
        }
        let Some(measure) = self.measure(&field, at)? else {
            return Err(self.bad(
                field,
                at,
                "name a condition: trip, success_ratio, http or metric",
            ));
        };
        if let Measure::Http { .. } = measure {
            // Fires when the check stops answering 200 within its timeout.
            return Ok(AbortCondition::Below {
                measure,
                bound: 1.0,
            });
        }
        match (&c.below, &c.above) {
            (Some(b), None) => Ok(AbortCondition::Below {
                measure,
                bound: *b.get_ref(),
            }),
            (None, Some(a)) => Ok(AbortCondition::Above {
                measure,
                bound: *a.get_ref(),
            }),
            _ => Err(self.bad(field, at, "give one bound: below or above")),
        }
    }
}

/// A check's name when it has none: what it measures.
fn default_name(m: &Measure) -> String {
    match m {
        Measure::SuccessRatio { of, .. } => format!("success ratio of {of}"),
        Measure::Http { url, .. } => format!("GET {url}"),
        Measure::Rate { metric, .. } => format!("rate of {metric}"),
    }
}

/// Rules as their text in the typed API.
mod rules {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::rule::Rule;

    pub fn serialize<S: Serializer>(rules: &[Rule], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(rules.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Rule>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| t.parse().map_err(de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests;

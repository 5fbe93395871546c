//! What the daemon answers. Field names are the API: scripts read them, so a
//! rename is a breaking change.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    config::{
        ClassSpec, PolicySpec,
        policy::AdaptiveSpec,
        values::{self, Backoff, Dur, Learnable, Mode},
    },
    outlier,
};

/// `GET /v1/status`: the global switch and the destinations, most
/// interesting first (open, then by failures). The daemon serialises
/// `destinations` lazily, from any sequence; clients read a `Vec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status<D = Vec<Destination>> {
    pub paused: bool,
    /// The kernel's configuration generation (bumped by every install).
    pub generation: u64,
    pub destinations: D,
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
    /// A value this daemon does not know (a newer kernel side).
    Unknown,
}

impl BreakerState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Unknown => "unknown",
        }
    }
}

/// An operator's override of a destination's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideKind {
    /// Rejected as if tripped (`trip`).
    ForcedOpen,
    /// Passes untouched (`disable`).
    Disabled,
    Unknown,
}

impl OverrideKind {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::Unknown => "unknown",
        }
    }
}

/// A destination's learned normal, as the kernel holds it, and the
/// thresholds the kernel makes of it now.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineView {
    /// Windows learned from; thresholds follow the baseline once `warm`.
    pub windows: u32,
    pub warm: bool,
    /// The moving average of its failure share per window.
    pub failure_share: f64,
    /// How much that share varies (never below a window's sampling noise).
    pub spread: f64,
    /// The moving average of its windows' 99th percentile handshake.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_p99: Option<Duration>,
    /// The failure share that trips it now.
    pub trip_rate: f64,
    /// A handshake slower than this is a failure now (none: nothing is).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_connect: Option<Duration>,
}

impl BaselineView {
    /// `b` under the kernel's `policy`.
    pub fn of(
        policy: &enforcer_common::policy::Policy,
        b: &enforcer_common::baseline::Baseline,
    ) -> Self {
        let slow = policy.slow_ns(b);
        Self {
            windows: b.windows,
            warm: b.warm(),
            failure_share: f64::from(b.share_ppm) / 1e6,
            spread: f64::from(b.spread_ppm) / 1e6,
            connect_p99: (b.p99_us != 0).then(|| Duration::from_micros(u64::from(b.p99_us))),
            trip_rate: f64::from(policy.trip_permille(b)) / 1000.0,
            slow_connect: (slow != 0).then(|| Duration::from_nanos(slow)),
        }
    }
}

/// Failed connects by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub refused: u64,
    pub timeout: u64,
    pub unreachable: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.unreachable
    }
}

/// Rejections by what caused them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByCause {
    pub circuit: u64,
    pub bulkhead: u64,
}

impl ByCause {
    pub fn total(&self) -> u64 {
        self.circuit + self.bulkhead
    }
}

/// One destination: an address and port in a network namespace. `netns` is
/// the namespace's inode (`ip netns identify`, `lsns -t net`; null while
/// unknown), `netns_name` its name under /run/netns, `netns_status` one of
/// `host` (the daemon's own), `present`, `gone` or `unknown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub dest: SocketAddr,
    pub netns: Option<u64>,
    pub netns_name: Option<String>,
    pub netns_status: String,
    pub policy: String,
    pub state: BreakerState,
    /// Connections holding a slot.
    pub active: u32,
    /// Connects admitted whose handshake has not ended.
    pub pending: u32,
    pub max_connections: Option<u32>,
    /// The cap learnt for this destination (`max_connections = "auto"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The limit's last move and what it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_change: Option<LimitChange>,
    /// While open because it was ejected as an outlier: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection: Option<EjectionView>,
    /// Its learned normal and the thresholds made of it (`failure_rate` or
    /// `slow_connect` = `"auto"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineView>,
    pub attempts: u64,
    pub successes: u64,
    pub slow: u64,
    pub abandoned: u64,
    pub local_errors: u64,
    pub failures: Failures,
    pub rejections: ByCause,
    /// Observe mode: what would have been rejected.
    pub would_reject: ByCause,
    pub probes: u64,
    pub probes_reclaimed: u64,
    pub trips: u64,
    /// Trips counted towards the backoff (decays while healthy).
    pub trip_level: u32,
    pub guard_refusals: u64,
    /// Time left open, in milliseconds.
    pub open_for_ms: Option<u64>,
    #[serde(rename = "override")]
    pub override_kind: Option<OverrideKind>,
    pub override_for_ms: Option<u64>,
    /// The chaos experiments whose faults target this destination now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<String>,
    /// With classes configured: each class's counts here, by class name
    /// (only the class asked for with `class=NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<BTreeMap<String, ClassCounts>>,
}

/// A priority class's counts: at one destination, or summed over all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Connections of the class holding a slot.
    pub active: u64,
    /// Connects of the class admitted.
    pub admitted: u64,
    /// Connects of the class refused by the class rules: its share used and
    /// nothing left to borrow, or shed while the destination degrades.
    pub shed: u64,
}

impl ClassCounts {
    /// Adds the kernel's counts of one destination.
    pub fn add(&mut self, c: &enforcer_common::class::ClassCounts) {
        self.active += u64::from(c.active);
        self.admitted += c.admitted;
        self.shed += c.shed;
    }
}

impl From<&enforcer_common::class::ClassCounts> for ClassCounts {
    fn from(c: &enforcer_common::class::ClassCounts) -> Self {
        let mut counts = Self::default();
        counts.add(c);
        counts
    }
}

/// A priority class's settings (a `[[class]]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassSettings {
    pub name: String,
    /// `critical`, `high`, `default` or `sheddable`.
    pub priority: String,
    /// The guaranteed share of a capped destination's limit, in [0, 1].
    pub share: f64,
    /// The cgroup directories whose processes are of the class.
    pub cgroups: Vec<String>,
    /// Cgroup path patterns whose matches' processes are of the class too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
}

/// A workload selector's pattern and how many cgroups it matches now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadMatch {
    pub pattern: String,
    /// 0 is valid: its workloads may not exist (yet).
    pub cgroups: usize,
}

impl WorkloadMatch {
    /// Each of `patterns` with its count in `counts` (0 where none is known).
    pub fn list(patterns: &[crate::workload::Pattern], counts: Option<&[usize]>) -> Vec<Self> {
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Self {
                pattern: p.to_string(),
                cgroups: counts.and_then(|c| c.get(i)).copied().unwrap_or(0),
            })
            .collect()
    }
}

impl From<&ClassSpec> for ClassSettings {
    fn from(c: &ClassSpec) -> Self {
        Self {
            name: c.name.clone(),
            priority: c.priority.name().to_owned(),
            share: c.share,
            cgroups: c.cgroups.iter().map(|p| p.display().to_string()).collect(),
            workloads: c.workloads.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A running class: its settings and its counts summed over the
/// destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassView {
    #[serde(flatten)]
    pub settings: ClassSettings,
    /// False for the default class no `[[class]]` declares: processes in no
    /// listed cgroup, which is a class whenever others are.
    pub declared: bool,
    /// Each of its workload patterns and its matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<WorkloadMatch>,
    #[serde(flatten)]
    pub counts: ClassCounts,
}

/// A policy's settings, every one written out: what `policy show` prints
/// and what the daemon saves (as `[[policy]]` tables that read back the
/// same whatever the configuration's defaults become). Durations are
/// humantime text (`30s`, `1m 30s`); settings that are off are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    pub name: String,
    #[serde(rename = "match")]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    pub mode: Mode,
    pub failure_threshold: u32,
    /// A share, or `"auto"`: learned per destination.
    pub failure_rate: Learnable<f64>,
    pub min_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A duration, or `"auto"`: learned per destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_connect: Option<Learnable<Dur>>,
    /// With a learned `failure_rate` or `slow_connect`: how far back each
    /// destination's normal goes, and what is made of it.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub baseline_window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_connect_factor: Option<f64>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub open: Duration,
    #[serde(with = "humantime_serde")]
    pub open_max: Duration,
    pub backoff: Backoff,
    pub jitter: f64,
    #[serde(with = "humantime_serde")]
    pub rejitter: Duration,
    pub half_open_probes: u32,
    pub close_after: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<Cap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u32>,
    pub errno: String,
    pub max_open_percent: u32,
    #[serde(with = "humantime_serde")]
    pub trip_decay: Duration,
    pub heal: bool,
    #[serde(with = "humantime_serde")]
    pub heal_interval: Duration,
    /// With `max_connections = "auto"`: how each destination's cap is
    /// learned (a `[policy.adaptive]` table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveSettings>,
    /// Outlier detection across the policy's destinations (a
    /// `[policy.outlier]` table); none: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierSettings>,
}

/// `max_connections`: a number, or `"auto"` (learned per destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Fixed(u32),
    Auto,
}

impl Serialize for Cap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(n) => s.serialize_u32(*n),
            Self::Auto => s.serialize_str(values::AUTO),
        }
    }
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match values::MaxConnections::deserialize(d)? {
            values::MaxConnections::Word(w) if w == values::AUTO => Ok(Self::Auto),
            values::MaxConnections::Number(n) => u32::try_from(n)
                .map(Self::Fixed)
                .map_err(|_| D::Error::custom(format!("max_connections: {n} is not a u32"))),
            values::MaxConnections::Word(w) => Err(D::Error::custom(format!(
                "max_connections: `{w}` is neither a number nor \"auto\""
            ))),
        }
    }
}

/// An adaptive policy's settings (`[policy.adaptive]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveSettings {
    /// `gradient2`, `vegas` or `aimd`.
    pub algorithm: String,
    pub min: u32,
    pub max: u32,
    pub initial: u32,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub smoothing: f64,
    pub tolerance: f64,
    /// `handshake`, `response` or `lifetime`.
    pub signal: String,
}

impl From<&AdaptiveSpec> for AdaptiveSettings {
    fn from(a: &AdaptiveSpec) -> Self {
        let s = &a.settings;
        Self {
            algorithm: values::name_of(&values::ALGORITHMS, &s.algorithm).to_owned(),
            min: s.min,
            max: s.max,
            initial: s.initial,
            interval: a.interval,
            smoothing: s.smoothing,
            tolerance: s.tolerance,
            signal: values::name_of(&values::SIGNALS, &a.signal).to_owned(),
        }
    }
}

/// A policy's outlier detection (`[policy.outlier]`), every setting written
/// out; the failure percentage and latency detectors are left out when off.
/// Ejections are capped by the policy's `max_open_percent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutlierSettings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub success_rate_stdev: f64,
    pub success_rate_min_hosts: u32,
    pub success_rate_min_requests: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage: Option<u32>,
    pub failure_percentage_min_hosts: u32,
    pub failure_percentage_min_requests: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_factor: Option<f64>,
    pub latency_min_requests: u64,
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
}

impl From<&outlier::Settings> for OutlierSettings {
    fn from(s: &outlier::Settings) -> Self {
        Self {
            interval: s.interval,
            success_rate_stdev: s.success_rate_stdev,
            success_rate_min_hosts: s.success_rate_min_hosts,
            success_rate_min_requests: s.success_rate_min_requests,
            failure_percentage: s.failure_percentage,
            failure_percentage_min_hosts: s.failure_percentage_min_hosts,
            failure_percentage_min_requests: s.failure_percentage_min_requests,
            latency_factor: s.latency_factor,
            latency_min_requests: s.latency_min_requests,
            base_ejection: s.base_ejection,
            max_ejection: s.max_ejection,
        }
    }
}

impl From<&PolicySpec> for PolicySettings {
    fn from(p: &PolicySpec) -> Self {
        Self {
            name: p.name.clone(),
            rules: p.rules.iter().map(ToString::to_string).collect(),
            cgroup: p.cgroup.as_ref().map(|c| c.display().to_string()),
            workloads: p.workloads.iter().map(ToString::to_string).collect(),
            mode: p.mode,
            failure_threshold: p.failure_threshold,
            failure_rate: p.failure_rate,
            min_attempts: p.min_attempts,
            window: p.window,
            slow_connect: p.slow_connect.map(|s| s.map(Dur)),
            baseline_window: p.baseline.map(|b| b.window),
            sensitivity: p.baseline.map(|b| b.sensitivity),
            failure_rate_min: p.baseline.map(|b| b.rate_min),
            failure_rate_max: p.baseline.map(|b| b.rate_max),
            slow_connect_factor: p.baseline.map(|b| b.slow_factor),
            connect_timeout: p.connect_timeout,
            open: p.open,
            open_max: p.open_max,
            backoff: p.backoff,
            jitter: p.jitter,
            rejitter: p.rejitter,
            half_open_probes: p.half_open_probes,
            close_after: p.close_after,
            max_connections: match p.adaptive {
                Some(_) => Some(Cap::Auto),
                None => p.max_connections.map(Cap::Fixed),
            },
            max_pending: p.max_pending,
            errno: p.errno.to_string(),
            max_open_percent: p.max_open_percent,
            trip_decay: p.trip_decay,
            heal: p.heal,
            heal_interval: p.heal_interval,
            adaptive: p.adaptive.as_ref().map(AdaptiveSettings::from),
            outlier: p.outlier.as_ref().map(OutlierSettings::from),
        }
    }
}

/// A running policy: its settings and its shared counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    #[serde(flatten)]
    pub settings: PolicySettings,
    /// The kernel's id for it (stays with the name across changes).
    pub id: u32,
    pub tracked: u64,
    pub open_destinations: u64,
    pub guard_refusals: u64,
    /// Each of its workload patterns and its matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<WorkloadMatch>,
}

/// A policy set applied (`PUT`, `DELETE`, `POST /v1/policies`, reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Policies running now.
    pub policies: usize,
}

/// `trip` or `disable` done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideSet {
    pub dest: SocketAddr,
    #[serde(rename = "override")]
    pub kind: OverrideKind,
}

/// `reset` done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetDone {
    pub dest: SocketAddr,
    /// How many destinations (one per namespace) were reset.
    pub destinations: usize,
    /// Their namespaces' inodes (null: unknown).
    pub netns: Vec<Option<u64>>,
    pub override_removed: bool,
    /// The override left in place (it applies in every namespace) when the
    /// reset named one namespace.
    pub override_kept: Option<OverrideKind>,
}

/// `pause` or `resume` done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub paused: bool,
}

/// `uninstall` accepted: the daemon detaches and exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uninstalling {
    pub uninstalling: bool,
}

/// One line of `GET /v1/events`: a kernel transition (`tripped`,
/// `half_open`, `closed`, …) or something the daemon did (`forced_open`,
/// `disabled`, `reset`, `override_expired`, `paused`, `resumed`,
/// `policies_applied`, `heal_probe_ok`, `heal_probe_failed`), or `lagged`
/// when a slow follower missed some. Fields that do not apply are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<SocketAddr>,
    /// The destination's network namespace; none for what applies to the
    /// address in every namespace (overrides).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip_level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_for_ms: Option<u64>,
    /// How long ago the kernel recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `class_shed`, `class_restored`: the priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `outlier`: the ejection and its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection: Option<EjectionView>,
    /// `limit_changed`: an adaptive limit's move and what it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitChange>,
    /// `lagged`: how many events this follower missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// An ejection of an outlier and its evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EjectionView {
    /// `success_rate`, `failure_percentage` or `latency`.
    pub reason: String,
    /// Its ejections, this one included (decaying while healthy).
    pub count: u32,
    /// How long it is open for.
    pub for_ms: u64,
    /// The destination's figure: a success rate or failure percentage in
    /// percent, or its latency in µs (its handshakes' p90, or its mean
    /// response latency where the policy measures it).
    pub figure: f64,
    /// What it was compared with: the threshold (`mean − k·σ` of the peers'
    /// success rates, the failure percentage set, or `factor ×` the peers'
    /// median p90, in µs).
    pub threshold: f64,
    /// The peers' figures behind the threshold: mean and σ of their success
    /// rates (percent), or their median latency (µs, `median_handshake_p90_us`
    /// or `median_response_mean_us`) and the factor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<(String, f64)>,
}

impl EjectionView {
    /// One line for logs and events.
    pub fn summary(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(name, v)| format!("{name} {v:.2}"))
            .collect();
        format!(
            "{} {:.2} past {:.2} ({}); ejection {} for {} ms",
            self.reason,
            self.figure,
            self.threshold,
            peers.join(", "),
            self.count,
            self.for_ms
        )
    }
}

impl From<&crate::outlier::Eject> for EjectionView {
    fn from(e: &crate::outlier::Eject) -> Self {
        use crate::outlier::Reason;
        let (figure, threshold, peers) = match e.reason {
            Reason::SuccessRate {
                rate,
                mean,
                stdev,
                threshold,
            } => (
                rate * 100.0,
                threshold * 100.0,
                vec![
                    ("mean".into(), mean * 100.0),
                    ("stdev".into(), stdev * 100.0),
                ],
            ),
            Reason::FailurePercentage { percent, threshold } => {
                (percent, f64::from(threshold), Vec::new())
            }
            Reason::Latency {
                measure,
                latency,
                median,
                factor,
            } => {
                let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
                (
                    us(latency),
                    us(median) * factor,
                    vec![
                        (format!("median_{}_us", measure.name()), us(median)),
                        ("factor".into(), factor),
                    ],
                )
            }
        };
        Self {
            reason: e.reason.name().to_owned(),
            count: e.count,
            for_ms: e.duration.as_millis() as u64,
            figure,
            threshold,
            peers,
        }
    }
}

/// An adaptive limit's move after one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitChange {
    pub previous: u32,
    pub limit: u32,
    /// `grew`, `shrank`, `steady`, `app_limited` or `no_sample`.
    pub reason: String,
    /// The interval's mean latency of the policy's signal, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// The unloaded latency it was compared with, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_us: Option<u64>,
}

impl From<&crate::adaptive::Change> for LimitChange {
    fn from(c: &crate::adaptive::Change) -> Self {
        let us = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
        Self {
            previous: c.previous,
            limit: c.limit,
            reason: c.reason.name().to_owned(),
            latency_us: us(c.sample),
            baseline_us: us(c.baseline),
        }
    }
}

/// A destination's network namespace, as [`Destination`] names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Netns {
    pub netns: Option<u64>,
    pub netns_name: Option<String>,
    pub netns_status: String,
}

/// Every 4xx and 5xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_policy_shows_auto_and_its_adaptive_settings() {
        let config = Config::parse(
            "[[policy]]\nname = \"api\"\nmatch = [\"10.0.1.0/24:8080\"]\nmax_connections = \"auto\"\n[policy.adaptive]\nalgorithm = \"aimd\"\ninterval = \"500ms\"\nsignal = \"lifetime\"\n\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\nmax_connections = 10\n",
            "t",
        )
        .unwrap();
        let [api, db] = &config.policies[..] else {
            panic!()
        };
        let json = serde_json::to_value(PolicySettings::from(api)).unwrap();
        assert_eq!(json["max_connections"], "auto");
        assert_eq!(
            json["adaptive"],
            serde_json::json!({
                "algorithm": "aimd",
                "min": 20,
                "max": 200,
                "initial": 20,
                "interval": "500ms",
                "smoothing": 1.0,
                "tolerance": 1.25,
                "signal": "lifetime",
            })
        );
        let back: PolicySettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, PolicySettings::from(api));
        let json = serde_json::to_value(PolicySettings::from(db)).unwrap();
        assert_eq!(json["max_connections"], 10);
        assert!(json.get("adaptive").is_none());
        let back: PolicySettings = serde_json::from_value(json).unwrap();
        assert_eq!(back.max_connections, Some(Cap::Fixed(10)));
    }

    #[test]
    fn a_policy_shows_its_outlier_settings() {
        let config = Config::parse(
            "[[policy]]\nname = \"cache\"\nmatch = [\"10.0.2.0/24:6379\"]\nmax_open_percent = 33\n[policy.outlier]\nfailure_percentage = 85\nbase_ejection = \"1m\"\n\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\n",
            "t",
        )
        .unwrap();
        let [cache, db] = &config.policies[..] else {
            panic!()
        };
        let json = serde_json::to_value(PolicySettings::from(cache)).unwrap();
        assert_eq!(json["max_open_percent"], 33);
        assert_eq!(
            json["outlier"],
            serde_json::json!({
                "interval": "10s",
                "success_rate_stdev": 1.9,
                "success_rate_min_hosts": 5,
                "success_rate_min_requests": 100,
                "failure_percentage": 85,
                "failure_percentage_min_hosts": 5,
                "failure_percentage_min_requests": 50,
                "latency_min_requests": 20,
                "base_ejection": "1m",
                "max_ejection": "5m",
            })
        );
        let back: PolicySettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, PolicySettings::from(cache));
        let json = serde_json::to_value(PolicySettings::from(db)).unwrap();
        assert!(json.get("outlier").is_none());
    }

    #[test]
    fn a_class_shows_its_settings_and_counts_side_by_side() {
        let config = Config::parse(
            "[[class]]\nname = \"batch\"\npriority = \"sheddable\"\ncgroups = [\"/sys/fs/cgroup/batch.slice\"]\nshare = 0.2\n",
            "t",
        )
        .unwrap();
        let kernel = enforcer_common::class::ClassCounts {
            active: 2,
            _pad: 0,
            admitted: 10,
            shed: 3,
        };
        let view = ClassView {
            settings: (&config.classes[0]).into(),
            declared: true,
            selected: Vec::new(),
            counts: (&kernel).into(),
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "batch",
                "priority": "sheddable",
                "share": 0.2,
                "cgroups": ["/sys/fs/cgroup/batch.slice"],
                "declared": true,
                "active": 2,
                "admitted": 10,
                "shed": 3,
            })
        );
        let back: ClassView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
        // Summed over destinations.
        let mut sum = ClassCounts::default();
        sum.add(&kernel);
        sum.add(&kernel);
        assert_eq!(
            sum,
            ClassCounts {
                active: 4,
                admitted: 20,
                shed: 6
            }
        );
    }

    #[test]
    fn a_destination_has_class_counts_only_with_classes_on() {
        let off = serde_json::json!({
            "dest": "10.0.0.5:5432", "netns": 4026531840u64, "netns_name": null,
            "netns_status": "host", "policy": "db", "state": "closed", "active": 3,
            "pending": 0, "max_connections": 4, "attempts": 9, "successes": 9,
            "slow": 0, "abandoned": 0, "local_errors": 0,
            "failures": {"refused": 0, "timeout": 0, "unreachable": 0},
            "rejections": {"circuit": 0, "bulkhead": 1},
            "would_reject": {"circuit": 0, "bulkhead": 0},
            "probes": 0, "probes_reclaimed": 0, "trips": 0, "trip_level": 0,
            "guard_refusals": 0, "open_for_ms": null, "override": null,
            "override_for_ms": null,
        });
        let mut d: Destination = serde_json::from_value(off.clone()).unwrap();
        assert_eq!(d.classes, None);
        assert_eq!(serde_json::to_value(&d).unwrap(), off, "no `classes` key");
        d.classes = Some(
            [
                (
                    "batch".to_owned(),
                    ClassCounts {
                        active: 1,
                        admitted: 5,
                        shed: 2,
                    },
                ),
                (
                    "checkout".to_owned(),
                    ClassCounts {
                        active: 2,
                        admitted: 4,
                        shed: 0,
                    },
                ),
            ]
            .into(),
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["classes"],
            serde_json::json!({
                "batch": {"active": 1, "admitted": 5, "shed": 2},
                "checkout": {"active": 2, "admitted": 4, "shed": 0},
            })
        );
        let back: Destination = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}

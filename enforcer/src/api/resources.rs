//! What the daemon answers. Field names are the API: scripts read them, so a
//! rename is a breaking change.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::config::{PolicySpec, values::Mode};

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
    pub mode: Mode,
    pub failure_threshold: u32,
    pub failure_rate: f64,
    pub min_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_connect: Option<Duration>,
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
    pub jitter: f64,
    #[serde(with = "humantime_serde")]
    pub rejitter: Duration,
    pub half_open_probes: u32,
    pub close_after: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u32>,
    pub errno: String,
    pub max_open_percent: u32,
    #[serde(with = "humantime_serde")]
    pub trip_decay: Duration,
    pub heal: bool,
    #[serde(with = "humantime_serde")]
    pub heal_interval: Duration,
}

impl From<&PolicySpec> for PolicySettings {
    fn from(p: &PolicySpec) -> Self {
        Self {
            name: p.name.clone(),
            rules: p.rules.iter().map(ToString::to_string).collect(),
            cgroup: p.cgroup.as_ref().map(|c| c.display().to_string()),
            mode: p.mode,
            failure_threshold: p.failure_threshold,
            failure_rate: p.failure_rate,
            min_attempts: p.min_attempts,
            window: p.window,
            slow_connect: p.slow_connect,
            connect_timeout: p.connect_timeout,
            open: p.open,
            open_max: p.open_max,
            jitter: p.jitter,
            rejitter: p.rejitter,
            half_open_probes: p.half_open_probes,
            close_after: p.close_after,
            max_connections: p.max_connections,
            max_pending: p.max_pending,
            errno: p.errno.to_string(),
            max_open_percent: p.max_open_percent,
            trip_decay: p.trip_decay,
            heal: p.heal,
            heal_interval: p.heal_interval,
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
    /// `limit_changed`: an adaptive limit's move and what it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitChange>,
    /// `lagged`: how many events this follower missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
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

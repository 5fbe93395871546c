//! A policy as the daemon runs it: settings resolved, validated, and turned into
//! what the kernel reads.

use std::{path::PathBuf, time::Duration};

use enforcer_common::policy::{BACKOFF_STEPS, BackoffRow, Policy, Signal};

use super::{
    Invalid,
    knobs::{Knobs, Setting},
    values::{Dur, Errno, Mode},
};
use crate::rule::Rule;

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub rules: Vec<Rule>,
    /// Only processes in this cgroup (or below) are subject to the policy.
    pub cgroup: Option<PathBuf>,
    pub mode: Mode,
    pub failure_threshold: u32,
    pub failure_rate: f64,
    pub min_attempts: u32,
    pub window: Duration,
    pub slow_connect: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub open: Duration,
    pub open_max: Duration,
    pub jitter: f64,
    pub rejitter: Duration,
    pub half_open_probes: u32,
    pub close_after: u32,
    pub max_connections: Option<u32>,
    pub max_pending: Option<u32>,
    pub errno: Errno,
    pub max_open_percent: u32,
    pub trip_decay: Duration,
    pub heal: bool,
    pub heal_interval: Duration,
    /// `max_connections = "auto"`: each destination's cap is learned.
    pub adaptive: Option<AdaptiveSpec>,
}

/// How an adaptive policy learns each destination's cap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveSpec {
    pub settings: crate::adaptive::Settings,
    /// How often each destination's limit is recomputed.
    pub interval: Duration,
    /// What the kernel measures for it.
    pub signal: Signal,
}

/// How long a half-open probe may stay unanswered when the policy sets no
/// connect timeout (the kernel's own SYN retries take about two minutes).
pub const PROBE_BOUND: Duration = Duration::from_secs(10);

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const H: Duration = Duration::from_secs(3600);

/// Checks one setting; the error names the policy, the field and the line.
struct Checker<'a> {
    policy: &'a str,
}

impl Checker<'_> {
    fn fail<T>(&self, field: &str, line: Option<usize>, message: String) -> Result<T, Invalid> {
        Err(Invalid {
            field: format!("policy \"{}\": {field}", self.policy),
            line,
            message,
        })
    }

    fn required<T: Clone>(
        &self,
        field: &str,
        s: &Option<Setting<T>>,
    ) -> Result<Setting<T>, Invalid> {
        match s {
            Some(s) => Ok(s.clone()),
            None => self.fail(field, None, "must be set".into()),
        }
    }

    fn int(
        &self,
        field: &str,
        s: &Option<Setting<u32>>,
        min: u32,
        max: u32,
    ) -> Result<Option<u32>, Invalid> {
        let Some(s) = s else { return Ok(None) };
        if !(min..=max).contains(&s.value) {
            return self.fail(
                field,
                s.line,
                format!("must be {min}..={max}, got {}", s.value),
            );
        }
        Ok(Some(s.value))
    }

    fn dur(
        &self,
        field: &str,
        s: &Option<Setting<Dur>>,
        min: Duration,
        max: Duration,
    ) -> Result<Option<Duration>, Invalid> {
        let Some(s) = s else { return Ok(None) };
        if s.value.0 < min || s.value.0 > max {
            return self.fail(
                field,
                s.line,
                format!("must be {}..={}, got {}", Dur(min), Dur(max), s.value),
            );
        }
        Ok(Some(s.value.0))
    }

    fn share(
        &self,
        field: &str,
        s: &Option<Setting<f64>>,
        min_excl: bool,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, Invalid> {
        let Some(s) = s else { return Ok(None) };
        let v = s.value;
        let low_ok = if min_excl { v > min } else { v >= min };
        if !v.is_finite() || !low_ok || v > max {
            let open = if min_excl { "(" } else { "[" };
            return self.fail(
                field,
                s.line,
                format!("must be in {open}{min}, {max}], got {v}"),
            );
        }
        Ok(Some(v))
    }
}

impl PolicySpec {
    /// Validates resolved settings into a policy.
    pub fn resolve(
        name: &str,
        rules: Vec<Rule>,
        cgroup: Option<PathBuf>,
        k: &Knobs,
    ) -> Result<Self, Invalid> {
        let c = Checker { policy: name };
        // Settings the embedded defaults always provide.
        let need =
            |f: &str, v: Option<u32>| v.map_or_else(|| c.fail(f, None, "must be set".into()), Ok);
        let need_d = |f: &str, v: Option<Duration>| {
            v.map_or_else(|| c.fail(f, None, "must be set".into()), Ok)
        };
        let need_f =
            |f: &str, v: Option<f64>| v.map_or_else(|| c.fail(f, None, "must be set".into()), Ok);
        let open = need_d("open", c.dur("open", &k.open, 100 * MS, H)?)?;
        let open_max = need_d(
            "open_max",
            c.dur("open_max", &k.open_max, 100 * MS, 24 * H)?,
        )?;
        if open_max < open {
            let line = k.open_max.as_ref().and_then(|s| s.line);
            return c.fail(
                "open_max",
                line,
                format!("must be at least open ({})", Dur(open)),
            );
        }
        Ok(Self {
            name: name.to_owned(),
            rules,
            cgroup,
            mode: c.required("mode", &k.mode)?.value,
            failure_threshold: need(
                "failure_threshold",
                c.int("failure_threshold", &k.failure_threshold, 1, 1_000_000)?,
            )?,
            failure_rate: need_f(
                "failure_rate",
                c.share("failure_rate", &k.failure_rate, true, 0.0, 1.0)?,
            )?,
            min_attempts: need(
                "min_attempts",
                c.int("min_attempts", &k.min_attempts, 1, 1_000_000)?,
            )?,
            window: need_d("window", c.dur("window", &k.window, S, H)?)?,
            slow_connect: c.dur("slow_connect", &k.slow_connect, MS, MIN)?,
            connect_timeout: c.dur("connect_timeout", &k.connect_timeout, 100 * MS, 10 * MIN)?,
            open,
            open_max,
            jitter: need_f("jitter", c.share("jitter", &k.jitter, false, 0.0, 0.5)?)?,
            rejitter: need_d("rejitter", c.dur("rejitter", &k.rejitter, S, H)?)?,
            half_open_probes: need(
                "half_open_probes",
                c.int("half_open_probes", &k.half_open_probes, 1, 10_000)?,
            )?,
            close_after: need(
                "close_after",
                c.int("close_after", &k.close_after, 1, 10_000)?,
            )?,
            max_connections: c.int("max_connections", &k.max_connections, 1, 1 << 30)?,
            max_pending: c.int("max_pending", &k.max_pending, 1, 1 << 30)?,
            errno: c.required("errno", &k.errno)?.value,
            max_open_percent: need(
                "max_open_percent",
                c.int("max_open_percent", &k.max_open_percent, 1, 100)?,
            )?,
            trip_decay: need_d("trip_decay", c.dur("trip_decay", &k.trip_decay, S, 24 * H)?)?,
            heal: c.required("heal", &k.heal)?.value,
            heal_interval: need_d(
                "heal_interval",
                c.dur("heal_interval", &k.heal_interval, 100 * MS, 10 * MIN)?,
            )?,
            adaptive: None,
        })
    }

    /// What the kernel reads. `scope` is the (id, level) of the policy's cgroup.
    pub fn kernel(&self, scope: Option<(u64, u32)>) -> Policy {
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        let (cgroup_id, cgroup_level) = scope.unwrap_or((0, 0));
        Policy {
            mode: self.mode.kernel() as u32,
            failure_threshold: self.failure_threshold,
            failure_rate_permille: (self.failure_rate * 1000.0).round().clamp(1.0, 1000.0) as u32,
            min_attempts: self.min_attempts,
            window_ns: ns(self.window),
            slow_connect_ns: self.slow_connect.map_or(0, ns),
            connect_timeout_ms: self.connect_timeout.map_or(0, |d| d.as_millis() as u32),
            half_open_probes: self.half_open_probes,
            close_after: self.close_after,
            // An adaptive policy's destinations start at the initial limit.
            max_connections: self
                .adaptive
                .map_or(self.max_connections, |a| Some(a.settings.initial))
                .unwrap_or(0),
            max_pending: self.max_pending.unwrap_or(0),
            errno: self.errno.0,
            max_open_percent: self.max_open_percent,
            backoff_steps: BACKOFF_STEPS as u32,
            trip_decay_ns: ns(self.trip_decay),
            cgroup_id,
            cgroup_level,
            epoch: self.epoch(),
            probe_timeout_ns: ns(self.connect_timeout.unwrap_or(PROBE_BOUND)),
            adaptive: u32::from(self.adaptive.is_some()),
            signal: self.adaptive.map_or(Signal::Handshake, |a| a.signal) as u32,
        }
    }

    /// The policy's epoch in the kernel: the same for the same name in every
    /// daemon and version (a CRC, not a seeded hash), never 0 (a destination
    /// that never joined a policy).
    pub fn epoch(&self) -> u32 {
        crc32fast::hash(self.name.as_bytes()).max(1)
    }

    /// Open durations `open · 2^k` capped at `open_max`, each scaled by
    /// `1 + jitter · u` with `u` uniform in [-1, 1] drawn from `unit`.
    pub fn backoff(&self, mut unit: impl FnMut() -> f64) -> BackoffRow {
        let mut row = BackoffRow::default();
        for (k, step) in row.steps_ns.iter_mut().enumerate() {
            let base = self.open.as_secs_f64() * 2f64.powi(k as i32);
            let capped = base.min(self.open_max.as_secs_f64());
            let jittered = capped * (1.0 + self.jitter * (2.0 * unit() - 1.0));
            *step = (jittered.max(0.001) * 1e9) as u64;
        }
        row
    }
}

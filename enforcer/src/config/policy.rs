//! A policy as the daemon runs it: settings resolved, validated, and turned into
//! what the kernel reads.

use std::{fmt, path::PathBuf, time::Duration};

use enforcer_common::{
    baseline::learn,
    policy::{BACKOFF_STEPS, BackoffRow, Policy, Signal},
};

use super::{
    Invalid,
    knobs::{AdaptiveKnobs, Knobs, OutlierKnobs, Setting},
    values::{ALGORITHMS, AUTO, Backoff, Dur, Errno, Learnable, MaxConnections, Mode, SIGNALS},
};
use crate::{adaptive::Settings, baseline, outlier, rule::Rule, workload::Pattern};

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub rules: Vec<Rule>,
    /// Only processes in this cgroup (or below) are subject to the policy.
    pub cgroup: Option<PathBuf>,
    /// Only processes in (or below) a cgroup one of these patterns matches
    /// are (none: no such scope; never with `cgroup`).
    pub workloads: Vec<Pattern>,
    pub mode: Mode,
    pub failure_threshold: u32,
    /// A share, or learned per destination (the bounds in `baseline`).
    pub failure_rate: Learnable<f64>,
    pub min_attempts: u32,
    pub window: Duration,
    pub slow_connect: Option<Learnable<Duration>>,
    pub connect_timeout: Option<Duration>,
    pub open: Duration,
    pub open_max: Duration,
    pub backoff: Backoff,
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
    /// A `[policy.outlier]` table: outliers among the policy's destinations
    /// are ejected (forced open), at most `max_open_percent` of them at once.
    pub outlier: Option<crate::outlier::Settings>,
    /// `failure_rate` or `slow_connect` is `"auto"`: how each destination's
    /// normal is learned.
    pub baseline: Option<crate::baseline::Settings>,
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

/// A share in (0, 1] as the kernel's ‰ (at least 1: 0 turns a trigger off).
fn permille(share: f64) -> u32 {
    (share * 1000.0).round().clamp(1.0, 1000.0) as u32
}

fn secs_to_ns(secs: f64) -> u64 {
    (secs.max(0.001) * 1e9) as u64
}

/// How long a half-open probe may stay unanswered when the policy sets no
/// connect timeout (the kernel's own SYN retries take about two minutes).
pub const PROBE_BOUND: Duration = Duration::from_secs(10);

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const H: Duration = Duration::from_secs(3600);

/// An adaptive policy's interval when no layer sets one; the other settings
/// then come from [`Settings::default`] and the signal is the handshake. The
/// embedded `[defaults.adaptive]` says the same (unit-tested).
const INTERVAL: Duration = S;

/// Checks one setting; the error names the policy (or `[defaults]`), the
/// field and the line.
struct Checker {
    /// `policy "NAME": ` or `defaults.`
    prefix: String,
}

impl Checker {
    fn policy(name: &str) -> Self {
        Self {
            prefix: format!("policy \"{name}\": "),
        }
    }

    fn defaults() -> Self {
        Self {
            prefix: "defaults.".to_owned(),
        }
    }

    fn fail<T>(&self, field: &str, line: Option<usize>, message: String) -> Result<T, Invalid> {
        Err(Invalid {
            field: format!("{}{field}", self.prefix),
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

    fn int<T: Copy + PartialOrd + fmt::Display>(
        &self,
        field: &str,
        s: &Option<Setting<T>>,
        min: T,
        max: T,
    ) -> Result<Option<T>, Invalid> {
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

    /// A name among `names`.
    fn choice<T: Copy>(
        &self,
        field: &str,
        s: &Option<Setting<String>>,
        names: &[(&str, T)],
    ) -> Result<Option<T>, Invalid> {
        let Some(s) = s else { return Ok(None) };
        match names.iter().find(|(n, _)| *n == s.value) {
            Some((_, v)) => Ok(Some(*v)),
            None => {
                let names: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                self.fail(
                    field,
                    s.line,
                    format!("`{}` is not one of {}", s.value, names.join(", ")),
                )
            }
        }
    }

    /// `low <= high` for two settings; the error is on the one written
    /// last (the more specific layer), as the other was there before it.
    fn ordered<T, V: PartialOrd + fmt::Display>(
        &self,
        (low_field, low): (&str, &Option<Setting<T>>),
        (high_field, high): (&str, &Option<Setting<T>>),
        (low_value, high_value): (V, V),
    ) -> Result<(), Invalid> {
        if low_value <= high_value {
            return Ok(());
        }
        let line = |s: &Option<Setting<T>>| s.as_ref().and_then(|s| s.line);
        if line(low) > line(high) {
            self.fail(
                low_field,
                line(low),
                format!("must be at most {high_field} ({high_value}), got {low_value}"),
            )
        } else {
            self.fail(
                high_field,
                line(high),
                format!("must be at least {low_field} ({low_value}), got {high_value}"),
            )
        }
    }

    /// A setting that is `"auto"` or a value `check` validates (as written,
    /// with its line).
    fn learnable<T: Clone, V>(
        &self,
        s: &Option<Setting<Learnable<T>>>,
        check: impl FnOnce(&Option<Setting<T>>) -> Result<Option<V>, Invalid>,
    ) -> Result<Option<Learnable<V>>, Invalid> {
        let Some(s) = s else { return Ok(None) };
        match &s.value {
            Learnable::Auto => Ok(Some(Learnable::Auto)),
            Learnable::Fixed(v) => {
                let written = Some(Setting {
                    value: v.clone(),
                    line: s.line,
                });
                Ok(check(&written)?.map(Learnable::Fixed))
            }
        }
    }

    /// `max_connections`: a number within its bounds or `"auto"`.
    fn max_connections(&self, s: &Option<Setting<MaxConnections>>) -> Result<Cap, Invalid> {
        const MAX: i64 = MAX_CONNECTIONS as i64;
        let Some(s) = s else {
            return Ok(Cap::Fixed(None));
        };
        match &s.value {
            MaxConnections::Number(n @ 1..=MAX) => Ok(Cap::Fixed(Some(*n as u32))),
            MaxConnections::Word(w) if w == AUTO => Ok(Cap::Auto),
            MaxConnections::Number(n) => self.fail(
                "max_connections",
                s.line,
                format!("must be 1..={MAX} or \"{AUTO}\", got {n}"),
            ),
            MaxConnections::Word(w) => self.fail(
                "max_connections",
                s.line,
                format!("must be 1..={MAX} or \"{AUTO}\", got \"{w}\""),
            ),
        }
    }

    /// Each adaptive setting on its own, with what no layer sets taken from
    /// the defaults.
    fn adaptive_fields(&self, k: &AdaptiveKnobs) -> Result<AdaptiveSpec, Invalid> {
        let d = Settings::default();
        let limit = |f: &str, s: &Option<Setting<u32>>| self.int(f, s, 1, MAX_CONNECTIONS);
        let algorithm = self
            .choice("adaptive.algorithm", &k.algorithm, &ALGORITHMS)?
            .unwrap_or(d.algorithm);
        Ok(AdaptiveSpec {
            settings: Settings {
                algorithm,
                min: limit("adaptive.min", &k.min)?.unwrap_or(d.min),
                max: limit("adaptive.max", &k.max)?.unwrap_or(d.max),
                initial: limit("adaptive.initial", &k.initial)?.unwrap_or(d.initial),
                smoothing: self
                    .share("adaptive.smoothing", &k.smoothing, true, 0.0, 1.0)?
                    .unwrap_or(algorithm.default_smoothing()),
                tolerance: self
                    .share("adaptive.tolerance", &k.tolerance, false, 1.0, 10.0)?
                    .unwrap_or(d.tolerance),
                baseline_window: d.baseline_window,
            },
            interval: self
                .dur("adaptive.interval", &k.interval, 100 * MS, H)?
                .unwrap_or(INTERVAL),
            signal: self
                .choice("adaptive.signal", &k.signal, &SIGNALS)?
                .unwrap_or(Signal::Handshake),
        })
    }

    /// The adaptive settings of an auto policy: each on its own, then
    /// `min <= initial <= max`.
    fn adaptive(&self, k: &AdaptiveKnobs) -> Result<AdaptiveSpec, Invalid> {
        let spec = self.adaptive_fields(k)?;
        let s = &spec.settings;
        let (min, initial, max) = (
            ("adaptive.min", &k.min),
            ("adaptive.initial", &k.initial),
            ("adaptive.max", &k.max),
        );
        self.ordered(min, max, (s.min, s.max))?;
        self.ordered(min, initial, (s.min, s.initial))?;
        self.ordered(initial, max, (s.initial, s.max))?;
        Ok(spec)
    }

    /// Each outlier setting on its own, with what no layer sets taken from
    /// [`outlier::Settings::default`] (the failure percentage and latency
    /// detectors stay off unless a layer sets them).
    fn outlier_fields(&self, k: &OutlierKnobs) -> Result<outlier::Settings, Invalid> {
        let d = outlier::Settings::default();
        let hosts = |f: &str, s: &Option<Setting<u32>>| self.int(f, s, 1, MAX_HOSTS);
        let requests = |f: &str, s: &Option<Setting<u64>>| self.int(f, s, 1, MAX_REQUESTS);
        Ok(outlier::Settings {
            interval: self
                .dur("outlier.interval", &k.interval, S, H)?
                .unwrap_or(d.interval),
            success_rate_stdev: self
                .share(
                    "outlier.success_rate_stdev",
                    &k.success_rate_stdev,
                    true,
                    0.0,
                    10.0,
                )?
                .unwrap_or(d.success_rate_stdev),
            success_rate_min_hosts: hosts(
                "outlier.success_rate_min_hosts",
                &k.success_rate_min_hosts,
            )?
            .unwrap_or(d.success_rate_min_hosts),
            success_rate_min_requests: requests(
                "outlier.success_rate_min_requests",
                &k.success_rate_min_requests,
            )?
            .unwrap_or(d.success_rate_min_requests),
            failure_percentage: self
                .int("outlier.failure_percentage", &k.failure_percentage, 1, 100)?
                .or(d.failure_percentage),
            failure_percentage_min_hosts: hosts(
                "outlier.failure_percentage_min_hosts",
                &k.failure_percentage_min_hosts,
            )?
            .unwrap_or(d.failure_percentage_min_hosts),
            failure_percentage_min_requests: requests(
                "outlier.failure_percentage_min_requests",
                &k.failure_percentage_min_requests,
            )?
            .unwrap_or(d.failure_percentage_min_requests),
            latency_factor: self
                .share(
                    "outlier.latency_factor",
                    &k.latency_factor,
                    true,
                    1.0,
                    1000.0,
                )?
                .or(d.latency_factor),
            latency_min_requests: requests(
                "outlier.latency_min_requests",
                &k.latency_min_requests,
            )?
            .unwrap_or(d.latency_min_requests),
            base_ejection: self
                .dur("outlier.base_ejection", &k.base_ejection, S, H)?
                .unwrap_or(d.base_ejection),
            max_ejection: self
                .dur("outlier.max_ejection", &k.max_ejection, S, 24 * H)?
                .unwrap_or(d.max_ejection),
        })
    }

    /// How the policy would learn its destinations' normal (the keys always
    /// have values: the embedded defaults set them), every key checked
    /// whether or not anything is learned; `window`: the breaker's, one
    /// learning step.
    fn baseline(&self, k: &Knobs, window: Duration) -> Result<baseline::Settings, Invalid> {
        let need = |f: &str, v: Option<f64>| {
            v.map_or_else(|| self.fail(f, None, "must be set".into()), Ok)
        };
        let memory = self
            .dur("baseline_window", &k.baseline_window, S, 7 * 24 * H)?
            .map_or_else(
                || self.fail("baseline_window", None, "must be set".into()),
                Ok,
            )?;
        if memory < window {
            let line = k.baseline_window.as_ref().and_then(|s| s.line);
            return self.fail(
                "baseline_window",
                line,
                format!(
                    "must be at least window ({}), got {}",
                    Dur(window),
                    Dur(memory)
                ),
            );
        }
        let rate_min = need(
            "failure_rate_min",
            self.share("failure_rate_min", &k.failure_rate_min, true, 0.0, 1.0)?,
        )?;
        let rate_max = need(
            "failure_rate_max",
            self.share("failure_rate_max", &k.failure_rate_max, true, 0.0, 1.0)?,
        )?;
        self.ordered(
            ("failure_rate_min", &k.failure_rate_min),
            ("failure_rate_max", &k.failure_rate_max),
            (rate_min, rate_max),
        )?;
        Ok(baseline::Settings {
            window: memory,
            sensitivity: need(
                "sensitivity",
                self.share("sensitivity", &k.sensitivity, true, 0.0, 100.0)?,
            )?,
            rate_min,
            rate_max,
            slow_factor: need(
                "slow_connect_factor",
                self.share(
                    "slow_connect_factor",
                    &k.slow_connect_factor,
                    true,
                    1.0,
                    1000.0,
                )?,
            )?,
        })
    }

    /// The outlier settings of a policy with an outlier table: each on its
    /// own, then `base_ejection <= max_ejection`.
    fn outlier(&self, k: &OutlierKnobs) -> Result<outlier::Settings, Invalid> {
        let s = self.outlier_fields(k)?;
        self.ordered(
            ("outlier.base_ejection", &k.base_ejection),
            ("outlier.max_ejection", &k.max_ejection),
            (Dur(s.base_ejection), Dur(s.max_ejection)),
        )?;
        Ok(s)
    }
}

/// What `max_connections` asks for.
enum Cap {
    /// This cap, or none.
    Fixed(Option<u32>),
    /// A cap learned for each destination.
    Auto,
}

/// The largest cap (`max_connections`, `max_pending`, the adaptive limits).
const MAX_CONNECTIONS: u32 = 1 << 30;

/// The most destinations an outlier detector may require (`*_min_hosts`).
const MAX_HOSTS: u32 = 10_000;

/// The most connects per destination and interval an outlier detector may
/// require (`*_min_requests`).
const MAX_REQUESTS: u64 = 1_000_000_000;

/// Checks `[defaults.adaptive]` on its own, each setting within its bounds,
/// whether or not a policy uses it (one may be added later). How the
/// settings relate (`min <= initial <= max`) is checked per policy: a policy
/// may set the others.
pub fn check_adaptive_defaults(k: &AdaptiveKnobs) -> Result<(), Invalid> {
    Checker::defaults().adaptive_fields(k).map(drop)
}

/// Checks `[defaults.outlier]` on its own, each setting within its bounds,
/// whether or not a policy has an outlier table. `base_ejection <=
/// max_ejection` is checked per policy: a policy may set either.
pub fn check_outlier_defaults(k: &OutlierKnobs) -> Result<(), Invalid> {
    Checker::defaults().outlier_fields(k).map(drop)
}

impl PolicySpec {
    /// Validates resolved settings into a policy. `outlier`: the policy has
    /// its own outlier table (`k.outlier` then says how it detects them).
    pub fn resolve(
        name: &str,
        rules: Vec<Rule>,
        cgroup: Option<PathBuf>,
        workloads: Vec<Pattern>,
        k: &Knobs,
        outlier: bool,
    ) -> Result<Self, Invalid> {
        let c = Checker::policy(name);
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
        let (max_connections, adaptive) = match c.max_connections(&k.max_connections)? {
            Cap::Fixed(cap) => (cap, None),
            Cap::Auto => (None, Some(c.adaptive(&k.adaptive)?)),
        };
        let outlier = if outlier {
            Some(c.outlier(&k.outlier)?)
        } else {
            None
        };
        let window = need_d("window", c.dur("window", &k.window, S, H)?)?;
        let failure_rate = c
            .learnable(&k.failure_rate, |s| {
                c.share("failure_rate", s, true, 0.0, 1.0)
            })?
            .map_or_else(|| c.fail("failure_rate", None, "must be set".into()), Ok)?;
        let slow_connect = c.learnable(&k.slow_connect, |s| c.dur("slow_connect", s, MS, MIN))?;
        // Checked whether or not anything is learned.
        let baseline = c.baseline(k, window)?;
        let learns = failure_rate == Learnable::Auto || slow_connect == Some(Learnable::Auto);
        let baseline = learns.then_some(baseline);
        Ok(Self {
            name: name.to_owned(),
            rules,
            cgroup,
            workloads,
            mode: c.required("mode", &k.mode)?.value,
            failure_threshold: need(
                "failure_threshold",
                c.int("failure_threshold", &k.failure_threshold, 1, 1_000_000)?,
            )?,
            failure_rate,
            min_attempts: need(
                "min_attempts",
                c.int("min_attempts", &k.min_attempts, 1, 1_000_000)?,
            )?,
            window,
            slow_connect,
            connect_timeout: c.dur("connect_timeout", &k.connect_timeout, 100 * MS, 10 * MIN)?,
            open,
            open_max,
            backoff: c.required("backoff", &k.backoff)?.value,
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
            max_connections,
            max_pending: c.int("max_pending", &k.max_pending, 1, MAX_CONNECTIONS)?,
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
            adaptive,
            outlier,
            baseline,
        })
    }

    /// Whether the policy learns from response latency, which the cgroup's
    /// packet programs measure.
    pub fn measures_responses(&self) -> bool {
        self.adaptive.is_some_and(|a| a.signal == Signal::Response)
    }

    /// What the kernel reads. `scope` is the (id, level) of the policy's cgroup.
    pub fn kernel(&self, scope: Option<(u64, u32)>) -> Policy {
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        let (cgroup_id, cgroup_level) = scope.unwrap_or((0, 0));
        Policy {
            mode: self.mode.kernel() as u32,
            failure_threshold: self.failure_threshold,
            failure_rate_permille: permille(match (self.failure_rate, self.baseline) {
                (Learnable::Fixed(rate), _) => rate,
                // Learned: the highest, also the rate until one is.
                (Learnable::Auto, b) => b.map_or(1.0, |b| b.rate_max),
            }),
            min_attempts: self.min_attempts,
            window_ns: ns(self.window),
            slow_connect_ns: match self.slow_connect {
                Some(Learnable::Fixed(d)) => ns(d),
                _ => 0,
            },
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
            learn: (if self.failure_rate == Learnable::Auto {
                learn::RATE
            } else {
                0
            }) | (if self.slow_connect == Some(Learnable::Auto) {
                learn::SLOW
            } else {
                0
            }),
            sensitivity_milli: self
                .baseline
                .map_or(0, |b| (b.sensitivity * 1000.0).round().max(1.0) as u32),
            rate_min_permille: self.baseline.map_or(0, |b| permille(b.rate_min)),
            slow_factor_milli: self
                .baseline
                .map_or(0, |b| (b.slow_factor * 1000.0).round() as u32),
            jitter_permille: (self.jitter * 1000.0).round() as u32,
            workloads: u32::from(!self.workloads.is_empty()),
        }
    }

    /// The policy's epoch in the kernel: the same for the same name in every
    /// daemon and version (a CRC, not a seeded hash), never 0 (a destination
    /// that never joined a policy).
    pub fn epoch(&self) -> u32 {
        crc32fast::hash(self.name.as_bytes()).max(1)
    }

    /// The open durations of consecutive trips, by the policy's `backoff`,
    /// capped at `open_max`: the growing strategies' steps as they are,
    /// decorrelated's each drawn from `[open, 3 × the previous]` by `unit`
    /// (uniform in [0, 1]). The kernel spreads each destination's period by
    /// the policy's jitter ([`enforcer_common::policy::spread_ns`]).
    pub fn backoff_row(&self, mut unit: impl FnMut() -> f64) -> BackoffRow {
        let (open, cap) = (self.open.as_secs_f64(), self.open_max.as_secs_f64());
        let mut row = BackoffRow::default();
        let (mut previous, mut fib) = (open, (1.0f64, 1.0f64));
        for (k, step) in row.steps_ns.iter_mut().enumerate() {
            let growth = match self.backoff {
                Backoff::Exponential => 2f64.powi(k as i32),
                Backoff::Linear => (k + 1) as f64,
                Backoff::Fibonacci => {
                    let f = fib.0;
                    fib = (fib.1, fib.0 + fib.1);
                    f
                }
                Backoff::Decorrelated => {
                    let high = (3.0 * previous).min(cap).max(open);
                    previous = open + (high - open) * unit();
                    *step = secs_to_ns(previous);
                    continue;
                }
            };
            *step = secs_to_ns((open * growth).min(cap));
        }
        row
    }
}

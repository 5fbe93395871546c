//! Whole configuration files through `Config::parse`, as `enforcer run`,
//! `config check` and a reload read them, and the same text as a policy file
//! (`policy apply`) through `parse_policies`. A file parses or is refused with
//! an error, never a panic, and:
//! - an error that names a line names one of the file's lines;
//! - what parses can be applied as it stands: its policy set passes the check
//!   the API runs on a set, and every policy has a kernel form and a backoff
//!   table (what applying it writes) within the bounds the kernel assumes,
//!   an auto policy's limits keep min <= initial <= max, and an outlier
//!   policy's ejections last from base_ejection to max_ejection;
//! - its classes are what the kernel's per-priority counts can hold: one per
//!   priority, shares adding up to at most 1, cgroups listed once;
//! - workload selectors are absolute patterns that match without a panic, a
//!   policy's only instead of a cgroup, and the kernel's flag says so.
#![no_main]

use std::{collections::HashSet, sync::LazyLock};

use enforcer::config::{ClassSpec, Config, ConfigError, PolicySpec};
use libfuzzer_sys::fuzz_target;

static EMBEDDED: LazyLock<Config> = LazyLock::new(Config::embedded);

fuzz_target!(|data: &[u8]| {
    // The daemon reads files with `read_to_string`: other bytes never get here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.matches('\n').count() + 1;
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            assert!(config.daemon.dests_low_water < config.daemon.dests_high_water);
            check_applicable(&config.policies);
            check_classes(&config.classes);
        }
        Err(e) => check_error(&e, lines),
    }
    match EMBEDDED.parse_policies(text, "fuzz.toml") {
        Ok(specs) => check_applicable(&specs),
        Err(e) => check_error(&e, lines),
    }
});

fn check_error(e: &ConfigError, lines: usize) {
    let message = e.to_string();
    assert!(!message.is_empty());
    if let ConfigError::Invalid { problem, .. } = e
        && let Some(line) = problem.line
    {
        assert!(
            (1..=lines).contains(&line),
            "line {line} of {lines}: {message}"
        );
    }
}

fn check_applicable(specs: &[PolicySpec]) {
    if let Err(e) = EMBEDDED.check_set(specs) {
        panic!("parsed, but the set is refused: {e}");
    }
    for spec in specs {
        assert!(!spec.rules.is_empty(), "{}: no rules", spec.name);
        let kernel = spec.kernel(None);
        assert_eq!(
            kernel.workloads != 0,
            !spec.workloads.is_empty(),
            "{spec:?}"
        );
        assert!(
            spec.cgroup.is_none() || spec.workloads.is_empty(),
            "{spec:?}"
        );
        check_patterns(&spec.workloads);
        assert!(
            (1..=1000).contains(&kernel.failure_rate_permille),
            "{spec:?}"
        );
        assert!(kernel.window_ns > 0 && kernel.trip_decay_ns > 0, "{spec:?}");
        // An auto policy's destinations start within its bounds.
        if let Some(a) = spec.adaptive {
            let s = a.settings;
            assert!(
                1 <= s.min && s.min <= s.initial && s.initial <= s.max,
                "{spec:?}"
            );
            assert_eq!(
                (
                    kernel.adaptive,
                    kernel.max_connections,
                    spec.max_connections
                ),
                (1, s.initial, None),
                "{spec:?}"
            );
        }
        // Learned thresholds stay within their bounds, and only a policy
        // that learns one has its baseline settings.
        match spec.baseline {
            Some(b) => assert!(
                kernel.learn != 0
                    && 1 <= kernel.rate_min_permille
                    && kernel.rate_min_permille <= kernel.failure_rate_permille
                    && kernel.sensitivity_milli > 0
                    && kernel.slow_factor_milli >= 1000
                    && b.window >= spec.window,
                "{spec:?}"
            ),
            None => assert_eq!(kernel.learn, 0, "{spec:?}"),
        }
        // Outlier detection runs at a positive interval, its detectors'
        // thresholds are numbers, and ejections stay within their bounds.
        if let Some(o) = spec.outlier {
            assert!(!o.interval.is_zero(), "{spec:?}");
            assert!(
                o.success_rate_stdev.is_finite() && o.success_rate_stdev > 0.0,
                "{spec:?}"
            );
            assert!(
                o.failure_percentage.is_none_or(|p| (1..=100).contains(&p)),
                "{spec:?}"
            );
            assert!(
                o.latency_factor.is_none_or(|f| f.is_finite() && f > 1.0),
                "{spec:?}"
            );
            assert!(
                o.success_rate_min_hosts >= 1 && o.failure_percentage_min_hosts >= 1,
                "{spec:?}"
            );
            for k in [1, 2, u32::MAX] {
                let t = enforcer::outlier::ejection_time(&o, k);
                assert!(
                    o.base_ejection <= t && t <= o.max_ejection,
                    "{}: ejection {k} of {t:?}",
                    spec.name
                );
            }
        }
        // The extremes of the jitter draw: steps stay positive and grow.
        for unit in [0.0, 0.5, 1.0] {
            let row = spec.backoff_row(|| unit);
            assert!(row.steps_ns[0] > 0, "{spec:?}");
            assert!(
                row.steps_ns.windows(2).all(|w| w[0] <= w[1]),
                "{}: backoff {:?}",
                spec.name,
                row.steps_ns
            );
        }
    }
}

fn check_classes(classes: &[ClassSpec]) {
    let shares: u32 = classes.iter().map(ClassSpec::share_permille).sum();
    assert!(shares <= 1000, "shares of {shares} permille: {classes:?}");
    let mut priorities = HashSet::new();
    let mut cgroups = HashSet::new();
    for class in classes {
        assert!(
            priorities.insert(class.priority as u32),
            "two classes of one priority: {classes:?}"
        );
        assert!((0.0..=1.0).contains(&class.share), "{class:?}");
        check_patterns(&class.workloads);
        for path in &class.cgroups {
            assert!(path.is_absolute(), "{class:?}");
            assert!(cgroups.insert(path), "listed twice: {classes:?}");
        }
    }
}

/// Each pattern is absolute, unique, and matches any path without a panic.
fn check_patterns(patterns: &[enforcer::workload::Pattern]) {
    let mut seen = HashSet::new();
    for p in patterns {
        let text = p.to_string();
        assert!(text.starts_with('/'), "{text}");
        assert!(seen.insert(text.clone()), "listed twice: {text}");
        for path in [
            &[][..],
            &["sys", "fs", "cgroup"][..],
            &["a", "b", "c", "d", "e"][..],
        ] {
            if p.matches(path) {
                assert!(p.may_match_below(path), "{text} matches {path:?}");
            }
        }
    }
}

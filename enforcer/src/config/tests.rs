//! The configuration's parsing and validation; every rejected input names its
//! field (and line).

use std::time::Duration;

use enforcer_common::policy::BackoffRow;

use super::*;

fn err(text: &str) -> String {
    Config::parse(text, "t.toml")
        .expect_err("must be rejected")
        .to_string()
}

/// Each text is rejected with an error that contains its string.
fn rejected_with(cases: &[(&str, &str)]) {
    for (text, want) in cases {
        let got = err(text);
        assert!(got.contains(want), "for:\n{text}\nwant `{want}` in: {got}");
    }
}

#[test]
fn embedded_defaults_are_complete_and_valid() {
    let c = Config::embedded();
    assert_eq!(c.daemon.pin_dir, PathBuf::from("/sys/fs/bpf/enforcer"));
    assert_eq!(c.daemon.metrics, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(c.policies.len(), 1);
    let p = &c.policies[0];
    assert_eq!((p.name.as_str(), p.rules.len()), ("default", 2));
    assert_eq!(p.failure_threshold, 5);
    assert_eq!(p.max_connections, None);
    assert_eq!(p.errno.0, libc::ECONNREFUSED as u32);
}

#[test]
fn a_file_is_laid_over_the_defaults() {
    let c = Config::parse(
        "[defaults]\nfailure_threshold = 3\n\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\nmax_connections = 10\nerrno = \"EHOSTUNREACH\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        c.policies.len(),
        1,
        "a policy list replaces the embedded one"
    );
    let p = &c.policies[0];
    assert_eq!((p.failure_threshold, p.max_connections), (3, Some(10)));
    assert_eq!(p.errno.0, libc::EHOSTUNREACH as u32);
    assert_eq!(
        p.open,
        Duration::from_secs(5),
        "untouched keys keep their default"
    );
}

#[test]
fn flags_win_over_the_file() {
    let over = DaemonOverrides {
        pin_dir: Some("/sys/fs/bpf/other".into()),
        ..Default::default()
    };
    let c = Config::parse_with("[daemon]\npin_dir = \"/sys/fs/bpf/x\"\n", "t", &over).unwrap();
    assert_eq!(c.daemon.pin_dir, PathBuf::from("/sys/fs/bpf/other"));
}

#[test]
fn kernel_log_defaults_to_off_and_the_flag_turns_it_on() {
    assert!(!Config::embedded().daemon.kernel_log);
    let c = Config::parse("[daemon]\nkernel_log = true\n", "t").unwrap();
    assert!(c.daemon.kernel_log);
    let over = DaemonOverrides {
        kernel_log: Some(true),
        ..Default::default()
    };
    let c = Config::parse_with("[daemon]\nkernel_log = false\n", "t", &over).unwrap();
    assert!(c.daemon.kernel_log, "the flag wins");
    let e = Config::parse("[daemon]\nkernel_log = 1\n", "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel_log"), "{e}");
}

#[test]
fn max_healers_defaults_to_256_and_is_bounded() {
    assert_eq!(Config::embedded().daemon.max_healers, 256);
    let c = Config::parse("[daemon]\nmax_healers = 3\n", "t").unwrap();
    assert_eq!(c.daemon.max_healers, 3);
    let over = DaemonOverrides {
        max_healers: Some(7),
        ..Default::default()
    };
    let c = Config::parse_with("[daemon]\nmax_healers = 3\n", "t", &over).unwrap();
    assert_eq!(c.daemon.max_healers, 7, "the flag wins");
    let over = DaemonOverrides {
        max_healers: Some(0),
        ..Default::default()
    };
    let e = Config::parse_with("", "t", &over).unwrap_err().to_string();
    assert!(
        e.contains("daemon.max_healers: must be 1..=65536, got 0"),
        "{e}"
    );
}

#[test]
fn bad_inputs_name_the_field_and_line() {
    let policy =
        |extra: &str| format!("[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\"]\n{extra}\n");
    let cases: Vec<(String, &str)> = vec![
        ("[daemon]\nbogus = 1\n".into(), "bogus"),
        (
            "[defaults]\nfailure_threshold = 0\n".into(),
            "failure_threshold: must be 1",
        ),
        ("[defaults]\nfailure_threshold = -1\n".into(), "line 2"),
        (
            policy("failure_rate = 1.5"),
            "line 4: policy \"p\": failure_rate",
        ),
        (
            policy("failure_rate = 0.0"),
            "failure_rate: must be in (0, 1]",
        ),
        (
            policy("window = \"2h\""),
            "line 4: policy \"p\": window: must be 1s..=1h",
        ),
        (
            policy("failure_rate = \"sometimes\""),
            "`sometimes` is neither a share like 0.5 nor \"auto\"",
        ),
        (
            policy("slow_connect = \"later\""),
            "`later` is neither a duration like 1s",
        ),
        (
            policy("failure_rate = \"auto\"\nfailure_rate_min = 0.4\nfailure_rate_max = 0.3"),
            "line 6: policy \"p\": failure_rate_max: must be at least failure_rate_min (0.4), got 0.3",
        ),
        (
            policy("baseline_window = \"10s\""),
            "line 4: policy \"p\": baseline_window: must be at least window (30s), got 10s",
        ),
        (
            policy("sensitivity = 0"),
            "line 4: policy \"p\": sensitivity: must be in (0, 100]",
        ),
        (
            policy("slow_connect_factor = 1"),
            "line 4: policy \"p\": slow_connect_factor: must be in (1, 1000]",
        ),
        (policy("open = \"soon\""), "line 4"),
        (policy("max_connections = 0"), "max_connections: must be 1"),
        (policy("max_pending = 0"), "max_pending"),
        (policy("errno = \"EWHATEVER\""), "unknown errno"),
        (policy("mode = \"loud\""), "line 4"),
        (
            policy("open = \"10s\"\nopen_max = \"5s\""),
            "line 5: policy \"p\": open_max: must be at least open",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.1/8:80\"]\n".into(),
            "line 3: policy \"p\": match: `10.0.0.1/8:80`: host bits",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:70000\"]\n".into(),
            "port must be 1..=65535",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"300.0.0.0/8:80\"]\n".into(),
            "not an IP address",
        ),
        (
            format!(
                "{}{}",
                policy(""),
                "[[policy]]\nname = \"q\"\nmatch = [\"10.0.0.0/8:80\"]\n"
            ),
            "line 7: policy \"q\": match: 10.0.0.0/8:80 overlaps",
        ),
        (
            format!(
                "{}{}",
                policy(""),
                "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:81\"]\n"
            ),
            "line 6: policy.name: `p` is used twice",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = []\n".into(),
            "needs at least one",
        ),
        // Two spellings of one rule, in one policy or in two.
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.0/8:80\",\n  \"[::ffff:10.0.0.0/104]:80\"]\n".into(),
            "line 4: policy \"p\": match: `[::ffff:10.0.0.0/104]:80` is 10.0.0.0/8:80, which overlaps",
        ),
        (
            format!(
                "{}{}",
                policy(""),
                "[[policy]]\nname = \"q\"\nmatch = [\"[::ffff:10.0.0.0/104]:80\"]\n"
            ),
            "line 7: policy \"q\": match: `[::ffff:10.0.0.0/104]:80` is 10.0.0.0/8:80, which overlaps",
        ),
        (
            "[[policy]]\nname = \"p\"\nmatch = [\"[::ffff:10.0.0.0/88]:80\"]\n".into(),
            "line 3: policy \"p\": match: `[::ffff:10.0.0.0/88]:80`: an IPv4-mapped prefix (::ffff:a.b.c.d) must be /96 or longer",
        ),
        (
            "[daemon]\nrules_capacity = 0\n".into(),
            "line 2: daemon.rules_capacity: must be 1..=1048576",
        ),
        (
            "[daemon]\npin_dir = \"/tmp/pins\"\n".into(),
            "line 2: daemon.pin_dir: /tmp/pins is not a directory below the pin root",
        ),
        (
            "[daemon]\npin_dir = \"/sys/fs/bpf/../x\"\n".into(),
            "daemon.pin_dir",
        ),
        (
            "[daemon]\ndests_capacity = 0\n".into(),
            "daemon.dests_capacity",
        ),
        (
            "[daemon]\nmetrics = \"localhost\"\n".into(),
            "daemon.metrics",
        ),
        (
            "[daemon]\ngc_idle = \"1s\"\n".into(),
            "line 2: daemon.gc_idle: must be 10s..=1day, got 1s",
        ),
        (
            "[daemon]\nmax_healers = 0\n".into(),
            "line 2: daemon.max_healers: must be 1..=65536",
        ),
        (
            "[daemon]\nmax_healers = 100000\n".into(),
            "daemon.max_healers",
        ),
        ("nonsense".into(), "line 1"),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.contains(want), "for:\n{text}\nwant `{want}` in: {got}");
        assert!(got.starts_with("t.toml: "), "origin missing: {got}");
    }
}

#[test]
fn too_many_policies_or_rules_are_rejected() {
    let mut text = String::new();
    for i in 0..MAX_POLICIES {
        text += &format!(
            "[[policy]]\nname = \"p{i}\"\nmatch = [\"10.0.{}.{}:80\"]\n",
            i / 256,
            i % 256
        );
    }
    assert!(err(&text).contains("at most 255 policies"));
    let rules = |n: u32| {
        let matches: Vec<String> = (0..n).map(|i| format!("\"10.1.0.{i}:80\"")).collect();
        format!(
            "[daemon]\nrules_capacity = 3\n[[policy]]\nname = \"p\"\nmatch = [{}]\n",
            matches.join(", ")
        )
    };
    assert_eq!(
        Config::parse(&rules(3), "t").unwrap().policies[0]
            .rules
            .len(),
        3
    );
    let got = err(&rules(4));
    assert!(
        got.contains("policy.match: at most 3 rules (daemon.rules_capacity), got 4"),
        "{got}"
    );
    let c = Config::parse(&rules(2), "t").unwrap();
    let [p] = &c.policies[..] else { panic!() };
    let q = PolicySpec {
        name: "q".into(),
        rules: vec![
            "10.2.0.0/16:80".parse().unwrap(),
            "10.3.0.0/16:80".parse().unwrap(),
        ],
        ..p.clone()
    };
    let got = c.check_set(&[p.clone(), q]).unwrap_err().to_string();
    assert!(
        got.contains("at most 3 rules (daemon.rules_capacity), got 4"),
        "{got}"
    );
}

#[test]
fn backoff_steps_double_up_to_the_cap_and_the_kernel_spreads_them() {
    let c = Config::parse(
        "[defaults]\nopen = \"1s\"\nopen_max = \"10s\"\njitter = 0.2\n",
        "t",
    )
    .unwrap();
    let p = &c.policies[0];
    let row = p.backoff_row(|| 0.5);
    assert_eq!(
        &row.steps_ns[..5],
        &[
            1_000_000_000,
            2_000_000_000,
            4_000_000_000,
            8_000_000_000,
            10_000_000_000
        ]
    );
    assert_eq!(p.kernel(None).jitter_permille, 200);
}

/// Policy of `backoff` with open 1 s, open_max 60 s, jitter 0.2.
fn backoff_policy(backoff: &str) -> PolicySpec {
    let c = Config::parse(
        &format!(
            "[defaults]\nopen = \"1s\"\nopen_max = \"60s\"\njitter = 0.2\nbackoff = \"{backoff}\"\n"
        ),
        "t",
    )
    .unwrap();
    c.policies[0].clone()
}

fn secs(row: &BackoffRow) -> Vec<f64> {
    row.steps_ns.iter().map(|ns| *ns as f64 / 1e9).collect()
}

#[test]
fn each_backoff_grows_as_it_says_up_to_the_cap() {
    let middle = |b: &str| secs(&backoff_policy(b).backoff_row(|| 0.5));
    assert_eq!(
        middle("exponential")[..7],
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    );
    assert_eq!(middle("linear")[..4], [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(middle("linear")[15], 16.0);
    assert_eq!(
        middle("fibonacci")[..11],
        [1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 60.0]
    );
    // Decorrelated at the middle of each draw: halfway from open to three
    // times the previous step (open itself before the first).
    assert_eq!(middle("decorrelated")[..3], [2.0, 3.5, 5.75]);
    let err = Config::parse("[defaults]\nbackoff = \"random\"\n", "t").unwrap_err();
    assert!(err.to_string().contains("backoff"), "{err}");
}

#[test]
fn backoff_periods_stay_in_bounds_trend_upwards_and_spread_apart() {
    use enforcer_common::policy::spread_ns;
    let mut rng = crate::clock::Jitter::with_seed(7);
    for backoff in ["exponential", "linear", "fibonacci", "decorrelated"] {
        let p = backoff_policy(backoff);
        let jitter = p.kernel(None).jitter_permille;
        // The open periods of 2 000 destinations, each tripping once per
        // level, under tables drawn at as many rejitters; the kernel spreads
        // each period by its clock (here: random bits).
        let periods: Vec<Vec<f64>> = (0..2000)
            .map(|_| {
                let row = p.backoff_row(|| rng.unit());
                row.steps_ns
                    .iter()
                    .map(|step| {
                        let seed = (rng.unit() * u64::MAX as f64) as u64;
                        spread_ns(*step, jitter, seed) as f64 / 1e9
                    })
                    .collect()
            })
            .collect();
        for row in &periods {
            for s in row {
                assert!((0.8..=72.0).contains(s), "{backoff}: {s} out of [0.8, 72]");
            }
        }
        let mean = |k: usize| periods.iter().map(|r| r[k]).sum::<f64>() / periods.len() as f64;
        let means: Vec<f64> = (0..16).map(mean).collect();
        for k in 1..16 {
            assert!(
                means[k] >= means[k - 1] * 0.97,
                "{backoff}: the mean step falls at {k}: {means:?}"
            );
        }
        assert!(
            means[15] > 5.0 * means[0],
            "{backoff}: no growth: {means:?}"
        );
        // Destinations tripped together come back apart: the relative
        // spread of each period, the cap's included.
        for k in 0..16 {
            let m = means[k];
            let sd = (periods.iter().map(|r| (r[k] - m).powi(2)).sum::<f64>()
                / periods.len() as f64)
                .sqrt();
            let spread = sd / m;
            assert!(spread > 0.05, "{backoff}: step {k} spread {spread:.3}");
        }
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let example = include_str!("../../dist/enforcer.toml");
    let c = Config::parse(example, "dist/enforcer.toml").unwrap();
    let names: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["postgres", "partner-api", "default"]);
    assert_eq!(c.policies[0].max_connections, Some(200));
    assert_eq!(
        c.policies[0].connect_timeout,
        Some(Duration::from_secs(3)),
        "from [defaults]"
    );
}

#[test]
fn the_kubernetes_configuration_is_valid_and_observes_every_destination() {
    let file = include_str!("../../dist/kubernetes/base/enforcer.toml");
    let c = Config::parse(file, "dist/kubernetes/base/enforcer.toml").unwrap();
    assert_eq!(
        c.daemon.cgroup,
        std::path::Path::new("/sys/fs/cgroup/kubepods.slice")
    );
    assert_eq!(c.daemon.metrics, "0.0.0.0:9464".parse().unwrap());
    let modes: Vec<super::values::Mode> = c.policies.iter().map(|p| p.mode).collect();
    assert_eq!(
        modes,
        [super::values::Mode::Observe],
        "a first install refuses nothing"
    );
}

#[test]
fn dest_water_marks_default_and_are_validated_by_name() {
    let c = Config::embedded();
    assert_eq!(
        (c.daemon.dests_high_water, c.daemon.dests_low_water),
        (0.9, 0.8)
    );
    let c = Config::parse(
        "[daemon]\ndests_high_water = 0.5\ndests_low_water = 0.25\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        (c.daemon.dests_high_water, c.daemon.dests_low_water),
        (0.5, 0.25)
    );
    let over = DaemonOverrides {
        dests_high_water: Some(1.0),
        dests_low_water: Some(0.95),
        ..Default::default()
    };
    let c = Config::parse_with("[daemon]\ndests_high_water = 0.5\n", "t", &over).unwrap();
    assert_eq!(
        (c.daemon.dests_high_water, c.daemon.dests_low_water),
        (1.0, 0.95),
        "flags win"
    );
    rejected_with(&[
        (
            "[daemon]\ndests_high_water = 1.5\n",
            "line 2: daemon.dests_high_water: must be a share of the capacity in (0, 1], got 1.5",
        ),
        (
            "[daemon]\ndests_high_water = 0.0\n",
            "daemon.dests_high_water",
        ),
        (
            "[daemon]\ndests_low_water = 0.9\n",
            "line 2: daemon.dests_low_water: must be in (0, dests_high_water = 0.9), got 0.9",
        ),
        (
            "[daemon]\ndests_high_water = 0.5\ndests_low_water = 0.6\n",
            "line 3: daemon.dests_low_water",
        ),
        (
            "[daemon]\ndests_low_water = -0.1\n",
            "daemon.dests_low_water",
        ),
        (
            "[daemon]\ndests_low_water = nan\n",
            "daemon.dests_low_water",
        ),
    ]);
}

#[test]
fn privilege_knobs_default_to_namespaces_on_and_host_wide_stats_off() {
    let c = Config::embedded();
    assert!(c.daemon.enter_namespaces);
    assert!(!c.daemon.bpf_run_stats, "host-wide: opt-in");
    let c = Config::parse(
        "[daemon]\nenter_namespaces = false\nbpf_run_stats = true\n",
        "t",
    )
    .unwrap();
    assert!(!c.daemon.enter_namespaces);
    assert!(c.daemon.bpf_run_stats);
    let got = err("[daemon]\nbpf_run_stats = \"yes\"\n");
    assert!(got.contains("bpf_run_stats"), "{got}");
}

#[test]
fn daemon_errors_name_the_key_and_the_line_that_set_it() {
    rejected_with(&[
        // Types and unknown keys: serde's message, the key and the line.
        (
            "[daemon]\n\nkernel_log = 1\n",
            "t.toml: line 3: daemon.kernel_log: invalid type: integer `1`, expected a boolean",
        ),
        (
            "[daemon]\nmax_series = 1\nbogus = 1\n",
            "line 3: daemon.bogus: unknown field `bogus`",
        ),
        (
            "[daemon]\ngc_idle = \"soon\"\n",
            "line 2: daemon.gc_idle: invalid value: string \"soon\"",
        ),
        (
            "[daemon]\nmetrics = \"localhost\"\n",
            "line 2: daemon.metrics: `localhost` is not an address like 127.0.0.1:9464",
        ),
        (
            "[daemon]\npacket_hook = \"ebpf\"\n",
            "line 2: daemon.packet_hook: `ebpf` is not one of auto, xdp, tc",
        ),
        // Bounds, as the table words them.
        (
            "[daemon]\nmax_series = 0\n",
            "line 2: daemon.max_series: must be 1..=100000, got 0",
        ),
        (
            "[daemon]\n\ngc_idle = \"1s\"\n",
            "line 3: daemon.gc_idle: must be 10s..=1day, got 1s",
        ),
        (
            "[daemon]\nflow_syn_timeout = \"1ms\"\n",
            "line 2: daemon.flow_syn_timeout: must be 100ms..=10m, got 1ms",
        ),
        (
            "[daemon]\nflows_capacity = 16777217\n",
            "line 2: daemon.flows_capacity: must be 1..=16777216, got 16777217",
        ),
        (
            "[daemon]\nconns_capacity = 100000\n",
            "line 2: daemon.conns_capacity: must be a power of two up to 16777216, got 100000",
        ),
        (
            "[daemon]\nconns_capacity = 0\n",
            "line 2: daemon.conns_capacity: must be a power of two up to 16777216, got 0",
        ),
        (
            "[daemon]\nstate_dir = \"var/lib\"\n",
            "line 2: daemon.state_dir: var/lib is not an absolute path",
        ),
        (
            "[daemon]\ncgroup = \"system.slice\"\n",
            "line 2: daemon.cgroup: system.slice is not an absolute path",
        ),
        (
            "[daemon]\ninterfaces = [\"eth0\",\n  \"eth0\"]\n",
            "line 2: daemon.interfaces: `eth0` is listed twice",
        ),
        // A cross-key bound names the key it is on, where that key was set.
        (
            "[daemon]\npin_dir = \"/sys/fs/bpf/x\"\npin_root = \"/sys/fs/bpf/x\"\n",
            "line 2: daemon.pin_dir: /sys/fs/bpf/x is not a directory below the pin root",
        ),
    ]);
}

#[test]
fn flags_are_bounded_without_a_line_and_replace_the_file_value() {
    let over = DaemonOverrides {
        metrics: Some("nowhere".into()),
        ..Default::default()
    };
    let got = Config::parse_with("[daemon]\nmetrics = \"127.0.0.1:1\"\n", "t", &over)
        .unwrap_err()
        .to_string();
    assert_eq!(
        got,
        "t: daemon.metrics: `nowhere` is not an address like 127.0.0.1:9464"
    );
    // The value a flag replaces is not bounded; it still has to be of its
    // type, as `config check` reads the file.
    let over = DaemonOverrides {
        max_healers: Some(5),
        ..Default::default()
    };
    let c = Config::parse_with("[daemon]\nmax_healers = 0\n", "t", &over).unwrap();
    assert_eq!(c.daemon.max_healers, 5);
    let got = Config::parse_with("[daemon]\nmax_healers = \"5\"\n", "t", &over)
        .unwrap_err()
        .to_string();
    assert!(
        got.contains("line 2: daemon.max_healers: invalid type"),
        "{got}"
    );
}

/// A file with one policy, `db`, matching 10.0.0.5:5432, with `extra` as its
/// further keys and tables (its first line is line 4).
fn db(extra: &str) -> String {
    format!("[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\n{extra}\n")
}

fn only(text: &str) -> PolicySpec {
    let c = Config::parse(text, "t.toml").unwrap();
    let [p] = &c.policies[..] else {
        panic!("one policy")
    };
    p.clone()
}

#[test]
fn an_auto_policy_learns_with_the_default_settings() {
    use crate::adaptive::Settings;
    use enforcer_common::policy::Signal;

    let p = only(&db("max_connections = \"auto\""));
    assert_eq!(p.max_connections, None, "no fixed cap");
    let a = p.adaptive.expect("adaptive");
    assert_eq!(a.settings, Settings::default());
    assert_eq!(a.interval, Duration::from_secs(1));
    assert_eq!(a.signal, Signal::Handshake);
    // The embedded [defaults.adaptive] says what Settings::default() does.
    let d = &Config::embedded().defaults.adaptive;
    let s = Settings::default();
    assert_eq!(d.min.as_ref().map(|s| s.value), Some(s.min));
    assert_eq!(d.max.as_ref().map(|s| s.value), Some(s.max));
    assert_eq!(d.initial.as_ref().map(|s| s.value), Some(s.initial));
    // Smoothing is left to the algorithm (gradient2's is the default's).
    assert_eq!(d.smoothing, None);
    assert_eq!(s.algorithm.default_smoothing(), s.smoothing);
    assert_eq!(d.tolerance.as_ref().map(|s| s.value), Some(s.tolerance));
    assert_eq!(
        d.algorithm.as_ref().map(|s| s.value.as_str()),
        Some("gradient2")
    );
    assert_eq!(
        d.signal.as_ref().map(|s| s.value.as_str()),
        Some("handshake")
    );
    assert_eq!(
        d.interval.as_ref().map(|s| s.value.0),
        Some(Duration::from_secs(1))
    );
    // Without the embedded defaults, the code's own are the same.
    let mut bare = Config::embedded().defaults;
    bare.adaptive = knobs::AdaptiveKnobs::default();
    let spec = PolicySpec::resolve(
        "x",
        vec![],
        None,
        vec![],
        &knobs::Knobs {
            max_connections: Some(knobs::Setting {
                value: values::MaxConnections::Word("auto".into()),
                line: None,
            }),
            ..bare
        },
        false,
    )
    .unwrap();
    assert_eq!(spec.adaptive, Some(a));
    // No auto, no adaptive.
    assert_eq!(only(&db("max_connections = 10")).adaptive, None);
    assert_eq!(only(&db("")).adaptive, None);
}

#[test]
fn a_full_adaptive_table_is_read() {
    use crate::adaptive::{Algorithm, Settings};
    use enforcer_common::policy::Signal;

    let p = only(&db(
        "max_connections = \"auto\"\n[policy.adaptive]\nalgorithm = \"aimd\"\nmin = 5\nmax = 1000\ninitial = 50\ninterval = \"250ms\"\nsmoothing = 1.0\ntolerance = 2\nsignal = \"lifetime\"",
    ));
    let a = p.adaptive.unwrap();
    assert_eq!(
        a.settings,
        Settings {
            algorithm: Algorithm::Aimd,
            min: 5,
            max: 1000,
            initial: 50,
            smoothing: 1.0,
            tolerance: 2.0,
            baseline_window: Settings::default().baseline_window,
        }
    );
    assert_eq!(a.interval, Duration::from_millis(250));
    assert_eq!(a.signal, Signal::Lifetime);
    // Dotted keys are the same table.
    let dotted = only(&db(
        "max_connections = \"auto\"\nadaptive.algorithm = \"vegas\"\nadaptive.signal = \"response\"",
    ));
    let a = dotted.adaptive.unwrap();
    assert_eq!(
        (a.settings.algorithm, a.signal),
        (Algorithm::Vegas, Signal::Response)
    );
}

#[test]
fn adaptive_defaults_are_laid_over_field_by_field() {
    use crate::adaptive::Algorithm;
    use enforcer_common::policy::Signal;

    let text = "[defaults]\nmax_connections = \"auto\"\n[defaults.adaptive]\nalgorithm = \"vegas\"\nmax = 300\ninterval = \"2s\"\n\n[[policy]]\nname = \"a\"\nmatch = [\"10.0.0.1:80\"]\n[policy.adaptive]\nmax = 400\nsignal = \"response\"\n\n[[policy]]\nname = \"b\"\nmatch = [\"10.0.0.2:80\"]\n\n[[policy]]\nname = \"c\"\nmatch = [\"10.0.0.3:80\"]\nmax_connections = 7\n";
    let c = Config::parse(text, "t").unwrap();
    let [a, b, fixed] = &c.policies[..] else {
        panic!()
    };
    let (a, b) = (a.adaptive.unwrap(), b.adaptive.unwrap());
    // The policy's own, then the file's [defaults.adaptive], then the
    // embedded ones.
    assert_eq!(a.settings.max, 400);
    assert_eq!(a.signal, Signal::Response);
    assert_eq!(a.settings.algorithm, Algorithm::Vegas);
    assert_eq!(a.interval, Duration::from_secs(2));
    assert_eq!((a.settings.min, a.settings.initial), (20, 20));
    // Vegas's own smoothing when none is set.
    assert_eq!(a.settings.smoothing, 1.0);
    assert_eq!(b.settings.max, 300);
    assert_eq!(b.signal, Signal::Handshake);
    assert_eq!(b.settings.algorithm, Algorithm::Vegas);
    // A policy that is not auto ignores [defaults.adaptive].
    assert_eq!((fixed.max_connections, fixed.adaptive), (Some(7), None));
    // And a file whose policies are none of them auto may have one.
    let c = Config::parse(
        "[defaults.adaptive]\nmax = 50\n\n[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.1:80\"]\nmax_connections = 3\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.policies[0].adaptive, None);
    // Policies added later inherit it.
    let added = c
        .parse_policies(
            "[[policy]]\nname = \"q\"\nmatch = [\"10.0.0.2:80\"]\nmax_connections = \"auto\"\n",
            "request",
        )
        .unwrap();
    assert_eq!(added[0].adaptive.unwrap().settings.max, 50);
}

#[test]
fn bad_adaptive_settings_name_the_field_and_line() {
    let auto = |table: &str| {
        db(&format!(
            "max_connections = \"auto\"\n[policy.adaptive]\n{table}"
        ))
    };
    rejected_with(&[
        (
            &db("max_connections = \"many\""),
            "t.toml: line 4: policy \"db\": max_connections: must be 1..=1073741824 or \"auto\", got \"many\"",
        ),
        (
            &db("max_connections = -1"),
            "line 4: policy \"db\": max_connections: must be 1..=1073741824 or \"auto\", got -1",
        ),
        (
            &db("max_connections = 1073741825"),
            "line 4: policy \"db\": max_connections: must be 1..=1073741824",
        ),
        (
            &db("max_connections = 1.5"),
            "expected a number or \"auto\"",
        ),
        (
            &auto("algorithm = \"fast\""),
            "line 6: policy \"db\": adaptive.algorithm: `fast` is not one of gradient2, vegas, aimd",
        ),
        (
            &auto("signal = \"rtt\""),
            "line 6: policy \"db\": adaptive.signal: `rtt` is not one of handshake, response, lifetime",
        ),
        (
            &auto("min = 0"),
            "line 6: policy \"db\": adaptive.min: must be 1..=1073741824, got 0",
        ),
        (
            &auto("max = 1073741825"),
            "line 6: policy \"db\": adaptive.max: must be 1..=1073741824, got 1073741825",
        ),
        (
            &auto("initial = 0"),
            "line 6: policy \"db\": adaptive.initial: must be 1..=1073741824, got 0",
        ),
        (
            &auto("interval = \"10ms\""),
            "line 6: policy \"db\": adaptive.interval: must be 100ms..=1h, got 10ms",
        ),
        (
            &auto("interval = \"2h\""),
            "line 6: policy \"db\": adaptive.interval: must be 100ms..=1h, got 2h",
        ),
        (&auto("interval = \"soon\""), "line 6"),
        (
            &auto("smoothing = 0.0"),
            "line 6: policy \"db\": adaptive.smoothing: must be in (0, 1], got 0",
        ),
        (
            &auto("smoothing = 1.5"),
            "line 6: policy \"db\": adaptive.smoothing: must be in (0, 1], got 1.5",
        ),
        (
            &auto("tolerance = 0.9"),
            "line 6: policy \"db\": adaptive.tolerance: must be in [1, 10], got 0.9",
        ),
        (
            &auto("tolerance = 11"),
            "line 6: policy \"db\": adaptive.tolerance: must be in [1, 10], got 11",
        ),
        (&auto("tolerance = nan"), "adaptive.tolerance"),
        (&auto("min = \"ten\""), "line 6"),
        // The baseline window is not a setting.
        (
            &auto("baseline_window = 60"),
            "unknown field `baseline_window`",
        ),
        // How they relate: the one written last is named.
        (
            &auto("min = 300"),
            "line 6: policy \"db\": adaptive.min: must be at most adaptive.max (200), got 300",
        ),
        (
            &auto("min = 100\nmax = 50\ninitial = 60"),
            "line 7: policy \"db\": adaptive.max: must be at least adaptive.min (100), got 50",
        ),
        (
            &auto("initial = 10"),
            "line 6: policy \"db\": adaptive.initial: must be at least adaptive.min (20), got 10",
        ),
        (
            &auto("initial = 500"),
            "line 6: policy \"db\": adaptive.initial: must be at most adaptive.max (200), got 500",
        ),
        (
            &auto("max = 10\nmin = 5"),
            "line 6: policy \"db\": adaptive.max: must be at least adaptive.initial (20), got 10",
        ),
        // [defaults.adaptive] is checked on its own, auto policy or not.
        (
            "[defaults.adaptive]\nalgorithm = \"aimd\"\nsmoothing = 2.0\n",
            "t.toml: line 3: defaults.adaptive.smoothing: must be in (0, 1], got 2",
        ),
        (
            "[defaults.adaptive]\n\nsignal = \"ttfb\"\n",
            "line 3: defaults.adaptive.signal: `ttfb` is not one of handshake, response, lifetime",
        ),
        // Bounds across layers: the file's default, the policy's setting.
        (
            &format!(
                "[defaults.adaptive]\nmax = 30\n\n{}",
                db("max_connections = \"auto\"\nadaptive.min = 40")
            ),
            "line 8: policy \"db\": adaptive.min: must be at most adaptive.max (30), got 40",
        ),
    ]);
}

#[test]
fn adaptive_settings_without_auto_are_refused() {
    rejected_with(&[
        (
            &db("max_connections = 10\n[policy.adaptive]\nmin = 5"),
            "t.toml: line 5: policy \"db\": adaptive: needs max_connections = \"auto\" (it is 10)",
        ),
        (
            &db("\n[policy.adaptive]\n"),
            "line 5: policy \"db\": adaptive: needs max_connections = \"auto\" (it is unset)",
        ),
        (
            &db("adaptive.algorithm = \"vegas\""),
            "policy \"db\": adaptive: needs max_connections = \"auto\"",
        ),
        // Its own cap wins over an auto [defaults]: then its table is a mistake.
        (
            &format!(
                "[defaults]\nmax_connections = \"auto\"\n\n{}",
                db("max_connections = 3\n[policy.adaptive]\nmax = 50")
            ),
            "line 8: policy \"db\": adaptive: needs max_connections = \"auto\" (it is 3)",
        ),
    ]);
}

#[test]
fn the_kernel_policy_of_an_auto_policy_starts_at_the_initial_limit() {
    use enforcer_common::policy::Signal;

    let p = only(&db(
        "max_connections = \"auto\"\nmax_pending = 9\n[policy.adaptive]\ninitial = 40\nsignal = \"response\"",
    ));
    let k = p.kernel(None);
    assert_eq!(k.adaptive, 1);
    assert_eq!(k.signal, Signal::Response as u32);
    assert_eq!(k.max_connections, 40);
    assert_eq!(k.max_pending, 9);
    assert_eq!(k.cap(0), 40, "until a limit is learned");
    assert_eq!(k.cap(77), 77);
    let fixed = only(&db("max_connections = 10")).kernel(None);
    assert_eq!(
        (fixed.adaptive, fixed.signal, fixed.max_connections),
        (0, Signal::Handshake as u32, 10)
    );
    assert_eq!(fixed.cap(77), 10);
}

#[test]
fn an_outlier_table_turns_detection_on_with_the_defaults() {
    use crate::outlier::Settings;

    // An empty table, and an empty inline one: on, every key the default.
    assert_eq!(
        only(&db("[policy.outlier]")).outlier,
        Some(Settings::default())
    );
    assert_eq!(only(&db("outlier = {}")).outlier, Some(Settings::default()));
    // No table, no detection.
    assert_eq!(only(&db("")).outlier, None);
    assert_eq!(only(&db("max_open_percent = 20")).outlier, None);
    // The embedded [defaults.outlier] says what Settings::default() does.
    let d = &Config::embedded().defaults.outlier;
    let s = Settings::default();
    let v = |x: &Option<knobs::Setting<values::Dur>>| x.as_ref().map(|s| s.value.0);
    assert_eq!(v(&d.interval), Some(s.interval));
    assert_eq!(v(&d.base_ejection), Some(s.base_ejection));
    assert_eq!(v(&d.max_ejection), Some(s.max_ejection));
    assert_eq!(
        d.success_rate_stdev.as_ref().map(|s| s.value),
        Some(s.success_rate_stdev)
    );
    assert_eq!(
        d.success_rate_min_hosts.as_ref().map(|s| s.value),
        Some(s.success_rate_min_hosts)
    );
    assert_eq!(
        d.success_rate_min_requests.as_ref().map(|s| s.value),
        Some(s.success_rate_min_requests)
    );
    assert_eq!(
        d.failure_percentage.as_ref().map(|s| s.value),
        s.failure_percentage
    );
    assert_eq!(
        d.failure_percentage_min_hosts.as_ref().map(|s| s.value),
        Some(s.failure_percentage_min_hosts)
    );
    assert_eq!(
        d.failure_percentage_min_requests.as_ref().map(|s| s.value),
        Some(s.failure_percentage_min_requests)
    );
    assert_eq!(d.latency_factor.as_ref().map(|s| s.value), s.latency_factor);
    assert_eq!(
        d.latency_min_requests.as_ref().map(|s| s.value),
        Some(s.latency_min_requests)
    );
    // Without the embedded defaults, the code's own are the same.
    let mut bare = Config::embedded().defaults;
    bare.outlier = knobs::OutlierKnobs::default();
    let spec = PolicySpec::resolve("x", vec![], None, vec![], &bare, true).unwrap();
    assert_eq!(spec.outlier, Some(s));
    let spec = PolicySpec::resolve("x", vec![], None, vec![], &bare, false).unwrap();
    assert_eq!(spec.outlier, None);
}

#[test]
fn a_full_outlier_table_is_read() {
    use crate::outlier::Settings;

    let full = Settings {
        interval: Duration::from_secs(90),
        success_rate_stdev: 2.5,
        success_rate_min_hosts: 3,
        success_rate_min_requests: 250,
        failure_percentage: Some(90),
        failure_percentage_min_hosts: 4,
        failure_percentage_min_requests: 75,
        latency_factor: Some(2.75),
        latency_min_requests: 33,
        base_ejection: Duration::from_secs(45),
        max_ejection: Duration::from_secs(2 * 3600),
    };
    let keys = "interval = \"1m 30s\"\nsuccess_rate_stdev = 2.5\nsuccess_rate_min_hosts = 3\nsuccess_rate_min_requests = 250\nfailure_percentage = 90\nfailure_percentage_min_hosts = 4\nfailure_percentage_min_requests = 75\nlatency_factor = 2.75\nlatency_min_requests = 33\nbase_ejection = \"45s\"\nmax_ejection = \"2h\"";
    let p = only(&db(&format!("[policy.outlier]\n{keys}")));
    assert_eq!(p.outlier, Some(full));
    // Dotted keys are the same table.
    let dotted: Vec<String> = keys.lines().map(|l| format!("outlier.{l}")).collect();
    assert_eq!(only(&db(&dotted.join("\n"))).outlier, Some(full));
    // Integers are floats where floats are asked for; the bounds are
    // inclusive where they say so.
    let o = only(&db(
        "[policy.outlier]\nsuccess_rate_stdev = 10\nlatency_factor = 1000\nfailure_percentage = 100\nsuccess_rate_min_hosts = 10000\nsuccess_rate_min_requests = 1000000000\ninterval = \"1h\"\nbase_ejection = \"1s\"\nmax_ejection = \"24h\"",
    ))
    .outlier
    .unwrap();
    assert_eq!(
        (o.success_rate_stdev, o.latency_factor, o.failure_percentage),
        (10.0, Some(1000.0), Some(100))
    );
    assert_eq!(
        (o.interval, o.base_ejection, o.max_ejection),
        (
            Duration::from_secs(3600),
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600)
        )
    );
    // base_ejection = max_ejection is allowed.
    let o = only(&db("outlier.base_ejection = \"5m\"")).outlier.unwrap();
    assert_eq!(o.base_ejection, o.max_ejection);
}

#[test]
fn outlier_defaults_are_laid_over_field_by_field() {
    let text = "[defaults]\nmax_open_percent = 40\n[defaults.outlier]\ninterval = \"30s\"\nfailure_percentage = 80\nbase_ejection = \"1m\"\n\n[[policy]]\nname = \"a\"\nmatch = [\"10.0.0.1:80\"]\n[policy.outlier]\nfailure_percentage = 95\nlatency_factor = 2.0\n\n[[policy]]\nname = \"b\"\nmatch = [\"10.0.0.2:80\"]\noutlier.max_ejection = \"10m\"\n\n[[policy]]\nname = \"c\"\nmatch = [\"10.0.0.3:80\"]\n";
    let c = Config::parse(text, "t").unwrap();
    let [a, b, off] = &c.policies[..] else {
        panic!()
    };
    let (a, b) = (a.outlier.unwrap(), b.outlier.unwrap());
    // The policy's own, then the file's [defaults.outlier], then the
    // embedded ones.
    assert_eq!(a.failure_percentage, Some(95));
    assert_eq!(a.latency_factor, Some(2.0));
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.base_ejection, Duration::from_secs(60));
    assert_eq!(a.max_ejection, Duration::from_secs(300));
    assert_eq!((a.success_rate_stdev, a.success_rate_min_hosts), (1.9, 5));
    assert_eq!(b.failure_percentage, Some(80));
    assert_eq!(b.latency_factor, None);
    assert_eq!(b.interval, Duration::from_secs(30));
    assert_eq!(b.base_ejection, Duration::from_secs(60));
    assert_eq!(b.max_ejection, Duration::from_secs(600));
    // The cap is the policy's max_open_percent, not an outlier key.
    assert_eq!(c.policies[0].max_open_percent, 40);
    // [defaults.outlier] turns nothing on.
    assert_eq!(off.outlier, None);
    let c = Config::parse(
        "[defaults.outlier]\nfailure_percentage = 50\n\n[[policy]]\nname = \"p\"\nmatch = [\"10.0.0.1:80\"]\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.policies[0].outlier, None);
    // Policies added later inherit it when they have a table.
    let added = c
        .parse_policies(
            "[[policy]]\nname = \"q\"\nmatch = [\"10.0.0.2:80\"]\n[policy.outlier]\n\n[[policy]]\nname = \"r\"\nmatch = [\"10.0.0.3:80\"]\n",
            "request",
        )
        .unwrap();
    assert_eq!(added[0].outlier.unwrap().failure_percentage, Some(50));
    assert_eq!(added[1].outlier, None);
}

#[test]
fn bad_outlier_settings_name_the_field_and_line() {
    // The table's header is line 4, its first key line 5.
    let table = |keys: &str| db(&format!("[policy.outlier]\n{keys}"));
    let p = "t.toml: line 5: policy \"db\": outlier.";
    let cases: Vec<(String, String)> = [
        (
            "interval = \"500ms\"",
            "interval: must be 1s..=1h, got 500ms",
        ),
        ("interval = \"2h\"", "interval: must be 1s..=1h, got 2h"),
        (
            "success_rate_stdev = 0.0",
            "success_rate_stdev: must be in (0, 10], got 0",
        ),
        (
            "success_rate_stdev = 10.5",
            "success_rate_stdev: must be in (0, 10], got 10.5",
        ),
        (
            "success_rate_stdev = -1",
            "success_rate_stdev: must be in (0, 10], got -1",
        ),
        (
            "success_rate_stdev = nan",
            "success_rate_stdev: must be in (0, 10], got NaN",
        ),
        (
            "success_rate_min_hosts = 0",
            "success_rate_min_hosts: must be 1..=10000, got 0",
        ),
        (
            "success_rate_min_hosts = 10001",
            "success_rate_min_hosts: must be 1..=10000, got 10001",
        ),
        (
            "success_rate_min_requests = 0",
            "success_rate_min_requests: must be 1..=1000000000, got 0",
        ),
        (
            "success_rate_min_requests = 1000000001",
            "success_rate_min_requests: must be 1..=1000000000, got 1000000001",
        ),
        (
            "failure_percentage = 0",
            "failure_percentage: must be 1..=100, got 0",
        ),
        (
            "failure_percentage = 101",
            "failure_percentage: must be 1..=100, got 101",
        ),
        (
            "failure_percentage_min_hosts = 0",
            "failure_percentage_min_hosts: must be 1..=10000, got 0",
        ),
        (
            "failure_percentage_min_hosts = 20000",
            "failure_percentage_min_hosts: must be 1..=10000, got 20000",
        ),
        (
            "failure_percentage_min_requests = 0",
            "failure_percentage_min_requests: must be 1..=1000000000, got 0",
        ),
        (
            "failure_percentage_min_requests = 5000000000",
            "failure_percentage_min_requests: must be 1..=1000000000, got 5000000000",
        ),
        (
            "latency_factor = 1.0",
            "latency_factor: must be in (1, 1000], got 1",
        ),
        (
            "latency_factor = 1001",
            "latency_factor: must be in (1, 1000], got 1001",
        ),
        (
            "latency_factor = inf",
            "latency_factor: must be in (1, 1000], got inf",
        ),
        (
            "latency_min_requests = 0",
            "latency_min_requests: must be 1..=1000000000, got 0",
        ),
        (
            "latency_min_requests = 1000000001",
            "latency_min_requests: must be 1..=1000000000, got 1000000001",
        ),
        (
            "base_ejection = \"999ms\"",
            "base_ejection: must be 1s..=1h, got 999ms",
        ),
        (
            "base_ejection = \"61m\"",
            "base_ejection: must be 1s..=1h, got 1h 1m",
        ),
        (
            "max_ejection = \"25h\"",
            "max_ejection: must be 1s..=1day, got 1day 1h",
        ),
        (
            "max_ejection = \"0s\"",
            "max_ejection: must be 1s..=1day, got 0s",
        ),
        // max_ejection below base_ejection: the one written last is named.
        (
            "max_ejection = \"10s\"",
            "max_ejection: must be at least outlier.base_ejection (30s), got 10s",
        ),
        (
            "base_ejection = \"10m\"",
            "base_ejection: must be at most outlier.max_ejection (5m), got 10m",
        ),
    ]
    .iter()
    .map(|(keys, want)| (table(keys), format!("{p}{want}")))
    .collect();
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(t, w)| (t.as_str(), w.as_str()))
        .collect();
    rejected_with(&cases);
    rejected_with(&[
        (
            &table("base_ejection = \"2m\"\nmax_ejection = \"1m\""),
            "line 6: policy \"db\": outlier.max_ejection: must be at least outlier.base_ejection (2m), got 1m",
        ),
        (
            &table("max_ejection = \"1m\"\nbase_ejection = \"2m\""),
            "line 6: policy \"db\": outlier.base_ejection: must be at most outlier.max_ejection (1m), got 2m",
        ),
        // Dotted keys name their own line.
        (
            &db("mode = \"observe\"\noutlier.failure_percentage = 0"),
            "line 5: policy \"db\": outlier.failure_percentage: must be 1..=100, got 0",
        ),
        // Wrong types and unknown keys are refused with their line.
        (&table("interval = \"soon\""), "line 5"),
        (&table("failure_percentage = \"85\""), "line 5"),
        (&table("success_rate_min_requests = -1"), "line 5"),
        (&table("failure_percentage = 85.5"), "line 5"),
        (&table("enabled = true"), "unknown field `enabled`"),
        (
            &table("max_open_percent = 10"),
            "unknown field `max_open_percent`",
        ),
        (&db("outlier = true"), "line 4"),
        // [defaults.outlier] is checked on its own, outlier tables or not.
        (
            "[defaults.outlier]\nlatency_factor = 0.5\n",
            "t.toml: line 2: defaults.outlier.latency_factor: must be in (1, 1000], got 0.5",
        ),
        (
            "[defaults.outlier]\n\ninterval = \"0s\"\n",
            "line 3: defaults.outlier.interval: must be 1s..=1h, got 0s",
        ),
        // Bounds across layers: the file's default, the policy's setting.
        (
            &format!(
                "[defaults.outlier]\nmax_ejection = \"1m\"\n\n{}",
                db("outlier.base_ejection = \"2m\"")
            ),
            "line 7: policy \"db\": outlier.base_ejection: must be at most outlier.max_ejection (1m), got 2m",
        ),
        (
            &format!(
                "[defaults.outlier]\nbase_ejection = \"20m\"\n\n{}",
                db("[policy.outlier]")
            ),
            "line 2: policy \"db\": outlier.base_ejection: must be at most outlier.max_ejection (5m), got 20m",
        ),
    ]);
}

/// A `[[class]]` table (its first line is the table's header).
fn class(name: &str, priority: &str, rest: &str) -> String {
    format!("[[class]]\nname = \"{name}\"\npriority = \"{priority}\"\n{rest}\n")
}

#[test]
fn classes_are_read_highest_first_as_written() {
    use enforcer_common::class::Priority;

    assert!(Config::embedded().classes.is_empty(), "off by default");
    let text = format!(
        "{}{}{}",
        class(
            "batch",
            "sheddable",
            "cgroups = [\"/sys/fs/cgroup/batch.slice\", \"/sys/fs/cgroup/jobs/\"]"
        ),
        class(
            "checkout",
            "critical",
            "cgroups = [\"/sys/fs/cgroup/system.slice/checkout.service\"]\nshare = 0.5"
        ),
        class("rest", "default", "share = 0.25"),
    );
    let c = Config::parse(&text, "t").unwrap();
    let got: Vec<(&str, Priority, usize, f64, u32)> = c
        .classes
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.priority,
                c.cgroups.len(),
                c.share,
                c.share_permille(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("batch", Priority::Sheddable, 2, 0.0, 0),
            ("checkout", Priority::Critical, 1, 0.5, 500),
            ("rest", Priority::Default, 0, 0.25, 250),
        ]
    );
    assert_eq!(
        c.classes[0].cgroups[1],
        PathBuf::from("/sys/fs/cgroup/jobs")
    );
    // Shares adding up to exactly 1, and an integer share.
    let c = Config::parse(
        &format!(
            "{}{}{}",
            class("a", "critical", "cgroups = [\"/a\"]\nshare = 0.7"),
            class("b", "high", "cgroups = [\"/b\"]\nshare = 0.2"),
            class("c", "default", "share = 0.1"),
        ),
        "t",
    )
    .unwrap();
    assert_eq!(
        c.classes.iter().map(|c| c.share_permille()).sum::<u32>(),
        1000
    );
    let c = Config::parse(
        &class("all", "critical", "cgroups = [\"/a\"]\nshare = 1"),
        "t",
    )
    .unwrap();
    assert_eq!(c.classes[0].share_permille(), 1000);
    // Classes and policies side by side, in any order.
    let c = Config::parse(
        &format!(
            "{}{}",
            class("a", "high", "cgroups = [\"/a\"]"),
            db("max_connections = 4")
        ),
        "t",
    )
    .unwrap();
    assert_eq!((c.classes.len(), c.policies.len()), (1, 1));
}

#[test]
fn bad_classes_name_the_field_and_line() {
    let a = class("a", "critical", "cgroups = [\"/sys/fs/cgroup/a\"]");
    rejected_with(&[
        (
            &class("bad name", "high", "cgroups = [\"/x\"]"),
            "t.toml: line 2: class.name: `bad name`: 1..=64 of A-Z a-z 0-9 - _ .",
        ),
        (
            &class("", "high", "cgroups = [\"/x\"]"),
            "line 2: class.name: ``: 1..=64",
        ),
        (
            &class(&"x".repeat(65), "high", "cgroups = [\"/x\"]"),
            "line 2: class.name",
        ),
        (
            &format!("{a}{}", class("a", "high", "cgroups = [\"/b\"]")),
            "line 6: class.name: `a` is used twice",
        ),
        (
            &class("a", "urgent", "cgroups = [\"/x\"]"),
            "line 3: class \"a\": priority: `urgent` is not one of critical, high, default, sheddable",
        ),
        (
            &format!("{a}{}", class("b", "critical", "cgroups = [\"/b\"]")),
            "line 7: class \"b\": priority: `critical` is already the priority of class \"a\": at most one class per priority",
        ),
        (
            &class("default", "sheddable", "cgroups = [\"/x\"]"),
            "line 2: class.name: `default` names the class of processes in no listed cgroup: it needs priority = \"default\" (this one is sheddable)",
        ),
        (
            &class("a", "high", "cgroups = [\"sys/fs/cgroup/a\"]"),
            "line 4: class \"a\": cgroups: sys/fs/cgroup/a is not an absolute path",
        ),
        (
            &class("a", "high", "cgroups = [\n  \"/x\",\n  \"/x/\",\n]"),
            "line 6: class \"a\": cgroups: /x/ is listed twice (twice in this class)",
        ),
        (
            &format!(
                "{a}{}",
                class("b", "high", "cgroups = [\"/sys/fs/cgroup/a\"]")
            ),
            "line 8: class \"b\": cgroups: /sys/fs/cgroup/a is listed twice (also by class \"a\")",
        ),
        (
            &class("a", "high", ""),
            "line 2: class \"a\": cgroups: needs at least one cgroup directory or workloads pattern (only the default class may list none",
        ),
        (
            &class("a", "high", "\ncgroups = []"),
            "line 5: class \"a\": cgroups: needs at least one cgroup directory",
        ),
        (
            &class("a", "high", "cgroups = [\"/a\"]\nshare = 1.5"),
            "line 5: class \"a\": share: must be in [0, 1], got 1.5",
        ),
        (
            &class("a", "high", "cgroups = [\"/a\"]\nshare = -0.1"),
            "line 5: class \"a\": share: must be in [0, 1], got -0.1",
        ),
        (
            &class("a", "high", "cgroups = [\"/a\"]\nshare = nan"),
            "line 5: class \"a\": share: must be in [0, 1], got NaN",
        ),
        (
            &format!(
                "{}{}",
                class("a", "critical", "cgroups = [\"/a\"]\nshare = 0.6"),
                class("b", "high", "cgroups = [\"/b\"]\nshare = 0.5"),
            ),
            "line 10: class \"b\": share: the shares add up to 1.1, more than 1",
        ),
        // As serde words them: the type, an unknown or a missing key.
        (
            &class("a", "high", "cgroups = [\"/a\"]\nshare = \"half\""),
            "line 5",
        ),
        (&class("a", "high", "cgroups = \"/a\""), "line 4"),
        (
            &class("a", "high", "cgroups = [\"/a\"]\nweight = 2"),
            "unknown field `weight`",
        ),
        (
            "[[class]]\nname = \"a\"\ncgroups = [\"/a\"]\n",
            "missing field `priority`",
        ),
    ]);
}

#[test]
fn policy_files_hold_no_classes() {
    let got = Config::embedded()
        .parse_policies(&class("a", "high", "cgroups = [\"/a\"]"), "request")
        .unwrap_err()
        .to_string();
    assert!(got.contains("unknown field `class`"), "{got}");
}

#[test]
fn auto_thresholds_learn_with_the_baseline_settings_and_fixed_ones_do_not() {
    let c = Config::parse(
        "[defaults]\nsensitivity = 4.0\n\n[[policy]]\nname = \"learned\"\nmatch = [\"10.0.0.0/8:80\"]\nfailure_rate = \"auto\"\nslow_connect = \"auto\"\nfailure_rate_max = 0.3\nbaseline_window = \"1h\"\n\n[[policy]]\nname = \"fixed\"\nmatch = [\"10.0.0.0/8:81\"]\nfailure_rate = 0.25\nslow_connect = \"2s\"\n",
        "t",
    )
    .unwrap();
    let [learned, fixed] = &c.policies[..] else {
        panic!("{:?}", c.policies)
    };
    let b = learned.baseline.expect("learned");
    assert_eq!(
        (learned.failure_rate, learned.slow_connect),
        (values::Learnable::Auto, Some(values::Learnable::Auto))
    );
    assert_eq!((b.sensitivity, b.rate_min, b.rate_max), (4.0, 0.05, 0.3));
    assert_eq!(b.window, Duration::from_secs(3600));
    let k = learned.kernel(None);
    use enforcer_common::baseline::learn;
    assert_eq!(k.learn, learn::RATE | learn::SLOW);
    assert_eq!(
        (
            k.failure_rate_permille,
            k.rate_min_permille,
            k.sensitivity_milli
        ),
        (300, 50, 4000)
    );
    assert_eq!((k.slow_factor_milli, k.slow_connect_ns), (3000, 0));
    assert_eq!(fixed.baseline, None);
    let k = fixed.kernel(None);
    assert_eq!(
        (k.learn, k.failure_rate_permille, k.slow_connect_ns),
        (0, 250, 2_000_000_000)
    );
    // Written out and read back (as `policy show` and the saved set do),
    // they are the same policies.
    let text = crate::daemon::saved::to_toml(&c.policies);
    assert!(text.contains("failure_rate = \"auto\""), "{text}");
    assert_eq!(c.parse_policies(&text, "saved").unwrap(), c.policies);
}

#[test]
fn workload_selectors_are_patterns_a_policy_or_a_class_names() {
    let p = only(&db(
        "workloads = [\"/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*\"]",
    ));
    assert_eq!(
        p.workloads
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/*"]
    );
    assert_eq!(p.kernel(None).workloads, 1);
    assert_eq!(only(&db("")).kernel(None).workloads, 0);
    // A class may name its members by pattern alone.
    let c = Config::parse(
        &class(
            "batch",
            "sheddable",
            "workloads = [\"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/*\"]",
        ),
        "t",
    )
    .unwrap();
    assert_eq!(c.classes[0].workloads.len(), 1);
    assert!(c.classes[0].cgroups.is_empty());

    for (text, want) in [
        (
            db("workloads = [\"kubepods.slice/*\"]"),
            "line 4: policy \"db\": workloads: kubepods.slice/* is not an absolute path",
        ),
        (
            db("workloads = [\"/sys/fs/cgroup/a\", \"/sys/fs/cgroup/a\"]"),
            "line 4: policy \"db\": workloads: /sys/fs/cgroup/a is listed twice",
        ),
        (
            db("workloads = [\"/sys/fs/cgroup/[a\"]"),
            "line 4: policy \"db\": workloads: /sys/fs/cgroup/[a: `[a`",
        ),
        (
            db("workloads = []"),
            "line 4: policy \"db\": workloads: needs at least one cgroup path pattern",
        ),
        (
            db("cgroup = \"/sys/fs/cgroup/app\"\nworkloads = [\"/sys/fs/cgroup/*\"]"),
            "line 5: policy \"db\": workloads: a policy is scoped by a cgroup (/sys/fs/cgroup/app) or by workloads, not both",
        ),
        (
            class("batch", "sheddable", "workloads = [\"/sys/fs/cgroup/**x\"]"),
            "line 4: class \"batch\": workloads: /sys/fs/cgroup/**x: `**` must be a whole component",
        ),
    ] {
        let got = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(got.contains(want), "{text}:\n{got}\nwant {want}");
    }
}

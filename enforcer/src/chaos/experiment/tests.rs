use super::*;

const EXAMPLE: &str = r#"
name = "orders-db"
duration = "30s"
baseline = "10s"
recovery = "1m"

[targets]
destinations = ["10.0.4.0/24:5432", "[fd00::/64]:*"]
cgroups = ["/sys/fs/cgroup/orders"]
percentage = 30
max_connects = 500

[[fault]]
kind = "refuse"
errno = "ECONNRESET"

[[fault]]
kind = "delay"
syns = 2
destinations = ["10.0.5.1:6379"]
percentage = 100

[[steady_state]]
name = "orders answer"
http = "http://127.0.0.1:8080/health"
timeout = "500ms"

[[steady_state]]
success_ratio = "127.0.0.1:8080"
window = "5s"
tolerance = 0.02

[[abort]]
trip = "non_target"

[[abort]]
metric = "enforcer_kernel_rejected_circuit"
above = 50
window = "2s"

[[abort]]
http = "http://127.0.0.1:8080/health"
timeout = "2s"
"#;

fn invalid(text: &str) -> Invalid {
    Experiment::parse(text).expect_err("refused")
}

fn with(extra: &str) -> String {
    format!("name = \"x\"\nduration = \"1s\"\n{extra}")
}

#[test]
fn the_shipped_example_parses() {
    let e = Experiment::parse(include_str!("../../../dist/chaos-example.toml")).unwrap();
    assert_eq!(e.name, "orders-db-refused");
    assert_eq!((e.steady_state.len(), e.abort.len()), (2, 2));
}

#[test]
fn the_example_parses_whole() {
    let e = Experiment::parse(EXAMPLE).unwrap();
    assert_eq!(
        (e.name.as_str(), e.duration.0, e.baseline.0),
        (
            "orders-db",
            Duration::from_secs(30),
            Duration::from_secs(10)
        )
    );
    assert_eq!(e.faults.len(), 2);
    assert_eq!(
        e.faults[0].kind,
        FaultKind::Refuse {
            errno: libc::ECONNRESET as u32
        }
    );
    let t = &e.faults[0].targets;
    assert_eq!(
        (t.percentage, t.max_connects, t.destinations.len()),
        (30.0, 500, 2)
    );
    assert_eq!(t.cgroups, vec![PathBuf::from("/sys/fs/cgroup/orders")]);
    // The second fault's own targets over [targets]'s.
    let t = &e.faults[1].targets;
    assert_eq!(e.faults[1].kind, FaultKind::Delay { syns: 2 });
    assert_eq!((t.percentage, t.destinations.len()), (100.0, 1));
    assert_eq!(t.cgroups.len(), 1, "inherited");
    assert_eq!(e.steady_state[0].name, "orders answer");
    assert_eq!(e.steady_state[0].tolerance, 0.05, "the default");
    assert_eq!(e.steady_state[1].name, "success ratio of 127.0.0.1:8080");
    assert_eq!(e.abort[0], AbortCondition::Trip { destination: None });
    assert!(matches!(&e.abort[1], AbortCondition::Above { bound, .. } if *bound == 50.0));
    assert!(
        matches!(&e.abort[2], AbortCondition::Below { measure: Measure::Http { .. }, bound } if *bound == 1.0)
    );
    assert!(e.targets("10.0.4.9:5432".parse().unwrap()));
    assert!(e.targets("10.0.5.1:6379".parse().unwrap()));
    assert!(!e.targets("10.0.5.1:6380".parse().unwrap()));
    assert_eq!(e.length(), Duration::from_secs(100));
}

#[test]
fn a_round_trip_through_the_typed_api_keeps_everything() {
    let e = Experiment::parse(EXAMPLE).unwrap();
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), e);
}

#[test]
fn errors_name_the_field_and_the_line() {
    let e = invalid(&with(
        "[[fault]]\nkind = \"delay\"\nsyns = 9\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!((e.field.as_str(), e.line), ("fault[0].syns", Some(5)));
    let e = invalid(&with(
        "[[fault]]\nkind = \"melt\"\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!(e.field, "fault[0].kind");
    assert!(e.message.contains("refuse, blackhole, delay"), "{e}");
    let e = invalid(&with("[[fault]]\nkind = \"refuse\"\n"));
    assert_eq!(e.field, "fault[0].destinations");
    let e = invalid(&with(
        "[targets]\ndestinations = [\"10.0.0.1/8:80\"]\n[[fault]]\nkind = \"refuse\"\n",
    ));
    assert_eq!(
        (e.field.as_str(), e.line),
        ("targets.destinations", Some(4))
    );
    assert!(e.message.contains("host bits"), "{e}");
    let e = invalid(&with(
        "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\npercentage = 0\n",
    ));
    assert_eq!(e.field, "fault[0].percentage");
    let e = invalid(&with(
        "[[fault]]\nkind = \"blackhole\"\nerrno = \"ETIMEDOUT\"\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!(e.field, "fault[0].errno");
    let e = invalid(&with(
        "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\ncgroups = [\"relative\"]\n",
    ));
    assert_eq!(e.field, "fault[0].cgroups");
    let e = invalid(
        "name = \"x\"\nduration = \"25h\"\n[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\n",
    );
    assert_eq!((e.field.as_str(), e.line), ("duration", Some(2)));
    let e = invalid("name = \"a b\"\nduration = \"1s\"\n");
    assert_eq!(e.field, "name");
    let e = invalid(&with(""));
    assert_eq!(e.field, "fault");
}

#[test]
fn checks_name_one_measure_and_their_bounds() {
    let fault = "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\n";
    let e = invalid(&with(&format!(
        "{fault}[[abort]]\nsuccess_ratio = \"127.0.0.1:1\"\nhttp = \"http://127.0.0.1/\"\nbelow = 1\n"
    )));
    assert_eq!(e.field, "abort[0]");
    let e = invalid(&with(&format!(
        "{fault}[[abort]]\nsuccess_ratio = \"127.0.0.1:1\"\n"
    )));
    assert!(e.message.contains("below or above"), "{e}");
    let e = invalid(&with(&format!("{fault}[[abort]]\ntrip = \"everything\"\n")));
    assert_eq!(e.field, "abort[0].trip");
    let e = invalid(&with(&format!("{fault}[[abort]]\nhttp = \"https://x/\"\n")));
    assert_eq!(e.field, "abort[0].http");
    let e = invalid(&with(&format!(
        "{fault}[[abort]]\nmetric = \"enforcer_kernel_nope\"\nabove = 1\n"
    )));
    assert_eq!(e.field, "abort[0].metric");
    let e = invalid(&with(&format!(
        "{fault}[[steady_state]]\nmetric = \"enforcer_kernel_failures\"\n"
    )));
    assert_eq!(
        e.field, "steady_state[0].tolerance",
        "a rate needs its tolerance"
    );
    let e = invalid(&with(&format!(
        "{fault}[[steady_state]]\nsuccess_ratio = \"127.0.0.1:1\"\nbelow = 0.5\n"
    )));
    assert_eq!(e.field, "steady_state[0].below");
    let e = invalid(&format!(
        "name = \"x\"\nduration = \"1s\"\nbaseline = \"0s\"\n{fault}[[steady_state]]\nsuccess_ratio = \"127.0.0.1:1\"\n"
    ));
    assert_eq!(e.field, "baseline");
    let e = invalid(&with(&format!(
        "{fault}[[steady_state]]\nsuccess_ratio = \"127.0.0.1:1\"\nwindow = \"10ms\"\n"
    )));
    assert_eq!(e.field, "steady_state[0].window");
}

#[test]
fn a_faults_callers_may_be_workloads_by_pattern_not_with_cgroups() {
    let e = Experiment::parse(&with(
        "[targets]\nworkloads = [\"/sys/fs/cgroup/kubepods.slice/*/kubepods-*pod*.slice\"]\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\n",
    ))
    .unwrap();
    assert_eq!(
        e.faults[0].targets.workloads[0].to_string(),
        "/sys/fs/cgroup/kubepods.slice/*/kubepods-*pod*.slice"
    );
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), e);
    let e = invalid(&with(
        "[targets]\ncgroups = [\"/sys/fs/cgroup/x\"]\n[[fault]]\nkind = \"refuse\"\n\
         destinations = [\"127.0.0.1:1\"]\nworkloads = [\"/sys/fs/cgroup/*\"]\n",
    ));
    assert_eq!((e.field.as_str(), e.line), ("fault[0].workloads", Some(8)));
    assert!(
        e.message.contains("targets.cgroups or workloads, not both"),
        "{e}"
    );
    let e = invalid(&with(
        "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\nworkloads = [\"pods/*\"]\n",
    ));
    assert_eq!(e.field, "fault[0].workloads");
    assert!(e.message.contains("not an absolute path"), "{e}");
    let e = invalid(&with(
        "[[fault]]\nkind = \"reset\"\ndestinations = [\"127.0.0.1:1\"]\nworkloads = [\"/sys/fs/cgroup/*\"]\n",
    ));
    assert_eq!(e.field, "fault[0].workloads");
}

#[test]
fn faults_that_reset_name_destinations_only() {
    let e = Experiment::parse(&with(
        "[[fault]]\nkind = \"abort_after_bytes\"\nbytes = 4096\ndestinations = [\"127.0.0.1:1\"]\n",
    ))
    .unwrap();
    assert_eq!(e.faults[0].kind, FaultKind::AbortAfterBytes { bytes: 4096 });
    assert!(e.faults[0].kind.resets() && !e.faults[0].kind.armed());
    let e = invalid(&with(
        "[[fault]]\nkind = \"abort_after_bytes\"\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!(e.field, "fault[0].bytes");
    let e = invalid(&with(
        "[[fault]]\nkind = \"refuse\"\nbytes = 3\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!(e.field, "fault[0].bytes");
    let e = invalid(&with(
        "[targets]\ncgroups = [\"/sys/fs/cgroup/x\"]\n[[fault]]\nkind = \"reset\"\ndestinations = [\"127.0.0.1:1\"]\n",
    ));
    assert_eq!((e.field.as_str(), e.line), ("targets.cgroups", Some(4)));
    let e = invalid(&with(
        "[[fault]]\nkind = \"reset\"\ndestinations = [\"127.0.0.1:1\"]\nmax_connects = 3\n",
    ));
    assert_eq!(e.field, "fault[0].max_connects");
    let e = invalid(&with(
        "[[fault]]\nkind = \"abort_after_bytes\"\nbytes = 1\ndestinations = [\"127.0.0.1:1\"]\npercentage = 50\n",
    ));
    assert_eq!(e.field, "fault[0].percentage");
    let reset = Experiment::parse(&with(
        "[[fault]]\nkind = \"reset\"\ndestinations = [\"127.0.0.1:1\"]\npercentage = 50\n",
    ))
    .unwrap();
    assert_eq!(reset.faults[0].kind, FaultKind::Reset);
}

#[test]
fn guest_faults_name_destinations_and_a_percentage_only() {
    for (kind, want) in [
        ("guest_refuse", FaultKind::GuestRefuse),
        ("guest_blackhole", FaultKind::GuestBlackhole),
        ("guest_loss", FaultKind::GuestLoss),
    ] {
        let e = Experiment::parse(&with(&format!(
            "[[fault]]\nkind = \"{kind}\"\ndestinations = [\"10.0.0.0/8:*\"]\npercentage = 5\n"
        )))
        .unwrap();
        assert_eq!(e.faults[0].kind, want);
        assert!(want.for_guests() && want.armed() && !want.resets());
    }
    assert!(!FaultKind::Blackhole.for_guests());
    let e = invalid(&with(
        "[targets]\ncgroups = [\"/sys/fs/cgroup/x\"]\n[[fault]]\nkind = \"guest_loss\"\ndestinations = [\"10.0.0.1:1\"]\n",
    ));
    assert_eq!((e.field.as_str(), e.line), ("targets.cgroups", Some(4)));
    let e = invalid(&with(
        "[[fault]]\nkind = \"guest_blackhole\"\ndestinations = [\"10.0.0.1:1\"]\nmax_connects = 3\n",
    ));
    assert_eq!(e.field, "fault[0].max_connects");
    let e = invalid(&with(
        "[[fault]]\nkind = \"guest_refuse\"\nerrno = \"ECONNRESET\"\ndestinations = [\"10.0.0.1:1\"]\n",
    ));
    assert_eq!(e.field, "fault[0].errno");
}

#[test]
fn a_success_ratio_is_of_a_destination_a_policy_or_a_class() {
    let fault = "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\n";
    let e = Experiment::parse(&with(&format!(
        "{fault}[[steady_state]]\nsuccess_ratio = \"policy:orders\"\n\
         [[abort]]\nsuccess_ratio = \"class:batch\"\nbelow = 0.5\n\
         [[abort]]\nsuccess_ratio = \"[::1]:80\"\nbelow = 0.5\n"
    )))
    .unwrap();
    let named: Vec<(String, RatioOf)> =
        e.named().into_iter().map(|(f, o)| (f, o.clone())).collect();
    assert_eq!(
        named,
        vec![
            (
                "steady_state[0].success_ratio".to_owned(),
                RatioOf::Policy("orders".into())
            ),
            (
                "abort[0].success_ratio".to_owned(),
                RatioOf::Class("batch".into())
            ),
        ]
    );
    assert_eq!(e.steady_state[0].name, "success ratio of policy orders");
    let e = invalid(&with(&format!(
        "{fault}[[abort]]\nsuccess_ratio = \"policy:\"\nbelow = 1\n"
    )));
    assert_eq!(e.field, "abort[0].success_ratio");
    let e = invalid(&with(&format!(
        "{fault}[[abort]]\nsuccess_ratio = \"orders\"\nbelow = 1\n"
    )));
    assert!(e.message.contains("policy:NAME"), "{e}");
}

#[test]
fn targets_cover_their_addresses_and_port_as_the_kernel_matches_them() {
    let targets = |rules: &[&str]| Targets {
        destinations: rules.iter().map(|r| r.parse().unwrap()).collect(),
        cgroups: Vec::new(),
        workloads: Vec::new(),
        classes: Vec::new(),
        percentage: 100.0,
        max_connects: 0,
    };
    let t = targets(&["10.0.0.0/8:5432"]);
    assert!(t.covers("10.9.8.7:5432".parse().unwrap()));
    assert!(t.covers("[::ffff:10.9.8.7]:5432".parse().unwrap()));
    assert!(!t.covers("10.9.8.7:5433".parse().unwrap()));
    assert!(!t.covers("11.0.0.1:5432".parse().unwrap()));
    let any = targets(&["[fd00::/64]:*"]);
    assert!(any.covers("[fd00::1]:1".parse().unwrap()));
    assert!(!any.covers("[fd01::1]:1".parse().unwrap()));
    assert!(!any.covers("10.0.0.1:1".parse().unwrap()));
}

#[test]
fn unknown_keys_are_refused() {
    let e = invalid(&with(
        "[[fault]]\nkind = \"refuse\"\ndestinations = [\"127.0.0.1:1\"]\nprobability = 3\n",
    ));
    assert!(e.message.contains("probability"), "{e}");
}

//! Workload selectors on a cgroup tree laid out like the kubelet's (systemd
//! driver): `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<UID>.slice/
//! cri-containerd-<ID>.scope`, and the cgroupfs driver's `kubepods/<qos>/
//! pod<UID>/<ID>`), built inside the test's scratch cgroup. Pods
//! appear and go while their containers connect; the daemon, watching the
//! tree, covers each pod its patterns match within a second of its slice
//! appearing and forgets it when it goes. A pattern matching nothing is
//! valid and said so; a pattern a cgroup v2 hierarchy cannot hold is refused.
//! The attacker: an unprivileged process in a delegated cgroup names a cgroup
//! of its own like a selected pod.

use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    os::unix::fs::chown,
    time::{Duration, Instant},
};

use enforcer_common::{class::Priority, workload::policy_scope};
use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, enforcer},
    exec::Place,
    net::{RefusingPort, connect},
    wait,
};

/// Within this long of a pod's slice appearing, its processes are covered.
const COVERED_WITHIN: Duration = Duration::from_secs(1);

/// A pod: its slice below the QoS slice and one container scope below it.
struct Pod {
    // Dropped first: a cgroup with children cannot be removed.
    container: ScratchCgroup,
    slice: ScratchCgroup,
}

impl Pod {
    /// The pod `slice` (as the kubelet names it) below `parent`.
    fn new(parent: &ScratchCgroup, slice: &str) -> Self {
        let slice = parent.child_named(slice);
        let container = slice.child_named("cri-containerd-0a1b2c.scope");
        Self { container, slice }
    }
}

/// A policy `name` for `addr` whose callers are the workloads `patterns`
/// select, never tripping: each connect is counted, none refused by it.
fn selecting(name: &str, addr: SocketAddr, patterns: &[&str]) -> String {
    let patterns: Vec<String> = patterns.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[policy]]\nname = \"{name}\"\nmatch = [\"{addr}\"]\nworkloads = [{}]\n\
         failure_threshold = 1000000\nmin_attempts = 1000000\n\n",
        patterns.join(", ")
    )
}

/// Makes the pod `slice` below `parent` and waits until the kernel holds
/// it, at `level`, for policy `id`: within [`COVERED_WITHIN`].
fn pod_covered(d: &Daemon, id: u32, parent: &ScratchCgroup, slice: &str, level: u32) -> Pod {
    let made = Instant::now();
    let pod = Pod::new(parent, slice);
    wait::until(&format!("{slice} in the kernel"), || {
        let held = kernel_selected(d, id);
        held.contains(&(pod.slice.id(), level))
            .then_some(())
            .ok_or(format!("{held:?}"))
    });
    let took = made.elapsed();
    eprintln!("{slice} covered {took:?} after it appeared");
    assert!(
        took < COVERED_WITHIN,
        "{slice} covered only {took:?} after it appeared"
    );
    pod
}

/// `addr`'s tracked connect attempts (0 while it is not tracked).
fn attempts(d: &Daemon, addr: SocketAddr) -> u64 {
    d.dest(addr)["attempts"].as_u64().unwrap_or(0)
}

/// Connects to `addr` from `place` (refused, the breaker never trips) until
/// the daemon counts an attempt.
fn counted_from(d: &Daemon, place: &Place<'_>, addr: SocketAddr) {
    let before = attempts(d, addr);
    wait::until("a connect from the pod counted", || {
        place.connects(addr, 1);
        let now = attempts(d, addr);
        (now > before)
            .then_some(())
            .ok_or(format!("{now} attempts"))
    });
}

/// The cgroups the kernel holds for policy `id`'s selectors: (id, level).
fn kernel_selected(d: &Daemon, id: u32) -> BTreeSet<(u64, u32)> {
    let entries = d
        .pinned_maps()
        .workloads
        .entries()
        .expect("reading WORKLOADS");
    entries.get(&policy_scope(id)).cloned().unwrap_or_default()
}

/// `policy list`'s matches of policy `name`: (pattern, cgroups) each.
fn listed(d: &Daemon, name: &str) -> Vec<(String, u64)> {
    let list = d.json(&["policy", "list"]);
    let policy = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no policy {name} in {list}"))
        .clone();
    policy["selected"]
        .as_array()
        .expect("selected")
        .iter()
        .map(|w| {
            (
                w["pattern"].as_str().unwrap().to_owned(),
                w["cgroups"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn policy_id(d: &Daemon, name: &str) -> u32 {
    let list = d.json(&["policy", "list"]);
    list.as_array()
        .expect("a list")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_u64())
        .unwrap_or_else(|| panic!("no policy {name} in {list}")) as u32
}

#[test]
fn pods_are_covered_as_they_appear_and_forgotten_as_they_go() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods.slice");
    let burstable = kubepods.child_named("kubepods-burstable.slice");
    let besteffort = kubepods.child_named("kubepods-besteffort.slice");
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let pods = format!(
        "{}/kubepods-burstable.slice/kubepods-burstable-pod*.slice",
        kubepods.path().display()
    );
    let guaranteed = format!("{}/kubepods-pod*.slice", kubepods.path().display());
    let config = format!(
        "{}[[class]]\nname = \"batch\"\npriority = \"sheddable\"\n\
         workloads = [\"{}/kubepods-besteffort.slice/*\"]\n",
        selecting("burstable", addr, &[&pods, &guaranteed]),
        kubepods.path().display()
    );
    let d = Daemon::start(&cgroup, &pins, &config);
    let id = policy_id(&d, "burstable");

    // No pod yet: valid, and said so.
    assert_eq!(
        listed(&d, "burstable"),
        [(pods.clone(), 0), (guaranteed.clone(), 0)]
    );
    assert!(kernel_selected(&d, id).is_empty());
    assert!(
        d.log().contains(&format!("{pods} matches no cgroup (yet)")),
        "{}",
        d.log()
    );
    assert_eq!(
        d.ok(&["policy", "list"]).matches("(no cgroup)").count(),
        2,
        "{}",
        d.ok(&["policy", "list"])
    );
    // Outside any pod, the policy does not apply.
    Place::cgroup(&burstable).connects(addr, 3);
    assert_eq!(
        attempts(&d, addr),
        0,
        "a connect from no pod is not tracked"
    );

    // A pod appears: covered within a second, its container's connects
    // counted.
    let a = pod_covered(
        &d,
        id,
        &burstable,
        "kubepods-burstable-pod0f3b3c1e_1c2d.slice",
        4,
    );
    counted_from(&d, &Place::cgroup(&a.container), addr);
    assert_eq!(listed(&d, "burstable")[0], (pods.clone(), 1));
    let metrics = d.metrics();
    let gauge = |policy: &str, pattern: &str| {
        metrics.get(
            "enforcer_policy_workload_cgroups",
            &[("policy", policy), ("pattern", pattern)],
        )
    };
    assert_eq!(gauge("burstable", &pods), Some(1.0));
    assert_eq!(gauge("burstable", &guaranteed), Some(0.0));

    // A pod the patterns do not match stays out, root or not; it is the
    // batch class's.
    let b = Pod::new(&besteffort, "kubepods-besteffort-pod9a8b7c6d_5e4f.slice");
    wait::until("pod b in class batch", || {
        let (_, cgroups) = d.kernel_classes();
        cgroups
            .contains(&(b.slice.id(), Priority::Sheddable))
            .then_some(())
            .ok_or(format!("{cgroups:?}"))
    });
    let besteffort_pods = format!("{}/kubepods-besteffort.slice/*", kubepods.path().display());
    assert_eq!(
        d.metrics().get(
            "enforcer_class_workload_cgroups",
            &[("class", "batch"), ("pattern", &besteffort_pods)]
        ),
        Some(1.0)
    );
    let before = attempts(&d, addr);
    let outside = Place::cgroup(&b.container);
    outside.connects(addr, 3);
    outside.run_as_nobody(|| format!("{:?}", connect(addr).err()));
    assert_eq!(
        attempts(&d, addr),
        before,
        "pod b's connects are not tracked"
    );

    // A guaranteed pod (right below kubepods.slice, one level up) is the
    // second pattern's.
    let c = pod_covered(&d, id, &kubepods, "kubepods-podc0ffee00_0000.slice", 3);
    counted_from(&d, &Place::cgroup(&c.container), addr);

    // Pods go: their entries leave the kernel, the class's too.
    let (a_id, b_id) = (a.slice.id(), b.slice.id());
    drop((a, b));
    wait::until("pods a and b forgotten", || {
        let held = kernel_selected(&d, id);
        let (_, classes) = d.kernel_classes();
        let gone =
            held == BTreeSet::from([(c.slice.id(), 3)]) && !classes.iter().any(|(i, _)| *i == b_id);
        gone.then_some(()).ok_or(format!("{held:?}, {classes:?}"))
    });
    assert!(!kernel_selected(&d, id).iter().any(|(i, _)| *i == a_id));
    assert_eq!(
        listed(&d, "burstable"),
        [(pods.clone(), 0), (guaranteed.clone(), 1)]
    );
    drop(c);
    wait::until_true("pod c forgotten", || kernel_selected(&d, id).is_empty());
    drop((besteffort, burstable, kubepods));
}

/// The attacker: a process dropped to `nobody` in a cgroup delegated to it
/// makes a cgroup named like a selected pod, moves itself there and
/// connects. The patterns match whole paths: its cgroup is not a pod's, and
/// its connects stay untracked.
#[test]
fn a_lookalike_cgroup_made_by_nobody_is_not_a_pod() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods.slice");
    let burstable = kubepods.child_named("kubepods-burstable.slice");
    let delegated = cgroup.child_named("user.slice");
    for file in ["", "cgroup.procs"] {
        chown(delegated.path().join(file), Some(65534), Some(65534)).expect("chown");
    }
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let pods = format!(
        "{}/**/kubepods-burstable-pod*.slice",
        kubepods.path().display()
    );
    let d = Daemon::start(&cgroup, &pins, &selecting("burstable", addr, &[&pods]));
    let id = policy_id(&d, "burstable");
    // A real pod, to see the daemon at work.
    let pod = Pod::new(&burstable, "kubepods-burstable-pod1.slice");
    wait::until_true("the pod covered", || {
        kernel_selected(&d, id).contains(&(pod.slice.id(), 4))
    });
    counted_from(&d, &Place::cgroup(&pod.container), addr);
    let before = attempts(&d, addr);

    let lookalike = delegated.path().join("kubepods-burstable-podEVIL.slice");
    let said = Place::cgroup(&delegated).run_as_nobody(|| {
        fs::create_dir(&lookalike).expect("nobody makes a cgroup in its delegated one");
        fs::write(lookalike.join("cgroup.procs"), "0").expect("nobody moves itself there");
        // Time for the daemon to see it, were it looking there.
        std::thread::sleep(Duration::from_secs(2));
        format!(
            "{:?}",
            (0..3).map(|_| connect(addr).err()).collect::<Vec<_>>()
        )
    });
    assert_eq!(said, "[Some(111), Some(111), Some(111)]");
    assert_eq!(
        attempts(&d, addr),
        before,
        "nobody's lookalike pod is not tracked"
    );
    assert!(
        !kernel_selected(&d, id).iter().any(|(i, _)| Some(*i)
            == fs::metadata(&lookalike).ok().map(|m| {
                use std::os::unix::fs::MetadataExt as _;
                m.ino()
            })),
        "the lookalike is not selected"
    );
    fs::remove_dir(&lookalike).expect("rmdir the lookalike");
    drop(pod);
    drop((burstable, kubepods, delegated));
}

/// A pattern no cgroup v2 directory can match (outside the hierarchy) is
/// refused at the start, naming the policy and the field, with nothing
/// attached; on a reload, with the running selection kept. A good reload
/// selects anew.
#[test]
fn a_pattern_outside_the_hierarchy_is_refused_and_a_reload_selects_anew() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods.slice");
    let refusing = RefusingPort::loopback_v4();
    let policy = |pattern: &str| {
        format!(
            "[[policy]]\nname = \"p\"\nmatch = [\"{}\"]\nworkloads = [\"{pattern}\"]\n",
            refusing.addr
        )
    };
    let outside = policy("/tmp/*/pods");
    let says = "policy \"p\": workloads: /tmp/*/pods is not below the cgroup v2 hierarchy";

    let d = Daemon::configure(&cgroup, &pins, &outside, "", false);
    let out = enforcer(&["run", "--config", d.config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(says), "no `{says}` in: {err}");
    assert!(
        !cgroup.attached_programs().contains("gate_connect"),
        "attached: {}",
        cgroup.attached_programs()
    );
    drop(d);

    let a = Pod::new(&kubepods, "kubepods-poda.slice");
    let b = Pod::new(&kubepods, "kubepods-podb.slice");
    let base = kubepods.path().display().to_string();
    let d = Daemon::start(
        &cgroup,
        &pins,
        &policy(&format!("{base}/kubepods-poda.slice")),
    );
    let id = policy_id(&d, "p");
    assert_eq!(kernel_selected(&d, id), BTreeSet::from([(a.slice.id(), 3)]));

    d.edit_config(|text| {
        let daemon = &text[text.find("[daemon]").unwrap()..];
        format!("{outside}\n{daemon}")
    });
    d.hangup();
    wait::until_true("the reload refused", || d.log().contains("reload rejected"));
    assert!(d.log().contains(says), "{}", d.log());
    assert_eq!(kernel_selected(&d, id), BTreeSet::from([(a.slice.id(), 3)]));

    let next = policy(&format!("{base}/kubepods-podb.slice"));
    d.edit_config(|text| {
        let daemon = &text[text.find("[daemon]").unwrap()..];
        format!("{next}\n{daemon}")
    });
    d.hangup();
    wait::until("the reload to select pod b", || {
        let held = kernel_selected(&d, id);
        (held == BTreeSet::from([(b.slice.id(), 3)]))
            .then_some(())
            .ok_or(format!("{held:?}"))
    });
    drop(d);
    drop((a, b, kubepods));
}

/// A chaos fault whose callers are workloads: a pod that appears while the
/// experiment runs is refused as soon as it is covered; a pod the pattern
/// does not match, and a process of the QoS slice itself, are not; the
/// fault's entries leave the kernel with the experiment.
#[test]
fn a_chaos_fault_refuses_the_pods_its_pattern_selects_as_they_come() {
    const ECONNRESET: i32 = 104;
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods.slice");
    let burstable = kubepods.child_named("kubepods-burstable.slice");
    let besteffort = kubepods.child_named("kubepods-besteffort.slice");
    let server = enforcer_tests::net::AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let d = Daemon::start(
        &cgroup,
        &pins,
        &format!(
            "[[policy]]\nname = \"local\"\nmatch = [\"{addr}\"]\nfailure_threshold = 1000000\n"
        ),
    );
    let other = Pod::new(&besteffort, "kubepods-besteffort-pod2.slice");
    let experiment = std::env::temp_dir().join(enforcer_tests::unique_name("chaos-") + ".toml");
    fs::write(
        &experiment,
        format!(
            "name = \"pods\"\nduration = \"5m\"\nbaseline = \"0s\"\n\
             [targets]\ndestinations = [\"{addr}\"]\n\
             workloads = [\"{}/kubepods-burstable-pod*.slice\"]\n\
             [[fault]]\nkind = \"refuse\"\nerrno = \"ECONNRESET\"\n",
            burstable.path().display()
        ),
    )
    .expect("writing the experiment");
    d.ok(&["chaos", "start", experiment.to_str().unwrap()]);
    let _ = fs::remove_file(&experiment);
    wait::until_true("the fault armed", || d.kernel_config().chaos_armed != 0);
    assert_ne!(d.kernel_fault(0).workloads, 0, "{:?}", d.kernel_fault(0));

    let pod = Pod::new(&burstable, "kubepods-burstable-pod1.slice");
    let inside = Place::cgroup(&pod.container);
    wait::until("the new pod refused", || {
        let got = inside.connects(addr, 1);
        (got == [Err(ECONNRESET)])
            .then_some(())
            .ok_or(format!("{got:?}"))
    });
    assert_eq!(
        Place::cgroup(&other.container).connects(addr, 3),
        [Ok(()); 3]
    );
    assert_eq!(Place::cgroup(&burstable).connects(addr, 3), [Ok(()); 3]);
    let fault_scopes = |d: &Daemon| -> Vec<u32> {
        let entries = d.pinned_maps().workloads.entries().expect("WORKLOADS");
        entries
            .into_keys()
            .filter(|s| *s >= enforcer_common::workload::fault_scope(0))
            .collect()
    };
    assert_eq!(fault_scopes(&d).len(), 1);

    d.ok(&["chaos", "abort", "pods"]);
    wait::until("the fault's workloads forgotten", || {
        let left = fault_scopes(&d);
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
    assert_eq!(inside.connects(addr, 1), [Ok(())]);
    drop((pod, other));
    drop((burstable, besteffort, kubepods));
}

/// The cgroupfs driver's layout (`kubepods/<qos>/pod<UID>/<container ID>`,
/// the UID as Kubernetes writes it): the same coverage as the systemd
/// driver's.
#[test]
fn the_cgroupfs_drivers_pods_are_covered_too() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods");
    let burstable = kubepods.child_named("burstable");
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let pods = format!("{}/pod*", burstable.path().display());
    let d = Daemon::start(&cgroup, &pins, &selecting("burstable", addr, &[&pods]));
    let id = policy_id(&d, "burstable");
    let pod = pod_covered(
        &d,
        id,
        &burstable,
        "pod0f3b3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        4,
    );
    counted_from(&d, &Place::cgroup(&pod.container), addr);
    drop(pod);
    wait::until_true("the pod forgotten", || kernel_selected(&d, id).is_empty());
    drop((burstable, kubepods));
}

/// A daemon killed with SIGKILL: the pods it selected stay covered (the
/// kernel keeps its entries and counts their connects), a pod that comes
/// meanwhile is covered by the restarted daemon, and one that went
/// meanwhile leaves the kernel then.
#[test]
fn a_restart_after_a_kill_catches_up_with_the_pods_that_came_and_went() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let kubepods = cgroup.child_named("kubepods.slice");
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let pods = format!("{}/kubepods-pod*.slice", kubepods.path().display());
    let mut d = Daemon::start(&cgroup, &pins, &selecting("pods", addr, &[&pods]));
    let id = policy_id(&d, "pods");
    let stays = pod_covered(&d, id, &kubepods, "kubepods-poda.slice", 3);
    let goes = pod_covered(&d, id, &kubepods, "kubepods-podb.slice", 3);
    d.kill9();
    let before = attempts_in_kernel(&d, addr);
    Place::cgroup(&stays.container).connects(addr, 2);
    assert_eq!(
        attempts_in_kernel(&d, addr),
        before + 2,
        "pod a stays covered without a daemon"
    );
    let (gone, stays_id) = (goes.slice.id(), stays.slice.id());
    drop(goes);
    let comes = Pod::new(&kubepods, "kubepods-podc.slice");
    d.spawn();
    wait::until("the restarted daemon catching up", || {
        let held = kernel_selected(&d, id);
        let want = BTreeSet::from([(stays_id, 3), (comes.slice.id(), 3)]);
        (held == want).then_some(()).ok_or(format!("{held:?}"))
    });
    assert!(!kernel_selected(&d, id).iter().any(|(i, _)| *i == gone));
    counted_from(&d, &Place::cgroup(&comes.container), addr);
    drop((stays, comes));
    drop(kubepods);
}

/// `addr`'s attempts as the kernel counted them (no daemon needed).
fn attempts_in_kernel(d: &Daemon, addr: SocketAddr) -> u64 {
    let mut total = 0;
    d.pinned_maps()
        .dests
        .each(|k, s| {
            if k.socket_addr() == addr {
                total += s.counters.attempts;
            }
        })
        .expect("reading DESTS");
    total
}

//! Priority classes through the real daemon, as an operator configures and
//! reads them: `[[class]]` tables naming child cgroups of the protected one
//! are written into the kernel at the start and on every reload, `class
//! list`, `class show`, `status --class` and the metrics show what
//! connections made from those cgroups did, and a class naming a cgroup that
//! does not exist is refused (exit 2 at the start, a refused reload keeping
//! the running classes). How the kernel shares a cap among classes is
//! `class_shares.rs`.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use enforcer_common::class::{ClassTable, Priority};
use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, enforcer},
    exec::Place,
    fixtures::ECONNREFUSED,
    net::AcceptingServer,
    netns::own_inode,
    require_root,
};

const REFUSED: Result<(), i32> = Err(ECONNREFUSED as i32);

/// A policy capping `addr` at `cap` connections.
fn policy(addr: SocketAddr, cap: u32) -> String {
    format!("[[policy]]\nname = \"svc\"\nmatch = [\"{addr}\"]\nmax_connections = {cap}\n\n")
}

/// A `[[class]]` table.
fn class(name: &str, priority: &str, share: f64, cgroups: &[&ScratchCgroup]) -> String {
    let paths: Vec<String> = cgroups
        .iter()
        .map(|c| format!("\"{}\"", c.path().display()))
        .collect();
    format!(
        "[[class]]\nname = \"{name}\"\npriority = \"{priority}\"\nshare = {share:?}\ncgroups = [{}]\n\n",
        paths.join(", ")
    )
}

/// The counts of class `name` at `addr` in `status` (null when absent).
fn class_at(d: &Daemon, addr: SocketAddr, name: &str) -> serde_json::Value {
    d.status_of(addr)["classes"][name].clone()
}

/// Waits until `what` holds, failing with `show` after 30 s.
fn wait_for(what: impl Fn() -> bool, show: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !what() {
        assert!(Instant::now() < deadline, "{}", show());
        thread::sleep(Duration::from_millis(50));
    }
}

/// `enforcer ARGS` against `d` is refused as bad input, naming each of `says`.
fn refused(d: &Daemon, args: &[&str], says: &[&str]) {
    let out = d.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?}: no `{s}` in: {err}");
    }
}

#[test]
fn classes_show_in_class_list_show_status_and_metrics() {
    require_root();
    let cgroup = ScratchCgroup::new();
    let (checkout, batch) = (cgroup.child(), cgroup.child());
    let pins = PinDir::new();
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    // Cap 4: checkout is guaranteed 2, the other 2 are borrowed first come.
    let config = format!(
        "{}{}{}",
        policy(addr, 4),
        class("checkout", "critical", 0.5, &[&checkout]),
        class("batch", "sheddable", 0.0, &[&batch]),
    );
    let d = Daemon::start(&cgroup, &pins, &config);

    // In the kernel: the shares by priority, each cgroup by its id.
    let (table, cgroups) = d.kernel_classes();
    assert_eq!(
        table,
        ClassTable {
            share_permille: [500, 0, 0, 0],
            enabled: 1,
            _pad: 0
        }
    );
    let mut want = vec![
        (checkout.id(), Priority::Critical),
        (batch.id(), Priority::Sheddable),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(cgroups, want);

    // `class list`: highest first, the default class (processes in no
    // listed cgroup) included.
    let list = d.json(&["class", "list"]);
    let rows: Vec<(&str, &str, f64, bool)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["priority"].as_str().unwrap(),
                c["share"].as_f64().unwrap(),
                c["declared"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("checkout", "critical", 0.5, true),
            ("default", "default", 0.0, false),
            ("batch", "sheddable", 0.0, true),
        ]
    );
    assert_eq!(list[0]["cgroups"][0], checkout.path().display().to_string());
    let table = d.ok(&["class", "list"]);
    for want in [
        "CLASS",
        "PRIORITY",
        "SHARE",
        "CGROUPS",
        "checkout",
        &checkout.path().display().to_string(),
        &batch.path().display().to_string(),
        "(processes in no listed cgroup)",
    ] {
        assert!(table.contains(want), "no `{want}` in:\n{table}");
    }

    // Batch holds 2 (all it may borrow), and a third is refused; checkout
    // still gets its 2 at once; once they are closed, a default caller (in
    // the protected cgroup itself) finds nothing left to borrow under a cap
    // that is not full.
    let mut holder = Place::cgroup(&batch).spawn_nobody_holding(addr, 2);
    wait_for(
        || class_at(&d, addr, "batch")["active"] == 2,
        || d.status_of(addr).to_string(),
    );
    assert_eq!(Place::cgroup(&batch).connects(addr, 1), [REFUSED]);
    assert_eq!(
        Place::cgroup(&checkout).held_connects(addr, 2),
        [Ok(()), Ok(())]
    );
    wait_for(
        || class_at(&d, addr, "checkout")["active"] == 0,
        || d.status_of(addr).to_string(),
    );
    assert_eq!(Place::cgroup(&cgroup).connects(addr, 1), [REFUSED]);

    // `class show`: the settings and the counts summed over destinations.
    let show = |name: &str| -> serde_json::Value {
        serde_json::from_str(&d.ok(&["class", "show", name])).expect("JSON")
    };
    assert_eq!(
        show("checkout"),
        serde_json::json!({
            "name": "checkout",
            "priority": "critical",
            "share": 0.5,
            "cgroups": [checkout.path().display().to_string()],
            "declared": true,
            "active": 0,
            "admitted": 2,
            "shed": 0,
        })
    );
    let b = show("batch");
    assert_eq!(
        (&b["active"], &b["admitted"], &b["shed"]),
        (&2.into(), &2.into(), &1.into()),
        "{b}"
    );
    let default = show("default");
    assert_eq!(
        (&default["declared"], &default["admitted"], &default["shed"]),
        (&false.into(), &0.into(), &1.into()),
        "{default}"
    );

    // `status`: every class's counts per destination; `--class`, one's.
    let all = d.status_of(addr);
    let names: Vec<&String> = all["classes"]
        .as_object()
        .expect("classes")
        .keys()
        .collect();
    assert_eq!(names, ["batch", "checkout", "default"], "{all}");
    let only = d.json(&["status", "--class", "batch"]);
    let dest = only["destinations"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["dest"] == addr.to_string()))
        .cloned()
        .expect("the destination");
    assert_eq!(
        dest["classes"],
        serde_json::json!({"batch": {"active": 2, "admitted": 2, "shed": 1}}),
        "{dest}"
    );
    let table = d.ok(&["status", "--class", "batch"]);
    let row = table
        .lines()
        .find(|l| l.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("no row for {addr} in:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[cells.len() - 4..],
        ["batch", "2", "2", "1"],
        "{table}"
    );
    for header in ["CLASS ACTIVE", "ADMITTED", "SHED"] {
        assert!(table.contains(header), "no `{header}` in:\n{table}");
    }

    // The metrics: one series per class and destination.
    let m = d.metrics();
    let inode = own_inode().to_string();
    let series = |class: &'static str| {
        [
            ("dest", addr.to_string()),
            ("netns", inode.clone()),
            ("policy", "svc".to_owned()),
            ("class", class.to_owned()),
        ]
    };
    let get = |name: &str, class: &'static str| {
        let labels = series(class);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.get(name, &labels)
    };
    assert_eq!(get("enforcer_class_active_connections", "batch"), Some(2.0));
    assert_eq!(
        get("enforcer_class_active_connections", "checkout"),
        Some(0.0)
    );
    assert_eq!(get("enforcer_class_admitted_total", "checkout"), Some(2.0));
    assert_eq!(get("enforcer_class_admitted_total", "batch"), Some(2.0));
    assert_eq!(get("enforcer_class_shed_total", "batch"), Some(1.0));
    assert_eq!(get("enforcer_class_shed_total", "default"), Some(1.0));
    assert_eq!(get("enforcer_class_shed_total", "checkout"), Some(0.0));

    // Names no class has: bad input, named.
    refused(
        &d,
        &["class", "show", "nope"],
        &["no class named `nope`", "checkout, default, batch"],
    );
    refused(
        &d,
        &["status", "--class", "nope"],
        &["class: no class named `nope`"],
    );

    holder.kill().expect("kill");
    holder.wait().expect("wait");
}

#[test]
fn a_class_naming_a_missing_cgroup_is_refused_at_start_and_on_reload() {
    require_root();
    let cgroup = ScratchCgroup::new();
    let (first, second) = (cgroup.child(), cgroup.child());
    let pins = PinDir::new();
    let server = AcceptingServer::bind("127.0.0.1:0");
    let missing = cgroup.path().join("no-such-cgroup");
    let with_missing = format!(
        "{}[[class]]\nname = \"batch\"\npriority = \"sheddable\"\ncgroups = [\"{}\", \"{}\"]\n",
        policy(server.addr, 4),
        first.path().display(),
        missing.display()
    );

    // At the start: exit 2 naming the class and the path, nothing attached.
    let d = Daemon::configure(&cgroup, &pins, &with_missing, "", false);
    let out = enforcer(&["run", "--config", d.config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let says = format!(
        "class \"batch\": cgroups: {}: no such cgroup directory",
        missing.display()
    );
    assert!(err.contains(&says), "no `{says}` in: {err}");
    assert!(
        !cgroup.attached_programs().contains("gate_connect"),
        "attached: {}",
        cgroup.attached_programs()
    );
    assert!(!d.pin_dir.exists(), "pins left in {}", d.pin_dir.display());
    drop(d);

    // A running daemon: a reload naming it is refused, the classes stay.
    let good = format!(
        "{}{}",
        policy(server.addr, 4),
        class("batch", "sheddable", 0.0, &[&first])
    );
    let mut d = Daemon::start(&cgroup, &pins, &good);
    let running = d.kernel_classes();
    assert_eq!(running.1, [(first.id(), Priority::Sheddable)]);
    let listed = d.json(&["class", "list"]);
    d.edit_config(|text| {
        let daemon = &text[text.find("[daemon]").unwrap()..];
        format!("{with_missing}\n{daemon}")
    });
    d.hangup();
    wait_for(
        || d.log().contains("reload rejected"),
        || format!("not refused:\n{}", d.log()),
    );
    assert!(d.log().contains(&says), "{}", d.log());
    assert_eq!(d.kernel_classes(), running, "the kernel's classes stay");
    assert_eq!(d.json(&["class", "list"]), listed, "the daemon's stay");

    // A good reload applies the new classes, whole.
    d.edit_config(|text| {
        let daemon = &text[text.find("[daemon]").unwrap()..];
        format!(
            "{}{}{}\n{daemon}",
            policy(server.addr, 4),
            class("front", "high", 0.25, &[&second]),
            class("rest", "default", 0.5, &[&first]),
        )
    });
    d.hangup();
    wait_for(
        || d.json(&["class", "list"])[0]["name"] == "front",
        || format!("not reloaded:\n{}", d.log()),
    );
    let names: Vec<String> = d
        .json(&["class", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["front", "rest"],
        "a declared default class, no other"
    );
    let (table, cgroups) = d.kernel_classes();
    assert_eq!(table.share_permille, [0, 250, 500, 0]);
    assert_eq!(table.enabled, 1);
    let mut want = vec![
        (second.id(), Priority::High),
        (first.id(), Priority::Default),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(cgroups, want, "the old class's cgroup gone");

    // Without classes: off in the kernel, nothing listed, no counts shown.
    d.edit_config(|text| {
        let daemon = &text[text.find("[daemon]").unwrap()..];
        format!("{}\n{daemon}", policy(server.addr, 4))
    });
    d.hangup();
    wait_for(
        || d.json(&["class", "list"]) == serde_json::json!([]),
        || format!("not reloaded:\n{}", d.log()),
    );
    assert_eq!(d.kernel_classes(), (ClassTable::default(), Vec::new()));
    assert_eq!(
        Place::cgroup(&first).connects(server.addr, 1),
        [Ok(())],
        "a caller of a class gone"
    );
    let status = d.status_of(server.addr);
    assert!(status.get("classes").is_none(), "{status}");
    let (_, metrics) = enforcer_tests::daemon::http_get(d.metrics, "/metrics").expect("a scrape");
    assert!(!metrics.contains("enforcer_class_"), "{metrics}");
    assert!(d.ok(&["class", "list"]).contains("no classes"));
    refused(
        &d,
        &["class", "show", "batch"],
        &["no class named `batch` (no classes are configured)"],
    );
    d.terminate();
    d.wait_exit();
}

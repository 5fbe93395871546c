//! Installs that fail half-way: what they leave behind must be exactly what was
//! there before they started.

use std::{
    fs,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use enforcer::bpf::{
    BpfError, Enforcer, LoadOptions, layout,
    pins::PinDir,
    programs::{PROGRAMS, UNATTACHED},
};
use enforcer_common::policy::Policy;
use enforcer_tests::{
    bpffs,
    cgroup::ScratchCgroup,
    daemon::{Daemon, enforcer},
    exec::Place,
    fixtures, key,
    net::{self, AcceptingServer, RefusingPort},
};

/// A directory where the last program's link pin goes: the install loads every
/// program, attaches them all and pins every link before it, then fails.
fn block_last_link(pins: &PinDir) {
    pins.create().expect("pin directories");
    let last = PROGRAMS.last().expect("programs").name;
    fs::create_dir(pins.link(last)).expect("blocking directory");
}

fn unblock_last_link(pins: &PinDir) {
    fs::remove_dir(pins.link(PROGRAMS.last().expect("programs").name)).expect("unblock");
}

#[test]
fn a_failed_install_leaves_nothing_pinned_or_attached() {
    let (cgroup, bpffs) = (ScratchCgroup::new(), bpffs::PinDir::new());
    let pins = PinDir::new(bpffs.path().join("enforcer"));
    block_last_link(&pins);

    let err = Enforcer::install(&LoadOptions::default(), &pins, cgroup.path())
        .err()
        .expect("the install fails");
    assert!(matches!(err, BpfError::Pin { .. }), "{err}");

    assert_eq!(pins.existing(), Default::default(), "pins left behind");
    assert_eq!(cgroup.attached_programs(), "", "programs left attached");
    unblock_last_link(&pins);
    // With the way clear, the next install is a fresh one and attaches once.
    let (_enforcer, installed) =
        Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
    assert_eq!(installed, enforcer::bpf::Installed::Fresh);
    let lines = cgroup.attached_programs();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains("gate_connect4"))
            .count(),
        1,
        "{lines}"
    );
}

/// Whether the destination has a state in the kernel.
fn tracked(enforcer: &Enforcer, dest: SocketAddr) -> bool {
    let state = enforcer.maps().dests.get(&key(dest));
    state.expect("reading DESTS").is_some()
}

#[test]
fn a_failed_install_keeps_the_maps_of_an_earlier_incomplete_one() {
    let (cgroup, bpffs) = (ScratchCgroup::new(), bpffs::PinDir::new());
    let pins = PinDir::new(bpffs.path().join("enforcer"));
    let refusing = RefusingPort::loopback_v4();
    let dest: SocketAddr = refusing.addr;
    {
        let (mut enforcer, _) =
            Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
        fixtures::count_everything(&mut enforcer);
        Place::cgroup(&cgroup).connects(dest, 1);
        assert!(tracked(&enforcer, dest));
    }
    // An installation cut short: its maps are pinned, its links and programs not.
    for spec in &PROGRAMS {
        fs::remove_file(pins.link(spec.name)).expect("unpin link");
    }
    for spec in &UNATTACHED {
        fs::remove_file(pins.program(spec.name)).expect("unpin program");
    }
    let maps = pins.existing();
    assert!(!maps.is_empty());

    block_last_link(&pins);
    Enforcer::install(&LoadOptions::default(), &pins, cgroup.path())
        .err()
        .expect("the install fails");
    assert_eq!(pins.existing(), maps, "the earlier maps stay, nothing else");
    assert_eq!(cgroup.attached_programs(), "");

    unblock_last_link(&pins);
    let (enforcer, _) =
        Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
    assert!(
        tracked(&enforcer, dest),
        "the destination's state survived both"
    );
}

/// The layout an earlier (or later) daemon left: the marker says `version`
/// (none: a daemon older than layout versions), and the destinations' map has
/// another value layout than ours.
fn pins_of_another_layout(pin_dir: &Path, version: Option<u32>) {
    let current = pin_dir.join(format!("layout-{}", layout::VERSION));
    fs::remove_dir(&current).expect("our layout marker");
    if let Some(version) = version {
        fs::create_dir(pin_dir.join(format!("layout-{version}"))).expect("marker");
    }
    let dests = pin_dir.join("maps/DESTS");
    fs::remove_file(&dests).expect("unpin DESTS");
    enforcer_tests::must_run(
        "bpftool",
        &[
            "map",
            "create",
            dests.to_str().unwrap(),
            "type",
            "hash",
            "key",
            "32",
            "value",
            "400",
            "entries",
            "64",
            "name",
            "DESTS",
        ],
    );
}

/// The value size of the map pinned at `path`, as the kernel reports it.
fn value_size(path: &Path) -> u64 {
    let out = enforcer_tests::must_run(
        "bpftool",
        &["-j", "map", "show", "pinned", path.to_str().unwrap()],
    );
    let map: serde_json::Value = serde_json::from_str(&out).expect("bpftool json");
    map["bytes_value"].as_u64().expect("bytes_value")
}

#[test]
fn pins_of_another_layout_are_refused_never_adopted_and_uninstall_replaces_them() {
    let (cgroup, bpffs) = (ScratchCgroup::new(), bpffs::PinDir::new());
    let mut d = Daemon::start(&cgroup, &bpffs, "policy = []");
    d.kill9();
    for (version, named) in [(Some(0), "layout 0"), (None, "older than layout versions")] {
        pins_of_another_layout(&d.pin_dir, version);
        let out = enforcer(&["run", "--config", d.config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let ours = format!("layout {}", layout::VERSION);
        for says in [named, &ours, "enforcer uninstall"] {
            assert!(stderr.contains(says), "no `{says}` in: {stderr}");
        }
        // Refused before anything changed: the foreign map is as it was, and
        // our cgroup links are the earlier daemon's, adopted by nobody.
        assert_eq!(value_size(&d.pin_dir.join("maps/DESTS")), 400);
        let attached = cgroup.attached_programs();
        assert_eq!(
            attached
                .lines()
                .filter(|l| l.contains("gate_connect4"))
                .count(),
            1,
            "{attached}"
        );
        // Back to our own marker for the next round (the map stays foreign).
        let _ = fs::remove_dir(d.pin_dir.join("layout-0"));
        fs::create_dir(d.pin_dir.join(format!("layout-{}", layout::VERSION))).unwrap();
    }
    pins_of_another_layout(&d.pin_dir, Some(0));
    d.uninstall();
    assert!(!d.pin_dir.exists(), "pins left in {}", d.pin_dir.display());
    assert_eq!(cgroup.attached_programs(), "", "still attached");
    d.spawn();
    assert!(d.log().contains("attached"), "{}", d.log());
    assert_eq!(
        value_size(&d.pin_dir.join("maps/DESTS")),
        size_of::<enforcer_common::dest::DestState>() as u64
    );
}

#[test]
fn slots_of_connections_an_interrupted_installation_admitted_are_given_back() {
    let (cgroup, bpffs) = (ScratchCgroup::new(), bpffs::PinDir::new());
    let pins = PinDir::new(bpffs.path().join("enforcer"));
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let capped = Policy {
        max_connections: 2,
        ..fixtures::base_policy()
    };
    let held = |enforcer: &Enforcer| {
        enforcer
            .maps()
            .dests
            .get(&key(addr))
            .expect("read")
            .map_or(0, |d| d.breaker.active)
    };
    let mut holder = {
        let (mut enforcer, _) =
            Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
        fixtures::apply_one(&mut enforcer, addr, capped, fixtures::minute_open());
        // Two connections held open by an unprivileged process in the cgroup
        // (nobody, no capabilities): it cannot keep its slots past the
        // programs that admitted it.
        let holder = Place::cgroup(&cgroup).spawn_nobody_holding(addr, 2);
        let deadline = Instant::now() + Duration::from_secs(30);
        while held(&enforcer) != 2 {
            assert!(Instant::now() < deadline, "never held 2");
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    };
    // The installation is cut short: links gone, so its programs and their
    // socket records go; its maps stay. Then the connections end, unseen.
    for spec in &PROGRAMS {
        fs::remove_file(pins.link(spec.name)).expect("unpin link");
    }
    holder.kill().expect("kill");
    holder.wait().expect("wait");

    let (enforcer, installed) =
        Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
    assert_eq!(installed, enforcer::bpf::Installed::Fresh);
    assert_eq!(held(&enforcer), 0, "no slot left stranded");
    let results = Place::cgroup(&cgroup).run(|| {
        let open: Vec<_> = (0..2).map(|_| net::connect(addr)).collect();
        let third = net::connect(addr).err().unwrap_or(0);
        format!("{} {third}", open.iter().filter(|c| c.is_ok()).count())
    });
    assert_eq!(results, "2 111", "the cap holds exactly");
}

//! The daemon killed with SIGKILL at every named step of install, adopt, apply
//! (at a reload) and uninstall, while a client in the protected cgroup keeps
//! connecting. After each, the next start comes up by itself, exactly one
//! program of ours sits on each hook, and the bulkhead's slots are exact; a
//! reload killed half-way leaves the programs reading one whole policy set,
//! the one before it or the reloaded one.
//!
//! The steps are `enforcer::crash` points, armed through `FAILPOINTS` in a
//! daemon built with the `crash-points` feature (`cargo xtask test` builds
//! that one).

use std::{
    fs,
    net::SocketAddr,
    os::{
        fd::OwnedFd,
        unix::process::{CommandExt as _, ExitStatusExt as _},
    },
    path::Path,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{self, Daemon},
    exec::Place,
    net::{self, AcceptingServer},
    routed::{Ns, Routed},
};

const CAP: usize = 3;
const ECONNREFUSED: i32 = 111;

/// A client in the cgroup holding up to `CAP + 2` connections at a time (so
/// some are refused at the cap), releasing them, again, until `stop` (or for
/// `limit` at most).
fn load(cgroup: &ScratchCgroup, addr: SocketAddr, stop: &AtomicBool, limit: Duration) {
    let place = Place::cgroup(cgroup);
    let end = Instant::now() + limit;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        place.run(|| {
            for _ in 0..10 {
                let held: Vec<_> = (0..CAP + 2).map(|_| net::connect(addr)).collect();
                drop(held);
            }
            String::new()
        });
    }
}

/// How the step is reached once the crashing daemon runs.
enum Trigger {
    /// The start itself reaches it.
    Start,
    /// A reload of a configuration with one more policy (the start's pass is
    /// let through), which the programs read after the kill or not: the
    /// kernel never holds a part of it.
    Reload { applied: bool },
    /// `enforcer uninstall`.
    Uninstall,
}

/// The rule of the policy a [`Trigger::Reload`] adds, as the kernel has it.
const ADDED_RULE: &str = "127.0.0.9/32:9";

/// Runs the daemon on `d`'s configuration with `point` armed, reaches it, and
/// returns how the process ended.
fn run_into(d: &Daemon, point: &str, trigger: &Trigger) {
    run_into_in(d, point, trigger, None)
}

/// [`run_into`], with the daemon in the network namespace at `netns`.
fn run_into_in(d: &Daemon, point: &str, trigger: &Trigger, netns: Option<&Path>) {
    let actions = match trigger {
        Trigger::Reload { .. } => "1*off->return",
        Trigger::Start | Trigger::Uninstall => "return",
    };
    let mut command = Command::new(daemon::binary());
    command
        .args(["run", "--config"])
        .arg(&d.config)
        .env("FAILPOINTS", format!("{point}={actions}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = netns {
        let ns = OwnedFd::from(fs::File::open(path).expect("the network namespace"));
        // SAFETY: the hook only calls setns (async-signal-safe).
        unsafe { command.pre_exec(move || enforcer_tests::netns::enter_raw(&ns)) };
    }
    let mut child = command.spawn().expect("starting the daemon");
    let deadline = Instant::now() + Duration::from_secs(180);
    let ready = || daemon::http_get(d.metrics, "/readyz").is_some_and(|(code, _)| code == 200);
    if !matches!(trigger, Trigger::Start) {
        while !ready() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the daemon exited before {point} was triggered: {status}");
            }
            assert!(Instant::now() < deadline, "not ready");
            thread::sleep(Duration::from_millis(50));
        }
    }
    match trigger {
        Trigger::Start => {}
        Trigger::Reload { .. } => {
            // One more policy: a policy and a rule more in the next bank.
            d.edit_config(|text| {
                format!("[[policy]]\nname = \"added\"\nmatch = [\"{ADDED_RULE}\"]\n\n{text}")
            });
            let _ = kill_process(Pid::from_child(&child), Signal::HUP);
        }
        Trigger::Uninstall => {
            // Fails: the daemon dies half-way.
            let _ = d.run_uninstall();
        }
    }
    // Drained as it comes: a full pipe would stop the daemon before its point.
    let mut stderr = child.stderr.take().expect("piped");
    let log = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = log.join().unwrap_or_default();
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{point}: {status}, the daemon said:\n{log}"
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{point} was never reached (is the daemon built with --features crash-points?)");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon capping `addr` at `CAP` connections.
fn capped_daemon(cgroup: &ScratchCgroup, pins: &PinDir, addr: SocketAddr) -> Daemon {
    let policy =
        format!("[[policy]]\nname = \"capped\"\nmatch = [\"{addr}\"]\nmax_connections = {CAP}\n");
    Daemon::start(cgroup, pins, &policy)
}

/// Each of the programs is attached exactly once, as the kernel reports it
/// (the connect hooks hold two: the chaos faults', then the gate).
fn one_program_per_hook(cgroup: &ScratchCgroup) {
    let out = cgroup.attached_programs();
    for spec in enforcer::bpf::programs::PROGRAMS {
        let n = out
            .lines()
            .filter(|l| l.split_whitespace().last() == Some(spec.name))
            .count();
        assert_eq!(n, 1, "{}:\n{out}", spec.name);
    }
}

/// Once the load is gone no slot is held, and the cap holds exactly: `CAP`
/// connections in, the next refused, then none held again.
fn slots_are_exact(d: &Daemon, cgroup: &ScratchCgroup, addr: SocketAddr) {
    d.wait_no_slot_held(addr);
    let out = Place::cgroup(cgroup).run(|| {
        let held: Vec<_> = (0..CAP).map(|_| net::connect(addr)).collect();
        let admitted = held.iter().filter(|r| r.is_ok()).count();
        let next = net::connect(addr).err().unwrap_or(0);
        format!("{admitted} {next}")
    });
    assert_eq!(
        out,
        format!("{CAP} {ECONNREFUSED}"),
        "{}",
        d.status_of(addr)
    );
    d.wait_no_slot_held(addr);
}

#[test]
fn a_daemon_killed_at_any_step_comes_back_with_one_program_per_hook_and_exact_slots() {
    let steps = [
        ("install.maps-pinned", Trigger::Start, true),
        ("install.programs-pinned", Trigger::Start, true),
        ("install.link-pinned", Trigger::Start, true),
        ("install.links-pinned", Trigger::Start, true),
        ("start.installed", Trigger::Start, false),
        (
            "apply.bank-written",
            Trigger::Reload { applied: false },
            false,
        ),
        ("apply.flipped", Trigger::Reload { applied: true }, false),
        ("uninstall.links-removed", Trigger::Uninstall, false),
    ];
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let mut d = capped_daemon(&cgroup, &pins, addr);
    let original = fs::read_to_string(&d.config).unwrap();
    let original_rules = d.kernel_rules();
    for (point, trigger, fresh) in steps {
        fs::write(&d.config, &original).unwrap();
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            scope.spawn(|| load(&cgroup, addr, &stop, Duration::from_secs(120)));
            d.kill9();
            if fresh {
                // An install's steps: from nothing pinned (the load runs
                // unenforced meanwhile).
                d.uninstall();
            }
            run_into(&d, point, &trigger);
            if let Trigger::Reload { applied } = trigger {
                let (added, rest): (Vec<_>, Vec<_>) = d
                    .kernel_rules()
                    .into_iter()
                    .partition(|(rule, _)| rule == ADDED_RULE);
                assert_eq!(
                    (added.len(), &rest),
                    (usize::from(applied), &original_rules),
                    "{point}: the set before the reload, or the reloaded one, whole"
                );
            }
            fs::write(&d.config, &original).unwrap();
            d.spawn();
            stop.store(true, Ordering::Relaxed);
        });
        one_program_per_hook(&cgroup);
        slots_are_exact(&d, &cgroup, addr);
        eprintln!("{point}: back, one program per hook, slots exact");
    }
}

#[test]
fn a_daemon_killed_while_attaching_to_an_interface_comes_back_with_no_second_copy() {
    use aya::programs::tc::TcAttachType::{Egress, Ingress};
    let net = Routed::new();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let rest = format!(
        "[[policy]]\nname = \"guests\"\nmatch = [\"{}:80\"]\n",
        net.backend_v4
    );
    let interface = net.router_guest_if.clone();
    let keys = format!("interfaces = [\"{interface}\"]\n");
    let router = net.path(Ns::Router);
    let mut d = Daemon::start_in_netns(&cgroup, &pins, &rest, &keys, router.clone());
    let on_interface = || {
        (
            net.tc_programs(&interface, Ingress),
            net.tc_programs(&interface, Egress),
        )
    };
    // In: the packet plane and the guest faults after it; out: one.
    assert_eq!(on_interface(), (2, 1));
    for point in ["interfaces.attached", "interfaces.pinned"] {
        d.kill9();
        // The interface's pins gone: the next start attaches to it anew.
        for pin in fs::read_dir(d.pin_dir.join("interfaces")).unwrap() {
            fs::remove_dir_all(pin.unwrap().path()).unwrap();
        }
        run_into_in(&d, point, &Trigger::Start, Some(&router));
        d.spawn();
        assert_eq!(
            on_interface(),
            (2, 1),
            "{point}: never a second copy of ours"
        );
        one_program_per_hook(&cgroup);
        eprintln!("{point}: back, one program per hook");
    }
}

/// `cargo xtask soak`: `ENFORCER_SOAK_CYCLES` (1000) kill -9 and restarts
/// under load, checked each time for one program per hook, then for exact
/// slots. Not part of `cargo xtask test`: it takes minutes.
#[test]
#[ignore = "a soak: run by `cargo xtask soak`"]
fn soak_kill_9_and_restart_under_load() {
    let cycles: usize = std::env::var("ENFORCER_SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let server = AcceptingServer::bind("127.0.0.1:0");
    let addr = server.addr;
    let mut d = capped_daemon(&cgroup, &pins, addr);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2 * 3600);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        scope.spawn(|| load(&cgroup, addr, &stop, Duration::from_secs(2 * 3600)));
        for cycle in 0..cycles {
            assert!(Instant::now() < deadline, "{cycle} cycles in 2 h");
            d.kill9();
            d.spawn();
            one_program_per_hook(&cgroup);
        }
        stop.store(true, Ordering::Relaxed);
    });
    slots_are_exact(&d, &cgroup, addr);
    let took = started.elapsed();
    let status = d.status_of(addr);
    println!(
        "soak: {cycles} kill -9/restart cycles under load in {:.0} s ({:.0} ms each): \
         one program per hook every time, slots exact after ({} connects admitted, {} refused at the cap)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / cycles as f64,
        status["attempts"],
        status["rejections"]["bulkhead"],
    );
}

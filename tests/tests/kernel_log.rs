//! Kernel logs (`daemon.kernel_log`): the programs' rare paths reach the
//! daemon's log through aya-log when the operator turned them on, whether the
//! daemon loaded the programs or adopted them, and never when it did not.

use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    bpffs::PinDir, cgroup::ScratchCgroup, daemon::Daemon, exec::Place, net::RefusingPort,
    require_root,
};

/// What the gate logs when the destination map has no room for a new one.
const MAP_FULL: &str = "destination map full";

/// A destination map of 4 and a policy over 127.77.0.0/16 on a refusing port
/// that never trips (every refused destination holds its entry).
fn daemon(kernel_log: bool) -> (ScratchCgroup, PinDir, RefusingPort, Daemon) {
    Daemon::never_tripping(
        "few",
        "127.77.0.0/16",
        &format!("dests_capacity = 4\nkernel_log = {kernel_log}\n"),
    )
}

/// Refused connects from the protected cgroup to `n` destinations, from
/// 127.77.`block`.1 on.
fn flood(cgroup: &ScratchCgroup, port: u16, block: u8, n: u8) {
    Place::cgroup(cgroup).run(|| {
        for lo in 1..=n {
            let ip = Ipv4Addr::new(127, 77, block, lo);
            let _ = TcpStream::connect(SocketAddrV4::new(ip, port));
        }
        String::new()
    });
}

fn dest_map_full(d: &Daemon) -> f64 {
    d.metrics()
        .get("enforcer_kernel_dest_map_full_total", &[])
        .unwrap_or(0.0)
}

/// Polls `check` every 100 ms until it holds; fails with `what` and the
/// daemon's log after 60 s.
fn eventually(d: &Daemon, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not after 60 s\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_destination_map_is_logged_when_kernel_logs_are_on() {
    require_root();
    let (cgroup, _pins, refusing, d) = daemon(true);
    assert_eq!(d.kernel_config().kernel_log, 1);
    assert!(
        d.log()
            .contains("daemon.kernel_log: the programs' rare paths"),
        "{}",
        d.log()
    );
    flood(&cgroup, refusing.addr.port(), 0, 16);
    eventually(&d, "the kernel's map-full line", || {
        d.log().contains(MAP_FULL)
    });
    let log = d.log();
    let line = log.lines().find(|l| l.contains(MAP_FULL)).unwrap();
    assert!(
        line.contains("::ffff:127.77.0.") && line.contains(&format!("]:{}", refusing.addr.port())),
        "the line names the destination: {line}"
    );
    assert!(dest_map_full(&d) >= 1.0);
}

#[test]
fn a_daemon_that_adopts_the_programs_reads_their_logs() {
    require_root();
    let (cgroup, _pins, refusing, mut d) = daemon(true);
    // No chance to clean up: the next daemon adopts the pinned programs and
    // must find their log buffer again.
    d.kill9();
    d.spawn();
    assert!(d.log().contains("adopted"), "{}", d.log());
    flood(&cgroup, refusing.addr.port(), 1, 16);
    eventually(&d, "the adopted programs' map-full line", || {
        d.log().contains(MAP_FULL)
    });
}

#[test]
fn nothing_is_logged_when_kernel_logs_are_off() {
    require_root();
    let (cgroup, _pins, refusing, d) = daemon(false);
    assert_eq!(d.kernel_config().kernel_log, 0);
    flood(&cgroup, refusing.addr.port(), 0, 16);
    // The path was taken (counted), and logged nowhere.
    eventually(&d, "the map-full count", || dest_map_full(&d) >= 1.0);
    let log = d.log();
    assert!(!log.contains(MAP_FULL), "{log}");
    assert!(!log.contains("daemon.kernel_log"), "{log}");
}

//! The harness every privileged integration test uses: scratch cgroups, network
//! namespaces with a veth pair, a private bpffs, and running commands or closures
//! inside them. Everything a test creates is removed on drop, also when the test
//! panics.
//!
//! Privileged tests never skip: without root they fail, saying why.

pub mod bpffs;
pub mod capacity;
pub mod cgroup;
pub mod cpus;
pub mod daemon;
pub mod exec;
pub mod fixtures;
pub mod frames;
pub mod net;
pub mod netns;
pub mod routed;
pub mod tc;
pub mod wait;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use enforcer_common::dest::DestKey;

/// The key of the destination `addr` as seen from the test's own network
/// namespace (where children in a scratch cgroup alone connect from).
pub fn key(addr: SocketAddr) -> DestKey {
    let netns = enforcer::netns::own_cookie().expect("SO_NETNS_COOKIE");
    DestKey::from(addr).in_netns(netns)
}

/// The key of the destination `addr` as seen from inside `ns`.
pub fn key_in(ns: &netns::NetNs, addr: SocketAddr) -> DestKey {
    let fd = ns.open();
    let netns = std::thread::spawn(move || {
        netns::enter_raw(&fd).expect("setns");
        enforcer::netns::own_cookie().expect("SO_NETNS_COOKIE")
    })
    .join()
    .expect("reading the namespace's cookie");
    DestKey::from(addr).in_netns(netns)
}

/// Fails the test unless it runs as root. Privileged tests never skip silently.
pub fn require_root() {
    let euid = rustix::process::geteuid().as_raw();
    assert_eq!(
        euid, 0,
        "this privileged test needs root (cgroups, BPF, network namespaces): \
         run `cargo xtask test` as root"
    );
}

/// A name unique to this process and call, for things the kernel names globally
/// (cgroups, namespaces, interfaces). At most 11 characters so that derived
/// interface names fit in IFNAMSIZ.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id() % 0xffff)
}

/// Runs a command to completion and panics with its output if it fails.
pub fn must_run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many of `n` draws with chance `p` may land: five standard deviations
/// either side of `n·p`. A correct kernel falls outside about once in two
/// million runs (a 99.9 % interval failed a CI run with 531 of 2 000 at
/// 30 %), and at 2 000 draws of 30 % the range still leaves out 24 % and 36 %.
pub fn draws_within(n: u64, p: f64) -> std::ops::RangeInclusive<u64> {
    let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    (mean - 5.0 * sd).floor() as u64..=(mean + 5.0 * sd).ceil() as u64
}

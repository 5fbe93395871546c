//! The controller loop: everything slow that the kernel leaves to the daemon.
//!
//! Every tick: re-jitter backoff tables that are due (so destinations tripped
//! together do not come back together), and start a healer for each open
//! destination of a policy that asks for it: a task that probes it with a plain
//! TCP connect (the daemon's own connects bypass the gate) on its own jittered
//! schedule and reports each result to the kernel, which moves the destination
//! to HALF_OPEN and counts the probe. Every second: expire timed
//! overrides. Every scan interval: walk the whole destination map once, to
//! forget idle CLOSED destinations and to re-learn which ones are open (the
//! event reader keeps that set current in between, so ticks never walk a map of
//! 100 000 destinations). Every sweep interval: expire the packet plane's
//! flows past their timeouts ([`super::flows`]).

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use enforcer_common::{breaker::state, control::kind, dest::DestKey};

use super::{Shared, events::daemon_event, lock};
use crate::{bpf::Applied, clock::monotonic_ns};

const TICK: Duration = Duration::from_millis(100);
const OVERRIDE_CHECK: Duration = Duration::from_secs(1);

/// How often the whole destination map is walked: a quarter of `gc_idle`, within
/// 1 s..30 s.
fn scan_interval(gc_idle: Duration) -> Duration {
    (gc_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

pub async fn run(shared: Shared) {
    let mut tick = tokio::time::interval(TICK);
    let (mut overrides_at, mut scanned_at) = (Instant::now(), None::<Instant>);
    let mut swept_at = Instant::now();
    loop {
        tick.tick().await;
        let mut d = lock(&shared);
        let scan = scan_interval(d.config.daemon.gc_idle);
        let timeouts: Vec<Duration> = d
            .policies
            .iter()
            .filter_map(|p| p.connect_timeout)
            .collect();
        let sweep = super::flows::sweep_interval(d.config.daemon.flow_syn_timeout, &timeouts);
        let result = rejitter(&mut d)
            .and_then(|()| {
                if overrides_at.elapsed() < OVERRIDE_CHECK {
                    return Ok(());
                }
                overrides_at = Instant::now();
                expire_overrides(&mut d)
            })
            .and_then(|()| {
                if scanned_at.is_some_and(|at| at.elapsed() < scan) {
                    return Ok(());
                }
                scanned_at = Some(Instant::now());
                scan_dests(&mut d)
            })
            .and_then(|()| {
                if swept_at.elapsed() < sweep {
                    return Ok(());
                }
                swept_at = Instant::now();
                super::flows::sweep(&mut d)
            });
        if let Err(e) = result {
            eprintln!("enforcer: controller: {e}");
        }
        start_healers(&shared, &mut d);
    }
}

/// Draws new backoff tables for the policies whose `rejitter` has come.
fn rejitter(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
    for i in 0..d.policies.len() {
        if d.jittered_at
            .get(i)
            .is_some_and(|at| at.elapsed() >= d.policies[i].rejitter)
        {
            let backoff = d.policies[i].backoff(|| d.jitter.unit());
            d.enforcer.set_backoff(d.ids[i], &backoff)?;
            d.jittered_at[i] = Instant::now();
        }
    }
    Ok(())
}

fn expire_overrides(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
    let now = monotonic_ns();
    for (key, o) in d.enforcer.overrides()? {
        if !o.active(now) {
            let dest = key.socket_addr();
            d.enforcer.remove_override(dest)?;
            d.publish(daemon_event(
                "override_expired",
                Some(&dest.to_string()),
                "",
            ));
        }
    }
    Ok(())
}

/// One walk of the destination map: garbage collection, and the set of
/// destinations that are not CLOSED.
fn scan_dests(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
    let now = monotonic_ns();
    let idle_ns = d.config.daemon.gc_idle.as_nanos() as u64;
    let mut open = HashSet::new();
    for (key, s) in d.enforcer.dests()? {
        if s.breaker.state != state::CLOSED {
            open.insert(key);
            continue;
        }
        let idle = now.saturating_sub(s.last_attempt_ns) >= idle_ns;
        // The kernel re-checks (CLOSED, no slot) under the destination's lock.
        if idle && s.forgettable() {
            d.enforcer.command(kind::FORGET, &key)?;
        }
    }
    d.open = open;
    Ok(())
}

/// The healing interval of a destination that is open and whose policy heals.
fn healing_interval(d: &super::Daemon, key: &DestKey) -> Option<Duration> {
    let s = d.enforcer.dest(key).ok().flatten()?;
    if s.breaker.state == state::CLOSED {
        return None;
    }
    d.policy(s.policy_id)
        .filter(|p| p.heal)
        .map(|p| p.heal_interval)
}

/// One healer per open destination whose policy heals.
pub fn start_healers(shared: &Shared, d: &mut super::Daemon) {
    let keys: Vec<DestKey> = d
        .open
        .iter()
        .filter(|k| !d.healers.contains(*k))
        .copied()
        .collect();
    for key in keys {
        if healing_interval(d, &key).is_some() {
            d.healers.insert(key);
            tokio::spawn(heal(shared.clone(), key));
        }
    }
}

/// Probes one destination until it is CLOSED (or its policy stops healing):
/// every 80–100 % of the interval (spread apart, never later than it), each
/// result reported to the kernel.
async fn heal(shared: Shared, key: DestKey) {
    loop {
        let wait = {
            let mut d = lock(&shared);
            let Some(interval) = healing_interval(&d, &key) else {
                d.healers.remove(&key);
                return;
            };
            interval.mul_f64(0.8 + 0.2 * d.jitter.unit())
        };
        tokio::time::sleep(wait).await;
        let Some(interval) = healing_interval(&lock(&shared), &key) else {
            continue;
        };
        let reached = probe(key.socket_addr(), interval.min(Duration::from_secs(2))).await;
        let mut d = lock(&shared);
        let command = if reached {
            kind::HEAL_PROBE_OK
        } else {
            kind::HEAL_PROBE_FAILED
        };
        match d.enforcer.command(command, &key) {
            Ok(Applied::Applied) => {
                let what = if reached {
                    "heal_probe_ok"
                } else {
                    "heal_probe_failed"
                };
                d.publish(daemon_event(
                    what,
                    Some(&key.socket_addr().to_string()),
                    "healing probe",
                ));
            }
            Ok(_) => {}
            Err(e) => eprintln!("enforcer: healing {}: {e}", key.socket_addr()),
        }
    }
}

/// Whether a TCP connect to `addr` completes within `timeout`.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

//! The controller loop: everything slow that the kernel leaves to the daemon.
//!
//! Every tick: re-jitter backoff tables that are due (so destinations tripped
//! together do not come back together), expire timed overrides, forget idle
//! CLOSED destinations, and heal: probe OPEN destinations of policies that ask
//! for it with a plain TCP connect (the daemon's own connects bypass the gate)
//! and report each result to the kernel, which moves the destination to
//! HALF_OPEN and counts the probe.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use enforcer_common::{breaker::state, control::kind, dest::DestKey};

use super::{Shared, events::daemon_event, lock};
use crate::{bpf::Applied, clock::monotonic_ns};

const TICK: Duration = Duration::from_millis(100);

pub async fn run(shared: Shared) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let probes = {
            let mut d = lock(&shared);
            if let Err(e) = housekeeping(&mut d) {
                eprintln!("enforcer: controller: {e}");
            }
            due_heal_probes(&mut d)
        };
        for (key, timeout) in probes {
            let shared = shared.clone();
            tokio::spawn(async move {
                let reached = probe(key.socket_addr(), timeout).await;
                let mut d = lock(&shared);
                let command = if reached {
                    kind::HEAL_PROBE_OK
                } else {
                    kind::HEAL_PROBE_FAILED
                };
                match d.enforcer.command(command, &key) {
                    Ok(Applied::Applied) => {
                        let dest = key.socket_addr().to_string();
                        let what = if reached {
                            "heal_probe_ok"
                        } else {
                            "heal_probe_failed"
                        };
                        d.publish(daemon_event(what, Some(&dest), "healing probe"));
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("enforcer: healing {}: {e}", key.socket_addr()),
                }
            });
        }
    }
}

/// Re-jitter, override expiry, garbage collection.
fn housekeeping(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
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
    let idle_ns = d.config.daemon.gc_idle.as_nanos() as u64;
    for (key, s) in d.enforcer.dests()? {
        let idle = now.saturating_sub(s.last_attempt_ns) >= idle_ns;
        // The kernel re-checks (CLOSED, no slot) under the destination's lock.
        if idle && s.forgettable() && d.enforcer.command(kind::FORGET, &key)? == Applied::Applied {
            d.next_heal.remove(&key);
        }
    }
    Ok(())
}

/// Destinations whose healing probe is due now, with the probe's timeout.
fn due_heal_probes(d: &mut super::Daemon) -> Vec<(DestKey, Duration)> {
    let Ok(dests) = d.enforcer.dests() else {
        return Vec::new();
    };
    let now = Instant::now();
    let mut due = Vec::new();
    let mut healing = std::collections::HashSet::new();
    for (key, s) in dests {
        let Some(policy) = d.policy(s.policy_id) else {
            continue;
        };
        if !policy.heal || s.breaker.state == state::CLOSED {
            continue;
        }
        healing.insert(key);
        let interval = policy.heal_interval;
        // Spread probes over ±20% of the interval.
        let jittered = interval.mul_f64(0.8 + 0.4 * d.jitter.unit());
        let next = d.next_heal.entry(key).or_insert(now + jittered);
        if now >= *next {
            *next = now + jittered;
            due.push((key, interval.min(Duration::from_secs(2))));
        }
    }
    d.next_heal.retain(|k, _| healing.contains(k));
    due
}

/// Whether a TCP connect to `addr` completes within `timeout`.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

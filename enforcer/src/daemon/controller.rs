//! The controller loop: everything slow that the kernel leaves to the daemon.
//!
//! Every tick: re-jitter backoff tables that are due (so destinations tripped
//! together do not come back together), and start healers for open
//! destinations of policies that ask for it ([`super::heal`]). Every second:
//! expire timed overrides. When a scan is due: walk the whole destination map
//! once ([`super::scan`]: garbage collection, eviction under pressure, count
//! reconciliation, the set of open destinations). Every sweep interval: expire
//! the packet plane's flows past their timeouts ([`super::flows`]).

use std::time::{Duration, Instant};

use super::{Shared, heal::start_healers, lock, notices::daemon_event, scan::Scanner};
use crate::clock::monotonic_ns;

const TICK: Duration = Duration::from_millis(100);
const OVERRIDE_CHECK: Duration = Duration::from_secs(1);

pub async fn run(shared: Shared) {
    let mut tick = tokio::time::interval(TICK);
    let (mut overrides_at, mut scanner) = (Instant::now(), Scanner::default());
    let mut swept_at = Instant::now();
    loop {
        tick.tick().await;
        let mut d = lock(&shared);
        let timeouts: Vec<Duration> = d
            .policies
            .iter()
            .filter_map(|p| p.spec.connect_timeout)
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
                if !scanner.due(&d) {
                    return Ok(());
                }
                scanner.scan(&mut d)
            })
            .and_then(|()| {
                if swept_at.elapsed() < sweep {
                    return Ok(());
                }
                swept_at = Instant::now();
                super::flows::sweep(&mut d)
            });
        if let Err(e) = result {
            tracing::error!("controller: {e}");
        }
        start_healers(&shared, &mut d);
    }
}

/// Draws new backoff tables for the policies whose `rejitter` has come.
fn rejitter(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
    let super::Daemon {
        policies,
        enforcer,
        jitter,
        ..
    } = d;
    for p in policies.iter_mut() {
        if p.jittered_at.elapsed() >= p.spec.rejitter {
            let maps = enforcer.maps_mut();
            let backoff = p.spec.backoff_row(|| jitter.unit());
            maps.policies.set_backoff(&maps.config, p.id, &backoff)?;
            p.jittered_at = Instant::now();
        }
    }
    Ok(())
}

fn expire_overrides(d: &mut super::Daemon) -> Result<(), crate::bpf::BpfError> {
    let now = monotonic_ns();
    for (key, o) in d.enforcer.maps().overrides.all()? {
        if !o.active(now) {
            let dest = key.socket_addr();
            d.enforcer.maps_mut().overrides.remove(dest)?;
            d.publish(daemon_event("override_expired", Some(dest), ""));
        }
    }
    Ok(())
}

//! JSON views of the daemon's state, shared by the control API (and so the CLI)
//! and kept stable: they are what scripts read.
//!
//! A destination is an address and port in a network namespace: `dest` is the
//! address, `netns` the namespace's inode (`ip netns identify`, `lsns -t net`),
//! `netns_name` its name under /run/netns, and `netns_status` one of `host`
//! (the daemon's own), `present`, `gone` (no process or name holds it any more)
//! or `unknown` (not found yet; `netns` is null).

use std::{collections::HashMap, net::SocketAddr};

use enforcer_common::{
    breaker::state,
    dest::{DestKey, DestState},
    overrides::{Override, kind},
};
use serde_json::{Value, json};

use super::Daemon;
use crate::{
    bpf::BpfError,
    clock::monotonic_ns,
    config::{PolicySpec, values::Dur},
};

pub fn state_name(s: u32) -> &'static str {
    match s {
        state::CLOSED => "closed",
        state::OPEN => "open",
        state::HALF_OPEN => "half_open",
        _ => "unknown",
    }
}

pub fn override_name(o: &Override) -> &'static str {
    match o.kind {
        kind::FORCED_OPEN => "forced_open",
        kind::DISABLED => "disabled",
        _ => "unknown",
    }
}

/// Milliseconds from now until a monotonic instant (None if past or unset).
fn ms_until(at_ns: u64, now: u64) -> Option<u64> {
    (at_ns > now).then(|| (at_ns - now) / 1_000_000)
}

/// One destination.
pub fn dest(
    d: &Daemon,
    key: &DestKey,
    s: &DestState,
    overrides: &HashMap<DestKey, Override>,
    now: u64,
) -> Value {
    let policy = d.policy(s.policy_id);
    let b = &s.breaker;
    let c = &s.counters;
    // Overrides are keyed by address alone: they apply in every namespace.
    let o = overrides.get(&key.in_netns(0)).filter(|o| o.active(now));
    let netns = d.namespaces.label(key.netns);
    json!({
        "dest": key.socket_addr().to_string(),
        "netns": netns.inode,
        "netns_name": netns.name,
        "netns_status": netns.status,
        "policy": d.policy_name(s.policy_id),
        "state": state_name(b.state),
        "active": b.active,
        "pending": b.pending,
        "max_connections": policy.and_then(|p| p.max_connections),
        "attempts": c.attempts,
        "successes": c.successes,
        "slow": c.slow,
        "abandoned": c.abandoned,
        "local_errors": c.local_errors,
        "failures": {
            "refused": c.failures_refused,
            "timeout": c.failures_timeout,
            "unreachable": c.failures_unreachable,
        },
        "rejections": { "circuit": c.rejected_circuit, "bulkhead": c.rejected_bulkhead },
        "would_reject": { "circuit": c.would_reject_circuit, "bulkhead": c.would_reject_bulkhead },
        "probes": c.probes,
        "probes_reclaimed": c.probes_reclaimed,
        "trips": c.trips,
        "trip_level": b.trips,
        "guard_refusals": c.guard_refusals,
        "open_for_ms": if b.state == state::OPEN { ms_until(b.open_until_ns, now) } else { None },
        "override": o.map(override_name),
        "override_for_ms": o.and_then(|o| ms_until(o.until_ns, now)),
    })
}

/// Which destinations `status` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// This address and port, in whichever namespace.
    pub dest: Option<SocketAddr>,
    /// In one of these namespaces (cookies).
    pub netns: Option<Vec<u64>>,
    pub policy: Option<String>,
}

impl Filter {
    fn admits(&self, d: &Daemon, key: &DestKey, s: &DestState) -> bool {
        self.dest
            .is_none_or(|a| DestKey::from(a).in_netns(key.netns) == *key)
            && self.netns.as_ref().is_none_or(|n| n.contains(&key.netns))
            && self
                .policy
                .as_deref()
                .is_none_or(|p| p == d.policy_name(s.policy_id))
    }
}

/// The whole status: global switch, destinations (most interesting first).
pub fn status(d: &Daemon, filter: &Filter) -> Result<Value, BpfError> {
    let now = monotonic_ns();
    let overrides: HashMap<DestKey, Override> = d.enforcer.overrides()?.into_iter().collect();
    let mut dests = d.enforcer.dests()?;
    dests.retain(|(k, s)| filter.admits(d, k, s));
    // Open first, then by failures, then by address and namespace.
    dests.sort_by_key(|(k, s)| {
        (
            s.breaker.state == state::CLOSED,
            u64::MAX - s.counters.failures(),
            k.socket_addr(),
            k.netns,
        )
    });
    let config = d.enforcer.config()?;
    Ok(json!({
        "paused": config.paused != 0,
        "generation": config.generation,
        "destinations": dests.iter().map(|(k, s)| dest(d, k, s, &overrides, now)).collect::<Vec<_>>(),
    }))
}

/// One policy, with its settings and shared counts.
pub fn policy(d: &Daemon, index: usize, p: &PolicySpec) -> Result<Value, BpfError> {
    let id = d.ids[index];
    let stats = d.enforcer.policy_stats(id)?;
    let dur = |v: std::time::Duration| Dur(v).to_string();
    Ok(json!({
        "name": p.name,
        "id": id,
        "match": p.rules.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "cgroup": p.cgroup.as_ref().map(|c| c.display().to_string()),
        "mode": p.mode,
        "failure_threshold": p.failure_threshold,
        "failure_rate": p.failure_rate,
        "min_attempts": p.min_attempts,
        "window": dur(p.window),
        "slow_connect": p.slow_connect.map(dur),
        "connect_timeout": p.connect_timeout.map(dur),
        "open": dur(p.open),
        "open_max": dur(p.open_max),
        "jitter": p.jitter,
        "rejitter": dur(p.rejitter),
        "half_open_probes": p.half_open_probes,
        "close_after": p.close_after,
        "max_connections": p.max_connections,
        "max_pending": p.max_pending,
        "errno": p.errno.to_string(),
        "max_open_percent": p.max_open_percent,
        "trip_decay": dur(p.trip_decay),
        "heal": p.heal,
        "heal_interval": dur(p.heal_interval),
        "tracked": stats.tracked,
        "open_destinations": stats.open,
        "guard_refusals": stats.guard_refusals,
    }))
}

pub fn policies(d: &Daemon) -> Result<Value, BpfError> {
    let list: Result<Vec<Value>, BpfError> = d
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| policy(d, i, p))
        .collect();
    Ok(Value::Array(list?))
}

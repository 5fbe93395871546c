//! The packet plane's sweep: the kernel sees a flow's packets, not the time
//! passing without them, so the daemon walks the flow table and has the kernel
//! end every flow past its SYN timeout (a timeout failure) or its idle timeout
//! (its slot released). The kernel decides again, under the destination's
//! lock, against the flow as it is by then.

use std::{collections::HashMap, time::Duration};

use super::Daemon;
use crate::{
    bpf::{Applied, BpfError},
    clock::monotonic_ns,
};

/// How often flows are swept: a quarter of the shortest SYN timeout in force
/// (the daemon's, or a policy's connect timeout), within 100 ms..1 s, so a
/// timeout is counted at most a quarter late.
pub fn sweep_interval(flow_syn_timeout: Duration, connect_timeouts: &[Duration]) -> Duration {
    let shortest = connect_timeouts
        .iter()
        .copied()
        .fold(flow_syn_timeout, Duration::min);
    (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// One walk of the flow table; how many flows the kernel expired.
pub fn sweep(d: &mut Daemon) -> Result<usize, BpfError> {
    let now = monotonic_ns();
    let ms = 1_000_000u64;
    let config = d.enforcer.config()?;
    let idle_ns = u64::from(config.flow_idle_timeout_ms) * ms;
    let mut syn_timeouts: HashMap<u32, u64> = HashMap::new();
    let mut expired = 0;
    for (key, flow) in d.enforcer.flows()? {
        let policy_id = flow.sock.policy_id;
        let syn_ns = match syn_timeouts.get(&policy_id) {
            Some(ns) => *ns,
            None => {
                let policy_ms = d
                    .enforcer
                    .policy(policy_id)
                    .map_or(0, |p| p.connect_timeout_ms);
                let chosen = if policy_ms != 0 {
                    policy_ms
                } else {
                    config.flow_syn_timeout_ms
                };
                let ns = u64::from(chosen) * ms;
                syn_timeouts.insert(policy_id, ns);
                ns
            }
        };
        if flow.expiry(now, syn_ns, idle_ns).is_some()
            && d.enforcer.expire_flow(&key)? == Applied::Applied
        {
            expired += 1;
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_timeout_sets_the_pace() {
        let s = Duration::from_secs;
        assert_eq!(sweep_interval(s(10), &[]), s(1));
        assert_eq!(sweep_interval(s(10), &[s(2)]), Duration::from_millis(500));
        assert_eq!(
            sweep_interval(s(10), &[Duration::from_millis(200)]),
            Duration::from_millis(100)
        );
    }
}

//! The packet plane's sweep: the kernel sees a flow's packets, not the time
//! passing without them, so the daemon walks the flow table and has the kernel
//! end every flow past its SYN timeout (a timeout failure if the guest sent
//! its SYN again, else abandoned) or its idle timeout (its slot released).
//! Both decide with `Flow::expiry`, which knows the pauses from the config: a
//! flow that lived through one is never failed, and sweeping goes on while
//! paused, so every slot comes back. The kernel decides again, under the
//! destination's lock, against the flow as it is by then.

use std::{collections::HashMap, time::Duration};

use enforcer_common::{
    control::{Command, Kind},
    flow::{Timeouts, Watch},
};

use super::Daemon;
use crate::{bpf::BpfError, clock::monotonic_ns};

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

/// One walk of the flow table, which also counts its flows.
pub fn sweep(d: &mut Daemon) -> Result<(), BpfError> {
    let now = monotonic_ns();
    let maps = d.enforcer.maps();
    let config = maps.config.get()?;
    let watch = Watch::of(&config);
    let mut policy_timeouts: HashMap<u32, u32> = HashMap::new();
    let flows = maps.flows.all()?;
    d.flows_tracked = flows.len() as u64;
    for (key, flow) in flows {
        let id = flow.sock.policy_id;
        let policy_ms = *policy_timeouts.entry(id).or_insert_with(|| {
            let policy = maps.policies.policy(&maps.config, id);
            policy.map_or(0, |p| p.connect_timeout_ms)
        });
        let timeouts = Timeouts::of(&config, policy_ms);
        if flow.expiry(now, timeouts, watch).is_some() {
            // Checked again in the kernel against the flow as it is then.
            let expire = Command::on_flow(Kind::FlowExpire, key);
            d.enforcer.control().run(&expire)?;
        }
    }
    Ok(())
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

//! The cgroup's packet programs (`sock_out`, `sock_in`) run for every packet
//! of every socket in the cgroup, so they are attached only while a running
//! feature reads them: a policy that learns from response latency, a chaos
//! fault that drops SYNs. Attached before what needs them starts, detached
//! once it is over; what the kernel has armed decides, so a restart finds
//! the same answer.

use enforcer_common::chaos;

use super::state::Daemon;
use crate::bpf::{BpfError, SkbHooks};

/// Attaches or detaches the packet programs to match the running policies
/// and the armed chaos faults, counting faults about to be armed when
/// `arming_syn_faults`.
pub fn sync(d: &mut Daemon, arming_syn_faults: bool) -> Result<(), BpfError> {
    let response = d.policies.iter().any(|p| p.spec.measures_responses());
    let wanted = SkbHooks::wanted(response, arming_syn_faults || syn_faults_armed(d)?);
    let before = d.enforcer.skb_hooks();
    if wanted != before {
        d.enforcer.set_skb_hooks(wanted)?;
        tracing::info!(
            egress = wanted.egress,
            ingress = wanted.ingress,
            "the cgroup's packet programs follow what runs (response latency: {response})"
        );
    }
    Ok(())
}

/// As [`sync`] where a failure leaves what runs as it is: says so, and the
/// next change tries again.
pub fn sync_or_warn(d: &mut Daemon) {
    if let Err(e) = sync(d, false) {
        tracing::warn!("attaching or detaching the cgroup's packet programs: {e}");
    }
}

/// Whether a fault that drops SYNs is armed in the kernel.
fn syn_faults_armed(d: &Daemon) -> Result<bool, BpfError> {
    let maps = d.enforcer.maps();
    let armed = maps.config.get()?.chaos_armed;
    for slot in (0..chaos::SLOTS).filter(|s| armed & chaos::bit(*s) != 0) {
        if chaos::drops_syns(maps.chaos.get(slot)?.kind) {
            return Ok(true);
        }
    }
    Ok(false)
}

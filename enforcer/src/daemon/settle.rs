//! Between the start and serving: what needs more than the capabilities the
//! daemon keeps, then dropping the rest.

use anyhow::Context as _;

use super::{Shared, lock};
use crate::privilege::{self, Feature};

/// After the start: does what needs more than the capabilities kept (BPF
/// run-time statistics on), then drops every capability the daemon no
/// longer needs ([`privilege`]) and says what it kept. Call it before any
/// other thread starts: capabilities are per thread, and threads started
/// later inherit the reduced sets.
pub fn settle(shared: &Shared) -> anyhow::Result<()> {
    let mut d = lock(shared);
    if d.privilege.has(Feature::RunStats) {
        match crate::bpf::enable_run_stats() {
            Ok(fd) => d.run_stats = Some(fd),
            Err(e) => tracing::warn!("daemon.bpf_run_stats: statistics unavailable: {e}"),
        }
    }
    for line in privilege::describe(&d.privilege) {
        tracing::info!("{line}");
    }
    let dropped = privilege::drop_to(d.privilege.keep).context("dropping capabilities")?;
    if !dropped.bounding_left.is_empty() {
        tracing::warn!(
            "left in the bounding set for want of CAP_SETPCAP (no exec can regain them: no_new_privs is set): {}",
            privilege::Names(dropped.bounding_left)
        );
    }
    Ok(())
}

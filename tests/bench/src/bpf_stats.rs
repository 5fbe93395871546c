//! Where the added time goes: the kernel's own count and run time of each
//! program attached to a cgroup (`BPF_ENABLE_STATS`).
//!
//! Run-time accounting costs two clock reads per program run, so it is switched
//! on only for a separate pass after the timed rounds, never during them, and
//! only while the handle [`enable`] returns is held (nothing is left switched on).

use std::{collections::BTreeMap, os::fd::OwnedFd, path::Path};

use aya::{
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use serde::Serialize;

/// Keeps run-time statistics on for as long as it lives.
pub struct Enabled(#[expect(dead_code, reason = "held, not read")] OwnedFd);

pub fn enable() -> Enabled {
    Enabled(enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (kernel ≥ 5.8)"))
}

/// IDs of the programs attached directly to `cgroup` at the enforcer's hooks.
pub fn attached_programs(cgroup: &Path) -> Vec<u32> {
    enforcer::bpf::attached_programs(cgroup)
        .unwrap_or_else(|e| panic!("BPF_PROG_QUERY on {}: {e}", cgroup.display()))
}

/// The kernel keeps 15 bytes of a program's name (`track_sock_rele`): the
/// enforcer's full name when it is one of its programs.
fn full_name(kernel_name: &str) -> String {
    enforcer::bpf::programs::PROGRAMS
        .iter()
        .find(|spec| spec.name.starts_with(kernel_name))
        .map_or(kernel_name, |spec| spec.name)
        .to_owned()
}

/// Each program's name, run count and run time, by id.
pub fn snapshot(ids: &[u32]) -> BTreeMap<u32, (String, u64, u64)> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| ids.contains(&info.id()))
        .map(|info| {
            let name = full_name(info.name_as_str().unwrap_or("?"));
            let ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
            (info.id(), (name, info.run_count(), ns))
        })
        .collect()
}

/// One program's share of a connect.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramCost {
    pub program: String,
    pub runs_per_connect: f64,
    pub ns_per_run: u64,
    pub ns_per_connect: u64,
}

/// What each program cost per connect between two snapshots over `connects`.
pub fn costs(
    before: &BTreeMap<u32, (String, u64, u64)>,
    after: &BTreeMap<u32, (String, u64, u64)>,
    connects: usize,
) -> Vec<ProgramCost> {
    after
        .iter()
        .map(|(id, (name, runs, ns))| {
            let (_, runs0, ns0) = before.get(id).cloned().unwrap_or_default();
            let (runs, ns) = (runs - runs0, ns - ns0);
            ProgramCost {
                program: name.clone(),
                runs_per_connect: runs as f64 / connects as f64,
                ns_per_run: ns.checked_div(runs).unwrap_or(0),
                ns_per_connect: ns / connects as u64,
            }
        })
        .collect()
}

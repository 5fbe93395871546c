//! Where the added time goes: the kernel's own count and run time of each
//! program attached to a cgroup (`BPF_ENABLE_STATS`).
//!
//! Run-time accounting costs two clock reads per program run, so it is switched
//! on only for a separate pass after the timed rounds, never during them, and
//! only while the handle [`enable`] returns is held (nothing is left switched on).

use std::{collections::BTreeMap, fs::File, os::fd::AsRawFd, os::fd::OwnedFd, path::Path};

use aya::{
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use serde::Serialize;

/// `BPF_PROG_QUERY` (UAPI `enum bpf_cmd`).
const BPF_PROG_QUERY: libc::c_long = 16;
/// The cgroup hooks the enforcer attaches to (UAPI `enum bpf_attach_type`):
/// sock_ops, inet4/inet6 connect, inet sock_release.
const HOOKS: [u32; 4] = [3, 10, 11, 34];

/// Keeps run-time statistics on for as long as it lives.
pub struct Enabled(#[expect(dead_code, reason = "held, not read")] OwnedFd);

pub fn enable() -> Enabled {
    Enabled(enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (kernel ≥ 5.8)"))
}

/// The query part of `union bpf_attr` (UAPI), up to the fields this reads.
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// IDs of the programs attached directly to `cgroup` at the enforcer's hooks.
pub fn attached_programs(cgroup: &Path) -> Vec<u32> {
    let dir = File::open(cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
    let mut ids = Vec::new();
    for attach_type in HOOKS {
        let mut buf = [0u32; 64];
        let mut attr = ProgQuery {
            target_fd: dir.as_raw_fd() as u32,
            attach_type,
            prog_ids: buf.as_mut_ptr() as u64,
            prog_cnt: buf.len() as u32,
            ..ProgQuery::default()
        };
        // libc: rustix has no bpf(2), and aya 0.14 queries only lirc and
        // cgroup-device attachments.
        // SAFETY: a valid attr of the size given; the kernel writes at most
        // `prog_cnt` ids into `buf`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                &raw mut attr,
                size_of::<ProgQuery>(),
            )
        };
        assert_eq!(rc, 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
        ids.extend_from_slice(&buf[..attr.prog_cnt as usize]);
    }
    ids
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

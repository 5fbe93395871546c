//! Whether another installation's programs already act on a cgroup: a second
//! daemon (another `pin_dir`) attaching where the first one is would count every
//! connection twice and hold two slots for each, in two sets of maps that never
//! agree. Its programs may sit on the cgroup itself, on a parent (they run for
//! this cgroup's sockets too) or on a cgroup below (ours would run for its
//! sockets as well).

use std::{
    collections::HashMap,
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::programs::loaded_programs;
use aya_obj::generated::{BPF_OBJ_NAME_LEN, bpf_attach_type};

use super::{
    pins::PinDir,
    programs::cgroup_programs,
    syscall::{bpf, bpf_cmd, zeroed_attr},
};

/// The attach types of the cgroup programs.
const ATTACH_TYPES: [bpf_attach_type; 6] = [
    bpf_attach_type::BPF_CGROUP_INET4_CONNECT,
    bpf_attach_type::BPF_CGROUP_INET6_CONNECT,
    bpf_attach_type::BPF_CGROUP_SOCK_OPS,
    bpf_attach_type::BPF_CGROUP_INET_SOCK_RELEASE,
    bpf_attach_type::BPF_CGROUP_INET_EGRESS,
    bpf_attach_type::BPF_CGROUP_INET_INGRESS,
];

/// The most programs a cgroup takes per attach type (`BPF_CGROUP_MAX_PROGS`).
const MAX_PROGS: usize = 64;

/// An enforcer program of another installation, where it is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    pub program: String,
    pub id: u32,
    pub cgroup: PathBuf,
}

/// The first program named like one of ours, other than those the links pinned
/// in `pins` hold, attached to `cgroup`, to one of its parents, or to a cgroup
/// below it.
pub fn find(cgroup: &Path, pins: &PinDir) -> io::Result<Option<Occupant>> {
    let ours = held_by(pins);
    let mut names = None;
    let mut check = |dir: &Path| -> io::Result<Option<Occupant>> {
        let foreign: Vec<u32> = attached_programs(dir)?
            .into_iter()
            .filter(|id| !ours.contains(id))
            .collect();
        if foreign.is_empty() {
            return Ok(None);
        }
        // Names are read only once something foreign is attached: most hosts
        // have no other cgroup program at all.
        let names = names.get_or_insert_with(program_names);
        Ok(foreign.into_iter().find_map(|id| {
            let program = names.get(&id).filter(|name| is_ours(name))?.clone();
            Some(Occupant {
                program,
                id,
                cgroup: dir.to_path_buf(),
            })
        }))
    };
    for dir in cgroup.ancestors().take_while(|dir| is_cgroup(dir)) {
        if let Some(found) = check(dir)? {
            return Ok(Some(found));
        }
    }
    let mut below = vec![cgroup.to_path_buf()];
    while let Some(dir) = below.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                let path = entry.path();
                if let Some(found) = check(&path)? {
                    return Ok(Some(found));
                }
                below.push(path);
            }
        }
    }
    Ok(None)
}

/// The ids of the programs the links pinned in `pins` hold: this installation's
/// own, adopted as they are on a restart.
fn held_by(pins: &PinDir) -> Vec<u32> {
    pins.links().iter().map(|link| link.program_id()).collect()
}

/// Whether a kernel program name (cut to `BPF_OBJ_NAME_LEN - 1` bytes) is the
/// name of one of the attached programs of the object.
fn is_ours(kernel_name: &str) -> bool {
    let cut = BPF_OBJ_NAME_LEN as usize - 1;
    cgroup_programs().any(|spec| &spec.name[..spec.name.len().min(cut)] == kernel_name)
}

/// The ids of the programs attached to the cgroup directory `dir` itself (not
/// inherited), at the hooks of the enforcer's cgroup programs.
pub fn attached_programs(dir: &Path) -> io::Result<Vec<u32>> {
    let file = File::open(dir)?;
    let mut ids = Vec::new();
    for attach_type in ATTACH_TYPES {
        ids.extend(query(file.as_fd(), attach_type)?);
    }
    Ok(ids)
}

/// `BPF_PROG_QUERY` of one attach type on a cgroup.
fn query(cgroup: BorrowedFd<'_>, attach_type: bpf_attach_type) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = zeroed_attr();
    attr.query.__bindgen_anon_1.target_fd = cgroup.as_raw_fd() as u32;
    attr.query.attach_type = attach_type as u32;
    attr.query.prog_ids = ids.as_mut_ptr() as u64;
    attr.query.__bindgen_anon_2.prog_cnt = MAX_PROGS as u32;
    // SAFETY: a query attribute whose `prog_ids` points at `prog_cnt` u32s that
    // outlive the call.
    unsafe { bpf(bpf_cmd::BPF_PROG_QUERY, &mut attr) }?;
    // SAFETY: the kernel wrote the count back into the member set above.
    let count = unsafe { attr.query.__bindgen_anon_2.prog_cnt } as usize;
    Ok(ids[..count.min(MAX_PROGS)].to_vec())
}

/// The names of the programs attached to the cgroup directory `dir` itself
/// (as the kernel keeps them: at most 15 bytes), asked of the kernel in this
/// process.
pub fn attached_program_names(dir: &Path) -> io::Result<Vec<String>> {
    let names = program_names();
    Ok(attached_programs(dir)?
        .into_iter()
        .filter_map(|id| names.get(&id).cloned())
        .collect())
}

/// Every loaded program's name by id (unreadable ones left out).
fn program_names() -> HashMap<u32, String> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| Some((info.id(), info.name_as_str()?.to_owned())))
        .collect()
}

/// Whether `dir` is a directory of the cgroup v2 hierarchy.
fn is_cgroup(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    rustix::fs::statfs(dir).is_ok_and(|fs| fs.f_type == CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_matched_as_the_kernel_cuts_them() {
        assert!(is_ours("gate_connect4"));
        assert!(is_ours("track_sockops"));
        // `track_sock_release` is 18 bytes; the kernel keeps 15.
        assert!(is_ours("track_sock_rele"));
        assert!(!is_ours("track_sock_release"));
        assert!(!is_ours("control"));
        assert!(!is_ours("sd_fw_ingress"));
    }
}

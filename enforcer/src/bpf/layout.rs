//! The layout version of what is pinned: which maps, with which key and value
//! layouts, and which programs. A daemon must never adopt maps it cannot read
//! (it would read another layout's bytes as its own and corrupt the states and
//! slots the kernel enforces), nor attach its programs next to another
//! layout's, still attached.
//!
//! The version is a directory named `layout-N` in the pin directory (bpffs
//! holds nothing but pins and directories), made before the first map is
//! pinned. Pins without it come from a daemon older than versioning.

use std::{fs, io, os::unix::fs::DirBuilderExt, path::PathBuf};

use super::{BpfError, pins::PinDir};

/// Bumped whenever a pinned map's name, type, key or value changes, or an
/// array's size (a counter added), or a program's pin or attachment does;
/// `layout_table_matches_the_version` (below) fails until it is.
pub const VERSION: u32 = 13;

const PREFIX: &str = "layout-";

fn marker(pins: &PinDir, version: u32) -> PathBuf {
    pins.root().join(format!("{PREFIX}{version}"))
}

/// The layout versions whose markers are in `pins`.
pub fn found(pins: &PinDir) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(pins.root()) else {
        return Vec::new();
    };
    let mut versions: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(PREFIX)?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

/// Whether `pins` holds this daemon's layout or nothing at all; else the
/// error naming both versions and the way out.
pub fn check(pins: &PinDir) -> Result<(), BpfError> {
    let found = found(pins);
    if found == [VERSION] || (found.is_empty() && !pins.has_any()) {
        return Ok(());
    }
    let theirs = found.into_iter().find(|v| *v != VERSION);
    Err(BpfError::Layout {
        pins: pins.root().display().to_string(),
        found: theirs,
        ours: VERSION,
    })
}

/// Marks `pins` as holding this daemon's layout (before anything is pinned).
pub fn mark(pins: &PinDir) -> Result<(), BpfError> {
    let path = marker(pins, VERSION);
    match fs::DirBuilder::new().mode(0o700).create(&path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(BpfError::Pin {
            path: path.display().to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes every layout marker (whatever the version: uninstalling is how
/// another layout's pins are replaced).
pub fn unmark(pins: &PinDir) {
    for version in found(pins) {
        let _ = fs::remove_dir(marker(pins, version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every map of the object: name, type, key and value sizes, and for
    /// arrays the entries (an index space: the policy arrays hold both
    /// banks, indexed by bank and id). The capacities of hashes and tries
    /// are left out: the daemon sets them at load time and adopts whatever a
    /// pinned map has. (A change that keeps every size, a field moved, is the author's to
    /// notice.) Changing it without bumping [`VERSION`] would let a new daemon
    /// adopt maps it cannot read.
    ///
    /// 3: `Config` grew `kernel_log` (56 → 64 bytes), and aya-log's ring
    /// buffer `AYA_LOGS` joined (not pinned: a daemon finds it through the
    /// programs' ids).
    /// 7: `CHAOS` and `CHAOS_SOCKS` joined, the cgroup_skb programs became
    /// `sock_out`/`sock_in`.
    /// 8: a chaos `Fault` names its callers' priority classes (456 → 464
    /// bytes).
    /// 9: `sock_out` and `sock_in` are pinned as programs and attached only
    /// while a feature needs them (their link pins come and go); the ports
    /// each bank's rules name joined (`RULE_PORTS`); `chaos_connect4/6` are
    /// gone (the chaos faults are the gate's first step).
    /// 10: an admitted connect's record moved from socket storage (`SOCKS`)
    /// to a hash by socket cookie (`CONNS`, pinned), and carries the cookie
    /// (`FLOWS`' records too: 128 → 136 bytes).
    /// 11: `RULE_PORTS` became `RULE_FILTER`, which also notes the leading
    /// address byte of every rule (8192 → 8256 bytes).
    /// 12: `CONNS` became an array of slots a socket's cookie names.
    /// 13: the workload selectors' `WORKLOADS` and `WORKLOAD_LEVELS` joined
    /// (the padding of a `Policy` and of a chaos `Fault` became their
    /// `workloads` flags).
    const LAYOUT_V13: &str = "\
AYA_LOGS type 27 key 0 value 0
BACKOFF type 2 key 4 value 128 entries 512
CHAOS type 2 key 4 value 464 entries 8
CHAOS_SOCKS type 24 key 4 value 16
CLASS_CGROUPS type 1 key 8 value 4
CLASS_TABLE type 2 key 4 value 24 entries 1
CONFIG type 2 key 4 value 64 entries 1
CONNS type 2 key 4 value 104 entries 131072
COUNTERS type 6 key 4 value 8 entries 35
DESTS type 1 key 32 value 680
EVENTS type 27 key 0 value 0
FIB_SCRATCH type 6 key 4 value 64 entries 1
FLOWS type 1 key 56 value 136
FRAMES type 6 key 4 value 192 entries 2
OVERRIDES type 1 key 32 value 16
POLICIES type 2 key 4 value 128 entries 512
POLICY_RULES_0 type 11 key 24 value 4
POLICY_RULES_1 type 11 key 24 value 4
POLICY_STATS type 2 key 4 value 24 entries 256
RULE_FILTER type 2 key 4 value 8256 entries 2
WATCHED type 1 key 4 value 4
WORKLOADS type 1 key 16 value 4
WORKLOAD_LEVELS type 2 key 4 value 4 entries 264
ZERO_DEST type 2 key 4 value 680 entries 1
";

    #[cfg(not(enforcer_no_ebpf))]
    #[test]
    fn layout_table_matches_the_version() {
        use aya_obj::generated::bpf_map_type::{BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY};
        let object = aya_obj::Object::parse(super::super::object::bytes().expect("the object"))
            .expect("parsing the object");
        let mut lines: Vec<String> = object
            .maps
            .iter()
            .filter(|(name, _)| !name.starts_with('.'))
            .map(|(name, map)| {
                // An array's size is its layout (a counter added is a slot
                // an adopted map lacks); a hash's is the operator's to set.
                let sized = [BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY];
                let entries = if sized.iter().any(|t| map.map_type() == *t as u32) {
                    format!(" entries {}", map.max_entries())
                } else {
                    String::new()
                };
                format!(
                    "{name} type {} key {} value {}{entries}",
                    map.map_type(),
                    map.key_size(),
                    map.value_size()
                )
            })
            .collect();
        lines.sort();
        let table = lines.join("\n") + "\n";
        assert_eq!(
            (VERSION, table.as_str()),
            (13, LAYOUT_V13),
            "the pinned layout changed: bump layout::VERSION and record the new table"
        );
    }
}

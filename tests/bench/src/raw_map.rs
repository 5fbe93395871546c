//! Hash maps made with raw `bpf(2)` calls, for the benchmarks' controls
//! ([`crate::flow_floor`], [`crate::map_floor`]): a map of ours would bring
//! the programs' layouts with it.

use std::os::fd::{AsRawFd, OwnedFd};

use enforcer::bpf::syscall::{bpf, bpf_cmd, bpf_fd, zeroed_attr};

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;

/// A hash map as the daemon's are made (elements allocated on insert).
pub fn hash(key_size: u32, value_size: u32, max_entries: u32) -> OwnedFd {
    let mut create = zeroed_attr();
    create.__bindgen_anon_1.map_type = BPF_MAP_TYPE_HASH;
    create.__bindgen_anon_1.key_size = key_size;
    create.__bindgen_anon_1.value_size = value_size;
    create.__bindgen_anon_1.max_entries = max_entries;
    create.__bindgen_anon_1.map_flags = BPF_F_NO_PREALLOC;
    // SAFETY: a map creation attribute, no pointers.
    unsafe { bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut create) }.expect("BPF_MAP_CREATE")
}

/// Sets `key` to `value` in `map` (sizes as the map was made with).
pub fn insert(map: &OwnedFd, key: &[u8], value: &[u8]) {
    let mut update = zeroed_attr();
    update.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    update.__bindgen_anon_2.key = key.as_ptr() as u64;
    update.__bindgen_anon_2.__bindgen_anon_1.value = value.as_ptr() as u64;
    // SAFETY: the key and value outlive the call, of the map's sizes.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut update) }.expect("BPF_MAP_UPDATE_ELEM");
}

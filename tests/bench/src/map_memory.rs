//! What the kernel charges for a process's BPF maps: the `memlock:` line of each
//! map descriptor's `/proc/self/fdinfo` entry (since 6.4 the map's own estimate
//! of its memory, `map_mem_usage`; before, its pre-allocated size). aya's
//! `MapInfo` does not expose it.
//!
//! A benchmark arm owns its `Enforcer`'s maps; to tell them apart from the other
//! arms' maps in the same process, it notes the map ids open before it loads
//! ([`open_map_ids`]) and takes the new ones after.
//!
//! `memlock` counts a hash map's elements at their own size; the kernel
//! allocates each from the general-purpose slab caches, rounded up to the
//! next cache's object (a 768-byte element takes 1 KiB).
//! [`kmalloc_in_use`] reads what those caches hold, so that the difference
//! across a fill is what the elements really take.

use std::collections::BTreeMap;

use serde::Serialize;

/// One map as the kernel reports it.
#[derive(Clone, Debug, Serialize)]
pub struct MapMemory {
    pub id: u32,
    pub name: String,
    pub max_entries: u64,
    pub memlock_bytes: u64,
}

/// Every BPF map this process holds a descriptor to: map id → one of its fds.
pub fn open_map_ids() -> BTreeMap<u32, i32> {
    let mut ids = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return ids;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(id) = fdinfo(fd).and_then(|info| field(&info, "map_id")) {
            ids.entry(id as u32).or_insert(fd);
        }
    }
    ids
}

/// The maps whose ids are open now and were not in `before`.
pub fn opened_since(before: &BTreeMap<u32, i32>) -> Vec<u32> {
    open_map_ids()
        .into_keys()
        .filter(|id| !before.contains_key(id))
        .collect()
}

/// The current figures of the maps `ids` (those still open in this process).
pub fn of(ids: &[u32]) -> Vec<MapMemory> {
    let open = open_map_ids();
    ids.iter()
        .filter_map(|id| {
            let info = fdinfo(*open.get(id)?)?;
            Some(MapMemory {
                id: *id,
                name: aya::maps::MapInfo::from_id(*id)
                    .ok()
                    .and_then(|m| m.name_as_str().map(str::to_owned))
                    .unwrap_or_default(),
                max_entries: field(&info, "max_entries").unwrap_or(0),
                memlock_bytes: field(&info, "memlock").unwrap_or(0),
            })
        })
        .collect()
}

/// Bytes held in the kernel's general-purpose slab caches (`kmalloc-*`,
/// `kmalloc-cg-*`, … in `/proc/slabinfo`, root only), host-wide: objects in
/// use times their size.
pub fn kmalloc_in_use() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    Some(slab_bytes(&text, |name| name.contains("kmalloc-")))
}

/// Objects in use times object size over the caches of `text` (slabinfo
/// 2.1: `name active_objs num_objs objsize …`) whose name `wanted` takes.
fn slab_bytes(text: &str, wanted: impl Fn(&str) -> bool) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let active: u64 = fields.next()?.parse().ok()?;
            let size: u64 = fields.nth(1)?.parse().ok()?;
            wanted(name).then_some(active * size)
        })
        .sum()
}

fn fdinfo(fd: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()
}

/// `name:\tvalue` of an fdinfo text.
fn field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slab_bytes_are_objects_in_use_times_their_size() {
        let text = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables\n\
kmalloc-cg-1k       100    128   1024   16    4 : tunables    0    0    0\n\
kmalloc-512          10     32    512   16    2 : tunables    0    0    0\n\
TCP                  20     26   2496   13    8 : tunables    0    0    0\n";
        assert_eq!(
            super::slab_bytes(text, |n| n.contains("kmalloc-")),
            100 * 1024 + 10 * 512
        );
    }

    #[test]
    fn reads_fdinfo_fields() {
        let info = "pos:\t0\nmap_type:\t1\nmax_entries:\t65536\nmemlock:\t123\nmap_id:\t7\n";
        assert_eq!(super::field(info, "memlock"), Some(123));
        assert_eq!(super::field(info, "map_id"), Some(7));
        assert_eq!(super::field(info, "map"), None);
    }
}

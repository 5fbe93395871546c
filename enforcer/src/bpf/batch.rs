//! Reading a whole hash map in a few system calls (`BPF_MAP_LOOKUP_BATCH`)
//! instead of two per entry: a scrape or a scan of 100 000 destinations is
//! otherwise 200 000 system calls.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A raw `bpf(2)` through libc: aya 0.14 has no batch lookup, and no crate
/// wraps `BPF_MAP_LOOKUP_BATCH` (rustix and nix do not cover `bpf(2)` at all).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const CHUNK: usize = 4096;

/// Every entry of the hash map (or array) open as `map`, each value read with
/// `elem_flags` (e.g. `BPF_F_LOCK`). `Err` when the kernel cannot batch (the
/// caller falls back to one lookup per key).
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(
    map: BorrowedFd<'_>,
    elem_flags: u64,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for_each(map, elem_flags, |k: &K, v: &V| out.push((*k, *v)))?;
    Ok(out)
}

/// As [`lookup_all`], handing each entry to `f` as it is read: memory stays
/// at one batch whatever the map holds (a scrape keeps only its top series).
/// On `Err`, `f` may have seen some entries.
pub fn for_each<K: Pod + Default, V: Pod + Default>(
    map: BorrowedFd<'_>,
    elem_flags: u64,
    mut f: impl FnMut(&K, &V),
) -> io::Result<()> {
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    // Hash maps use a bucket index as the batch token, arrays the next index:
    // both a u32.
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { (&raw const token) as u64 },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.as_raw_fd() as u32,
            elem_flags,
            flags: 0,
        };
        // SAFETY: bpf(2) with an attribute laid out as the kernel's, buffers of
        // `count` keys and values that outlive the call, and token pointers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let done = rc != 0;
        if done {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOENT) {
                return Err(err);
            }
        }
        let n = attr.count as usize;
        keys[..n]
            .iter()
            .zip(&values[..n])
            .for_each(|(k, v)| f(k, v));
        if done {
            return Ok(());
        }
        token = next;
        first = false;
    }
}

//! Reading a whole hash map in a few system calls (`BPF_MAP_LOOKUP_BATCH`)
//! instead of two per entry: a scrape or a scan of 100 000 destinations is
//! otherwise 200 000 system calls. aya 0.14 has no batch lookup.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

use super::syscall::{bpf, bpf_cmd, zeroed_attr};

/// Bytes of keys and values asked for per call. Each batch is gone through
/// right after the kernel wrote it: small enough to still be in the CPU's
/// cache then, large enough that the calls stay few (4096 destinations of
/// 680 bytes, 2.8 MB, went back to memory and made a scrape 10 % slower).
const CHUNK_BYTES: usize = 128 << 10;

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
    let chunk = (CHUNK_BYTES / (size_of::<K>() + size_of::<V>()).max(1)).max(16);
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // Hash maps use a bucket index as the batch token, arrays the next index:
    // both a u32.
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = zeroed_attr();
        attr.batch.in_batch = if first { 0 } else { (&raw const token) as u64 };
        attr.batch.out_batch = (&raw mut next) as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = chunk as u32;
        attr.batch.map_fd = map.as_raw_fd() as u32;
        attr.batch.elem_flags = elem_flags;
        // SAFETY: buffers of `count` keys and values and the two tokens
        // outlive the call.
        let done = match unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) } {
            Ok(()) => false,
            // The last batch: what it holds is in `count` all the same.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        // SAFETY: the kernel wrote the count back into the member set above.
        let n = unsafe { attr.batch.count } as usize;
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

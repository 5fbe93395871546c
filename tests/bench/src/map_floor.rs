//! Scenario 8's control: the kernel's batched read of a hash map as large as
//! the scrape's (as many entries, 32-byte keys, as many buckets) whose values
//! are 8 bytes and hold no lock: what reading that many entries costs on this
//! machine whatever the values hold, in the same run.

use std::{
    os::fd::{AsFd, OwnedFd},
    time::Instant,
};

use enforcer::bpf::batch;

use crate::raw_map;

pub struct MapFloor(OwnedFd);

impl MapFloor {
    /// `entries` distinct keys in a map of `capacity`.
    pub fn new(entries: usize, capacity: u32) -> Self {
        let map = raw_map::hash(32, 8, capacity);
        for i in 0..entries as u64 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_ne_bytes());
            raw_map::insert(&map, &key, &i.to_ne_bytes());
        }
        Self(map)
    }

    /// One whole read: ns, and the entries read.
    pub fn read(&self) -> (u64, usize) {
        let start = Instant::now();
        let mut n = 0usize;
        batch::for_each(self.0.as_fd(), 0, |_: &[u8; 32], _: &u64| n += 1)
            .expect("BPF_MAP_LOOKUP_BATCH");
        (crate::client::nanos(start.elapsed()), n)
    }
}

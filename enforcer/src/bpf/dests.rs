//! The destinations the programs track (`DESTS`), each read under its lock.

use std::{io, os::fd::AsFd as _};

use aya::maps::{HashMap, IterableMap as _, MapData, MapError};
use enforcer_common::{
    dest::{DestKey, DestState},
    maps as names,
};

use super::{
    BpfError, batch,
    maps::{BPF_F_LOCK, max_entries, optional, read_by_key},
};

/// The `DESTS` map: each destination's breaker, bulkhead and counters.
pub struct Dests(pub(super) HashMap<MapData, DestKey, DestState>);

impl Dests {
    /// Every tracked destination and its state.
    pub fn all(&self) -> Result<Vec<(DestKey, DestState)>, BpfError> {
        match self.batched() {
            Ok(all) => Ok(all),
            // Kernels without batch lookups: two system calls per destination.
            Err(_) => self.by_key(),
        }
    }

    /// Every destination, read in batches (each under its lock): an error
    /// where the kernel cannot batch. [`Self::all`] falls back by itself;
    /// this is for tests and benchmarks.
    pub fn batched(&self) -> io::Result<Vec<(DestKey, DestState)>> {
        batch::lookup_all(self.0.map().fd().as_fd(), BPF_F_LOCK)
    }

    /// Every destination, one key at a time (for tests and benchmarks).
    pub fn by_key(&self) -> Result<Vec<(DestKey, DestState)>, BpfError> {
        read_by_key(&self.0, names::DESTS, BPF_F_LOCK)
    }

    /// Hands every destination to `f` as it is read, keeping none (in
    /// batches, each under its lock; one key at a time where the kernel
    /// cannot batch).
    pub fn each(&self, f: impl FnMut(&DestKey, &DestState)) -> Result<(), BpfError> {
        self.walk(BPF_F_LOCK, f)
    }

    /// As [`Self::each`], without taking each destination's lock: a sample,
    /// for what only shows the figures (the scrape). Every field is some
    /// value it held (the kernel changes each with one aligned store or
    /// atomic add), but two fields of one destination may be read either
    /// side of one change; nothing that decides may read them so. A tenth
    /// less than a locked read of 100 000 destinations (each lock saves and
    /// restores the interrupt flag), which is most of a scrape.
    pub fn sample(&self, f: impl FnMut(&DestKey, &DestState)) -> Result<(), BpfError> {
        self.walk(0, f)
    }

    fn walk(&self, flags: u64, mut f: impl FnMut(&DestKey, &DestState)) -> Result<(), BpfError> {
        let mut seen = 0u64;
        let batched = batch::for_each(self.0.map().fd().as_fd(), flags, |k, v| {
            seen += 1;
            f(k, v)
        });
        match batched {
            Ok(()) => Ok(()),
            // A kernel that cannot batch refuses the first call: read by key.
            Err(_) if seen == 0 => {
                for (k, s) in self.by_key()? {
                    f(&k, &s);
                }
                Ok(())
            }
            Err(source) => Err(BpfError::Map {
                name: names::DESTS,
                source: MapError::SyscallError(aya::sys::SyscallError {
                    call: "bpf_map_lookup_batch",
                    io_error: source,
                }),
            }),
        }
    }

    /// The state of one destination, if it is tracked (read under its lock).
    pub fn get(&self, key: &DestKey) -> Result<Option<DestState>, BpfError> {
        optional(names::DESTS, self.0.get(key, BPF_F_LOCK))
    }

    /// How many destinations the kernel's map holds at most (a pinned map
    /// keeps the capacity it was created with, whatever the configuration
    /// says now).
    pub fn capacity(&self) -> Result<u32, BpfError> {
        max_entries(self.0.map(), names::DESTS)
    }
}

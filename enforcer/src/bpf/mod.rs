//! Loading, attaching and reading the kernel programs.

mod maps;
mod object;
pub mod programs;

use std::{fs::File, io, path::Path};

use aya::{Ebpf, EbpfError, EbpfLoader, maps::MapError, programs::ProgramError};
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    maps as names,
};

/// Errors of loading, attaching or reading the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "this enforcer binary was built without its eBPF programs (bpf-linker was \
         missing); build it with `cargo xtask build`"
    )]
    ObjectMissing,
    #[error("loading the eBPF object")]
    Load(#[source] Box<EbpfError>),
    #[error("program `{name}` is not in the eBPF object")]
    ProgramMissing { name: &'static str },
    #[error("loading program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching program `{name}`")]
    Attach {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map `{name}` is not in the eBPF object")]
    MapMissing { name: &'static str },
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("opening cgroup {path}")]
    Cgroup {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Options for [`Enforcer::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the destination map.
    pub dests_capacity: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dests_capacity: names::DESTS_CAPACITY,
        }
    }
}

/// The loaded programs and their maps. Dropping it detaches every program it
/// attached and frees the maps.
pub struct Enforcer {
    ebpf: Ebpf,
}

impl Enforcer {
    /// Loads every program into the kernel (the verifier runs here) and writes an
    /// active configuration.
    pub fn load(options: &LoadOptions) -> Result<Self, BpfError> {
        let bytes = object::bytes().ok_or(BpfError::ObjectMissing)?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::DESTS, options.dests_capacity)
            .load(bytes)
            .map_err(|e| BpfError::Load(Box::new(e)))?;
        for name in [names::CONFIG, names::DESTS, names::SOCKS, names::COUNTERS] {
            if ebpf.map(name).is_none() {
                return Err(BpfError::MapMissing { name });
            }
        }
        programs::load_all(&mut ebpf)?;
        let mut enforcer = Self { ebpf };
        enforcer.set_config(Config::default())?;
        Ok(enforcer)
    }

    /// Attaches every program to the cgroup v2 directory `cgroup` (and so to its
    /// whole subtree).
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), BpfError> {
        let dir = File::open(cgroup).map_err(|source| BpfError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        programs::attach_all(&mut self.ebpf, &dir)
    }

    /// Every tracked destination and its state.
    pub fn dests(&self) -> Result<Vec<(DestKey, DestState)>, BpfError> {
        maps::dests(&self.ebpf)
    }

    /// The state of one destination, if it is tracked.
    pub fn dest(&self, key: &DestKey) -> Result<Option<DestState>, BpfError> {
        maps::dest(&self.ebpf, key)
    }

    /// A global counter, summed over CPUs.
    pub fn counter(&self, counter: GlobalCounter) -> Result<u64, BpfError> {
        maps::counter(&self.ebpf, counter)
    }

    /// Writes the configuration every program reads.
    pub fn set_config(&mut self, config: Config) -> Result<(), BpfError> {
        maps::set_config(&mut self.ebpf, config)
    }
}

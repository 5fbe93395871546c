//! Loading, attaching and reading the kernel programs.

mod maps;
mod object;
pub mod programs;

use std::{fs::File, io, net::SocketAddr, path::Path};

use aya::{Ebpf, EbpfError, EbpfLoader, maps::MapError, programs::ProgramError};
use enforcer_common::{
    config::Config,
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    event::Event,
    maps as names,
    overrides::Override,
    policy::{BackoffRow, Policy, PolicyStats},
    rules::MAX_POLICIES,
};

use crate::rule::Rule;

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
    #[error("policy id {id} is out of range (0..={max})")]
    PolicyId { id: u32, max: u32 },
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
        for name in [
            names::CONFIG,
            names::POLICY_RULES,
            names::POLICIES,
            names::BACKOFF,
            names::POLICY_STATS,
            names::DESTS,
            names::ZERO_DEST,
            names::OVERRIDES,
            names::SOCKS,
            names::EVENTS,
            names::COUNTERS,
        ] {
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

    /// The state of one destination, if it is tracked (read under its lock).
    pub fn dest(&self, key: &DestKey) -> Result<Option<DestState>, BpfError> {
        maps::dest(&self.ebpf, key)
    }

    /// A global counter, summed over CPUs.
    pub fn counter(&self, counter: GlobalCounter) -> Result<u64, BpfError> {
        maps::counter(&self.ebpf, counter)
    }

    /// The configuration every program reads.
    pub fn config(&self) -> Result<Config, BpfError> {
        maps::config(&self.ebpf)
    }

    /// Writes the configuration every program reads.
    pub fn set_config(&mut self, config: Config) -> Result<(), BpfError> {
        maps::set_config(&mut self.ebpf, config)
    }

    /// Sets the global switch: paused programs pass every connection untouched.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), BpfError> {
        let config = self.config()?;
        self.set_config(Config {
            paused: u32::from(paused),
            generation: config.generation + 1,
            ..config
        })
    }

    /// Writes policy `id` and its backoff table (the table first, so the policy
    /// never runs with an empty one).
    pub fn set_policy(
        &mut self,
        id: u32,
        policy: &Policy,
        backoff: &BackoffRow,
    ) -> Result<(), BpfError> {
        if id >= MAX_POLICIES {
            return Err(BpfError::PolicyId {
                id,
                max: MAX_POLICIES - 1,
            });
        }
        maps::set_backoff(&mut self.ebpf, id, *backoff)?;
        maps::set_policy(&mut self.ebpf, id, *policy)
    }

    /// The shared counts of policy `id` (tracked and open destinations).
    pub fn policy_stats(&self, id: u32) -> Result<PolicyStats, BpfError> {
        maps::policy_stats(&self.ebpf, id)
    }

    /// Maps the destinations `rule` matches to policy `policy_id`.
    pub fn insert_rule(&mut self, rule: &Rule, policy_id: u32) -> Result<(), BpfError> {
        if policy_id >= MAX_POLICIES {
            return Err(BpfError::PolicyId {
                id: policy_id,
                max: MAX_POLICIES - 1,
            });
        }
        maps::insert_rule(&mut self.ebpf, rule.key(), policy_id)
    }

    pub fn remove_rule(&mut self, rule: &Rule) -> Result<(), BpfError> {
        maps::remove_rule(&mut self.ebpf, rule.key())
    }

    /// Sets an override for one destination and tells the gate to look them up.
    pub fn set_override(&mut self, dest: SocketAddr, value: Override) -> Result<(), BpfError> {
        maps::insert_override(&mut self.ebpf, DestKey::from(dest), value)?;
        let config = self.config()?;
        self.set_config(Config {
            overrides: 1,
            generation: config.generation + 1,
            ..config
        })
    }

    /// Removes a destination's override; false when it had none.
    pub fn remove_override(&mut self, dest: SocketAddr) -> Result<bool, BpfError> {
        maps::remove_override(&mut self.ebpf, &DestKey::from(dest))
    }

    /// Every transition event the kernel has sent since the last call.
    pub fn drain_events(&mut self) -> Result<Vec<Event>, BpfError> {
        maps::drain_events(&mut self.ebpf)
    }

    /// Each program's name and the instructions the verifier processed for it.
    pub fn verifier_stats(&self) -> Result<Vec<(&'static str, Option<u32>)>, BpfError> {
        programs::PROGRAMS
            .iter()
            .map(|spec| {
                let program = self
                    .ebpf
                    .program(spec.name)
                    .ok_or(BpfError::ProgramMissing { name: spec.name })?;
                let info = program.info().map_err(|source| BpfError::Program {
                    name: spec.name,
                    source,
                })?;
                Ok((spec.name, info.verified_instruction_count()))
            })
            .collect()
    }
}

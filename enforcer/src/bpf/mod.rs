//! Loading, attaching, pinning and reading the kernel programs.
//!
//! [`Enforcer`] is the handle: it loads the object (or adopts its pins) once
//! and holds the maps, typed, in [`Maps`]. Each map's operations live with the
//! map, in the module of its concern ([`Dests`] in `dests`, the two policy
//! banks in `policy_set`, …); what spans several maps takes the others as
//! arguments (the configuration, mostly).

pub mod batch;
pub mod btf;
pub mod chaos;
mod classes;
mod config;
mod conns;
mod control;
mod counters;
mod dests;
mod error;
mod events;
mod flows;
mod handle;
mod interfaces;
pub mod layout;
mod link_master;
#[cfg(test)]
mod lock_check;
mod maps;
mod object;
mod occupied;
mod overrides;
pub mod pins;
mod policy_set;
pub mod programs;
pub mod reset;
pub mod syscall;
mod tc;
mod workloads;

pub use chaos::ChaosMap;
pub use classes::ClassMaps;
pub use config::ConfigMap;
pub use conns::Conns;
pub use control::{Applied, Control, TestRun, test_run};
pub use counters::{Counters, PolicyStatsMap};
pub use dests::Dests;
pub use error::BpfError;
pub use events::Events;
pub use flows::Flows;
pub use handle::{Enforcer, Installed, KernelLogger, LoadOptions, ProgramStats, enable_run_stats};
pub use interfaces::{Ingress, Interfaces, PacketHook, Watched, WatchedMap, if_index};
pub use maps::Maps;
pub use occupied::{attached_program_names, attached_programs};
pub use overrides::Overrides;
pub use policy_set::{KernelPolicies, PolicyBanks};
pub use programs::SkbHooks;
pub use tc::TcApi;
pub use workloads::WorkloadMaps;

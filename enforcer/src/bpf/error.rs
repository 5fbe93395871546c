//! The bpf layer's one error type.

use std::io;

use aya::{
    EbpfError,
    maps::MapError,
    programs::{ProgramError, links::LinkError},
};

/// Errors of loading, attaching, pinning or reading the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "this enforcer binary was built without its eBPF programs (bpf-linker was \
         missing); build it with `cargo xtask build`"
    )]
    ObjectMissing,
    #[error("loading the eBPF object")]
    Load(#[source] Box<EbpfError>),
    #[error("the programs are attached to no cgroup this process knows of")]
    NoCgroup,
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
    #[error("link of program `{name}`")]
    Link {
        name: &'static str,
        #[source]
        source: LinkError,
    },
    /// Checked once, when the maps are taken from the loaded object.
    #[error("map `{name}` is not in the eBPF object")]
    MapMissing { name: &'static str },
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("policy id {id} is out of range (1..={max})")]
    PolicyId { id: u32, max: u32 },
    #[error(
        "policy.match: {rules} rules, but the kernel's rule maps hold at most {capacity} \
         (daemon.rules_capacity when they were created: pinned maps keep theirs until \
         `enforcer uninstall`); nothing was applied"
    )]
    RulesCapacity { rules: usize, capacity: u32 },
    #[error("opening cgroup {path}")]
    Cgroup {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("pin path {path}")]
    Pin {
        path: String,
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_TEST_RUN` failed: the control program's commands, or a
    /// packet program run on a test frame.
    #[error("running program `{name}`")]
    Run {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no network interface `{name}` in this network namespace")]
    Interface { name: String },
    #[error("another enforcer daemon holds {path}")]
    Busy { path: String },
    #[error(
        "the programs pinned in {pins} are attached to another cgroup (id {attached}); \
         run `enforcer uninstall` first to move them"
    )]
    AttachedElsewhere { pins: String, attached: u64 },
    #[error(
        "another enforcer's program `{}` (id {}) is attached to {}, at, above or \
         below daemon.cgroup {cgroup}: two installations would count every connection \
         twice. Stop that one (`enforcer uninstall` with its configuration), or set \
         daemon.pin_dir to its pin directory to take it over",
        occupant.program, occupant.id, occupant.cgroup.display()
    )]
    Occupied {
        cgroup: String,
        occupant: super::occupied::Occupant,
    },
    #[error(
        "{pins} holds pins of {} and this daemon uses layout {ours}: it cannot read them. \
         `enforcer uninstall` (this binary removes pins of any layout; the breaker states \
         and counters go with them) clears the way, then start again",
        found.map_or("an enforcer older than layout versions".to_owned(), |v| format!("layout {v}"))
    )]
    Layout {
        pins: String,
        found: Option<u32>,
        ours: u32,
    },
}

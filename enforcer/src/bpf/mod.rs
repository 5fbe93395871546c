//! Loading, attaching, pinning and reading the kernel programs.

mod batch;
pub mod btf;
mod control;
mod interfaces;
pub mod layout;
mod link_master;
#[cfg(test)]
mod lock_check;
mod maps;
mod object;
pub mod pins;
mod policy_set;
pub mod programs;
mod tc;

use std::{fs::File, io, net::SocketAddr, os::unix::fs::MetadataExt, path::Path, time::Duration};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Map, MapData, MapError},
    programs::{
        ProgramError, ProgramFd, ProgramInfo, links::FdLink, links::LinkError, loaded_programs,
    },
};
pub use control::{Applied, TestRun};
use enforcer_common::{
    config::Config,
    control::{Command, Kind},
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    event::Event,
    flow::{Flow, FlowKey},
    maps as names,
    overrides::Override,
    policy::PolicyStats,
    rules::MAX_POLICIES,
};
pub use interfaces::{Ingress, PacketHook, Watched, if_index};
pub use maps::Maps;
use pins::{MAP_NAMES, PinDir};
pub use policy_set::KernelPolicies;
pub use tc::TcApi;

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
    #[error("running the control program")]
    Control {
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

/// aya-log's reader of the programs' log lines, writing them to the `log`
/// crate's logger (which `tracing` collects: see `daemon::logs`).
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Options for loading the object.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the destination map (of a newly created one: a pinned map keeps
    /// the capacity it was created with).
    pub dests_capacity: u32,
    /// Capacity of the packet plane's flow table (likewise).
    pub flows_capacity: u32,
    /// Capacity of each bank's rule trie: the most rules a policy set may
    /// have (likewise).
    pub rules_capacity: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dests_capacity: names::DESTS_CAPACITY,
            flows_capacity: names::FLOWS_CAPACITY,
            rules_capacity: names::POLICY_RULES_CAPACITY,
        }
    }
}

/// How [`Enforcer::install`] found the pin directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// Nothing was installed: programs loaded, attached and pinned.
    Fresh,
    /// A previous daemon's pinned programs and maps were adopted as they are.
    Adopted,
}

/// The programs' maps, and the links this process holds (dropping them detaches
/// the programs, unless they are pinned).
pub struct Enforcer {
    maps: Maps,
    /// The loaded object, while this process owns its programs.
    ebpf: Option<Ebpf>,
    links: Vec<(&'static str, FdLink)>,
    /// TC filters attached through netlink (kernels without tcx), which this
    /// process holds the same way.
    filters: Vec<aya::programs::tc::SchedClassifierLink>,
    /// The control program (loaded here, or adopted from its pin).
    control: Option<ProgramFd>,
}

impl Enforcer {
    /// Loads every program into the kernel (the verifier runs here), with fresh
    /// maps, and writes an active configuration. Nothing is pinned.
    pub fn load(options: &LoadOptions) -> Result<Self, BpfError> {
        Self::load_with(options, None)
    }

    fn load_with(options: &LoadOptions, pins: Option<&PinDir>) -> Result<Self, BpfError> {
        let bytes = object::bytes().ok_or(BpfError::ObjectMissing)?;
        let mut loader = EbpfLoader::new();
        let (fields, _) = btf::SocketFields::of_running_kernel();
        loader
            .override_global(names::globals::SK_ERR_OFFSET, &fields.sk_err, true)
            .override_global(names::globals::UC_TTL_OFFSET, &fields.uc_ttl, true)
            .override_global(names::globals::MIN_TTL, &fields.min_ttl, true)
            .override_global(names::globals::PINET6_OFFSET, &fields.pinet6, true)
            .override_global(names::globals::HOP_LIMIT_OFFSET, &fields.hop_limit, true)
            .override_global(
                names::globals::HOP_LIMIT_SHIFT,
                &fields.hop_limit_shift,
                true,
            )
            .override_global(names::globals::HOP_LIMIT_BITS, &fields.hop_limit_bits, true)
            .override_global(names::globals::MIN_HOP_LIMIT, &fields.min_hop_limit, true);
        loader.map_max_entries(names::DESTS, options.dests_capacity);
        loader.map_max_entries(names::FLOWS, options.flows_capacity);
        for name in names::POLICY_RULES {
            loader.map_max_entries(name, options.rules_capacity);
        }
        let pin_paths: Vec<_> = pins.map(|p| p.pinned_maps().collect()).unwrap_or_default();
        for (name, path) in &pin_paths {
            // Reuses the map pinned there, or creates and pins it.
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(bytes)
            .map_err(|e| BpfError::Load(Box::new(e)))?;
        for (_, path) in &pin_paths {
            PinDir::restrict(path)?;
        }
        if pins.is_some() {
            crate::crash::point("install.maps-pinned");
        }
        let mut maps = Maps::default();
        for name in MAP_NAMES {
            let map = ebpf.take_map(name).ok_or(BpfError::MapMissing { name })?;
            maps.insert(name, map);
        }
        programs::load_all(&mut ebpf)?;
        let control = control_fd(&ebpf)?;
        let mut enforcer = Self {
            maps,
            ebpf: Some(ebpf),
            links: Vec::new(),
            filters: Vec::new(),
            control: Some(control),
        };
        if pins.is_none() {
            enforcer.set_config(Config::default())?;
        }
        Ok(enforcer)
    }

    /// Attaches every program to the cgroup v2 directory `cgroup` (and so to its
    /// whole subtree), holding the links: dropping the `Enforcer` detaches them.
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), BpfError> {
        let dir = open_cgroup(cgroup)?;
        let ebpf = self.ebpf.as_mut().ok_or(BpfError::ObjectMissing)?;
        self.links = programs::attach_all(ebpf, &dir)?;
        let config = self.config()?;
        self.set_config(Config {
            cgroup_id: cgroup_id(&dir, cgroup)?,
            ..config
        })
    }

    /// The daemon's start: adopts what `pins` holds when a previous daemon left a
    /// complete installation there (attached to the same cgroup), or loads,
    /// attaches to `cgroup` and pins everything. Maps pinned by an incomplete
    /// installation are reused, so counters and states survive either way.
    pub fn install(
        options: &LoadOptions,
        pins: &PinDir,
        cgroup: &Path,
    ) -> Result<(Self, Installed), BpfError> {
        pins.create()?;
        layout::check(pins)?;
        let dir = open_cgroup(cgroup)?;
        let wanted = cgroup_id(&dir, cgroup)?;
        if pins.has_links() && pins.pinned_maps().all(|(_, p)| p.exists()) {
            let enforcer = Self::adopt(pins)?;
            let attached = enforcer.config()?.cgroup_id;
            if attached != wanted {
                return Err(BpfError::AttachedElsewhere {
                    pins: pins.root().display().to_string(),
                    attached,
                });
            }
            return Ok((enforcer, Installed::Adopted));
        }
        // What a failed installation leaves must be what was there before it:
        // maps of an incomplete installation (their counts) stay, anything this
        // attempt pinned goes, and with its link pins its attachments.
        let before = pins.existing();
        layout::mark(pins)?;
        Self::install_fresh(options, pins, &dir, wanted)
            .map(|enforcer| (enforcer, Installed::Fresh))
            .inspect_err(|_| {
                if before.is_empty() {
                    layout::unmark(pins);
                }
                let _ = pins.remove_all_except(&before);
            })
    }

    fn install_fresh(
        options: &LoadOptions,
        pins: &PinDir,
        dir: &File,
        wanted: u64,
    ) -> Result<Self, BpfError> {
        // Leftover link pins of an incomplete installation would attach a second
        // copy next to ours: remove them first.
        for spec in &programs::PROGRAMS {
            let _ = std::fs::remove_file(pins.link(spec.name));
        }
        let mut enforcer = Self::load_with(options, Some(pins))?;
        // Maps an interrupted installation left hold slots of connections its
        // programs admitted; their socket records went with those programs,
        // so nothing would ever give the slots back.
        enforcer.release_orphaned_slots()?;
        let ebpf = enforcer.ebpf.as_mut().ok_or(BpfError::ObjectMissing)?;
        for spec in &programs::UNATTACHED {
            let path = pins.program(spec.name);
            let _ = std::fs::remove_file(&path);
            ebpf.program_mut(spec.name)
                .ok_or(BpfError::ProgramMissing { name: spec.name })?
                .pin(&path)
                .map_err(|e| BpfError::Pin {
                    path: path.display().to_string(),
                    source: io::Error::other(e),
                })?;
            PinDir::restrict(&path)?;
        }
        crate::crash::point("install.programs-pinned");
        // Before the links: a complete set of link pins is adopted as it is, so
        // the cgroup it is attached to must already be on record.
        let config = enforcer.config()?;
        enforcer.set_config(Config {
            cgroup_id: wanted,
            ..config
        })?;
        let ebpf = enforcer.ebpf.as_mut().ok_or(BpfError::ObjectMissing)?;
        for (name, link) in programs::attach_all(ebpf, dir)? {
            let path = pins.link(name);
            link.pin(&path).map_err(|e| BpfError::Pin {
                path: path.display().to_string(),
                source: io::Error::other(e),
            })?;
            PinDir::restrict(&path)?;
            crate::crash::point("install.link-pinned");
        }
        crate::crash::point("install.links-pinned");
        Ok(enforcer)
    }

    /// Gives back every slot the destinations hold (`RELEASE_ORPHANED`), before
    /// the new programs admit anything; how many held some.
    fn release_orphaned_slots(&mut self) -> Result<usize, BpfError> {
        let mut released = 0;
        for (key, _) in self.dests()? {
            if self.command(Kind::ReleaseOrphaned, &key)? == Applied::Applied {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Opens the maps pinned in `pins`; the pinned links keep the programs attached.
    pub fn adopt(pins: &PinDir) -> Result<Self, BpfError> {
        layout::check(pins)?;
        let mut maps = Maps::default();
        for (name, path) in pins.pinned_maps() {
            let data = MapData::from_pin(&path).map_err(|source| BpfError::Map { name, source })?;
            let map = Map::from_map_data(data).map_err(|source| BpfError::Map { name, source })?;
            maps.insert(name, map);
        }
        let name = programs::CONTROL.name;
        let control = ProgramInfo::from_pin(pins.program(name))
            .and_then(|info| info.fd())
            .map_err(|source| BpfError::Program { name, source })?;
        Ok(Self {
            maps,
            ebpf: None,
            links: Vec::new(),
            filters: Vec::new(),
            control: Some(control),
        })
    }

    /// Runs a command on one destination in the kernel, under its lock.
    pub fn command(&mut self, kind: Kind, dest: &DestKey) -> Result<Applied, BpfError> {
        self.run_command(&Command::new(kind, *dest))
    }

    /// Forgets a destination if, under its lock, it holds no slot, took no
    /// connect after `idle_since_ns` and its state passes `when`
    /// (`enforcer_common::control::may_forget`); its policy's counts follow.
    pub fn forget(
        &mut self,
        dest: &DestKey,
        idle_since_ns: u64,
        when: u64,
    ) -> Result<Applied, BpfError> {
        self.run_command(&Command::forget(*dest, idle_since_ns, when))
    }

    /// Resets a destination to CLOSED if its policy epoch is (still) stale.
    pub fn reset_stale(&mut self, dest: &DestKey) -> Result<Applied, BpfError> {
        self.run_command(&Command::reset_stale(*dest))
    }

    /// Adds signed deltas to policy `id`'s tracked and open counts in the
    /// kernel, atomically, each stopping at 0.
    pub fn adjust_policy_stats(
        &mut self,
        id: u32,
        tracked: i64,
        open: i64,
    ) -> Result<Applied, BpfError> {
        self.run_command(&Command::adjust_policy_stats(id, tracked, open))
    }

    /// Asks the kernel to expire a flow the sweep found past a timeout (checked
    /// again there against the flow as it is then).
    pub fn expire_flow(&mut self, flow: &FlowKey) -> Result<Applied, BpfError> {
        self.run_command(&Command::on_flow(Kind::FlowExpire, *flow))
    }

    fn run_command(&mut self, command: &Command) -> Result<Applied, BpfError> {
        let name = programs::CONTROL.name;
        let program = self
            .control
            .as_ref()
            .ok_or(BpfError::ProgramMissing { name })?;
        control::run(program, command).map_err(|source| BpfError::Control { source })
    }

    /// Every flow the packet plane tracks.
    pub fn flows(&self) -> Result<Vec<(FlowKey, Flow)>, BpfError> {
        maps::flows(&self.maps)
    }

    /// Runs one of this process's loaded programs on `frame` with
    /// `BPF_PROG_TEST_RUN`, `repeat` times: the packet programs' tests and
    /// per-packet cost.
    pub fn test_run(
        &self,
        program: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<TestRun, BpfError> {
        let ebpf = self.ebpf.as_ref().ok_or(BpfError::ObjectMissing)?;
        let fd = ebpf
            .program(program)
            .ok_or(BpfError::ProgramMissing { name: program })?
            .fd()
            .map_err(|source| BpfError::Program {
                name: program,
                source,
            })?;
        control::test_run(fd, frame, repeat).map_err(|source| BpfError::Control { source })
    }

    /// Detaches and unpins everything in `pins`; returns what was removed.
    pub fn uninstall(pins: &PinDir) -> Result<Vec<std::path::PathBuf>, BpfError> {
        pins.remove_all()
    }

    /// Every tracked destination and its state.
    pub fn dests(&self) -> Result<Vec<(DestKey, DestState)>, BpfError> {
        maps::dests(&self.maps)
    }

    /// Hands every destination to `f` as it is read, keeping none.
    pub fn each_dest(&self, f: impl FnMut(&DestKey, &DestState)) -> Result<(), BpfError> {
        maps::each_dest(&self.maps, f)
    }

    /// [`Self::dests`] through batch lookups only (an error where the kernel
    /// cannot batch); for tests and benchmarks.
    pub fn dests_batched(&self) -> io::Result<Vec<(DestKey, DestState)>> {
        maps::dests_batched(&self.maps)
    }

    /// [`Self::dests`] one key at a time; for tests and benchmarks.
    pub fn dests_by_key(&self) -> Result<Vec<(DestKey, DestState)>, BpfError> {
        maps::dests_by_key(&self.maps)
    }

    /// The state of one destination, if it is tracked (read under its lock).
    pub fn dest(&self, key: &DestKey) -> Result<Option<DestState>, BpfError> {
        maps::dest(&self.maps, key)
    }

    /// A global counter, summed over CPUs.
    pub fn counter(&self, counter: GlobalCounter) -> Result<u64, BpfError> {
        maps::counter(&self.maps, counter)
    }

    /// The configuration every program reads.
    pub fn config(&self) -> Result<Config, BpfError> {
        maps::config(&self.maps)
    }

    /// Writes the configuration every program reads, bumping its generation.
    pub fn set_config(&mut self, config: Config) -> Result<(), BpfError> {
        let generation = maps::config(&self.maps).map_or(0, |c| c.generation) + 1;
        // The packet plane's destinations live where the watched interfaces
        // route: this process's namespace (0 if it cannot be told).
        let netns_cookie = crate::netns::own_cookie().unwrap_or(0);
        maps::set_config(
            &mut self.maps,
            Config {
                generation,
                netns_cookie,
                ..config
            },
        )
    }

    /// Sets the global switch: paused programs pass every connection untouched.
    ///
    /// Turning it back on records when (`Config::resumed_ns`) in a write of
    /// its own, made while the switch is still off, so no program sees the
    /// switch on next to an older time: a packet-plane flow started before
    /// then missed packets while paused, and is never judged a failure.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), BpfError> {
        let config = self.config()?;
        if !paused && config.is_paused() {
            self.set_config(Config {
                resumed_ns: crate::clock::monotonic_ns(),
                ..config
            })?;
        }
        let config = self.config()?;
        self.set_config(Config {
            paused: u32::from(paused),
            ..config
        })
    }

    /// The shared counts of policy `id` (tracked and open destinations).
    pub fn policy_stats(&self, id: u32) -> Result<PolicyStats, BpfError> {
        maps::policy_stats(&self.maps, id)
    }

    /// The shared counts of every policy id, indexed by id.
    pub fn all_policy_stats(&self) -> Result<Vec<PolicyStats>, BpfError> {
        maps::all_policy_stats(&self.maps)
    }

    /// How many destinations the kernel's map holds at most (a pinned map keeps
    /// the capacity it was created with, whatever the configuration says now).
    pub fn dests_capacity(&self) -> Result<u32, BpfError> {
        maps::dests_capacity(&self.maps)
    }

    /// Sets an override for one destination and tells the gate to look them up.
    pub fn set_override(&mut self, dest: SocketAddr, value: Override) -> Result<(), BpfError> {
        maps::insert_override(&mut self.maps, DestKey::from(dest), value)?;
        let config = self.config()?;
        self.set_config(Config {
            overrides: 1,
            ..config
        })
    }

    /// Removes a destination's override; false when it had none.
    pub fn remove_override(&mut self, dest: SocketAddr) -> Result<bool, BpfError> {
        maps::remove_override(&mut self.maps, &DestKey::from(dest))
    }

    /// Every override.
    pub fn overrides(&self) -> Result<Vec<(DestKey, Override)>, BpfError> {
        maps::overrides(&self.maps)
    }

    /// A descriptor that becomes readable when events wait in the ring buffer.
    pub fn events_fd(&self) -> Result<std::os::fd::OwnedFd, BpfError> {
        maps::events_fd(&self.maps)
    }

    /// Every transition event the kernel has sent since the last call.
    pub fn drain_events(&mut self) -> Result<Vec<Event>, BpfError> {
        maps::drain_events(&mut self.maps)
    }

    /// aya-log's reader of the programs' kernel logs (the `AYA_LOGS` ring
    /// buffer), whether this process loaded the programs or adopted them.
    /// The ring buffer is not pinned: it is found through the running
    /// programs' ids (any program with a log site holds it, and all share
    /// the one map of their object), so a daemon that adopts reads the very
    /// buffer the adopted programs write to. Needs `CAP_SYS_ADMIN` (ids to
    /// descriptors): call it before the capabilities are dropped.
    pub fn kernel_logger(&self, pins: &PinDir) -> Result<KernelLogger, aya_log::Error> {
        let mut last = aya_log::Error::ProgramNotFound;
        for id in self
            .program_ids(Some(pins))
            .into_iter()
            .filter_map(|(_, id)| id)
        {
            match aya_log::EbpfLogger::init_from_id(id) {
                Ok(logger) => return Ok(logger),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The programs' kernel ids: from the links this process holds, or from the
    /// pinned links it adopted.
    fn program_ids(&self, pins: Option<&PinDir>) -> Vec<(&'static str, Option<u32>)> {
        let attached = programs::PROGRAMS.iter().map(|spec| {
            let held = self
                .links
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, l)| l.info());
            let id = match (held, pins) {
                (Some(info), _) => info.ok().map(|i| i.program_id()),
                (None, Some(pins)) => {
                    aya::programs::links::PinnedLink::from_pin(pins.link(spec.name))
                        .ok()
                        .and_then(|l| FdLink::from(l).info().ok())
                        .map(|i| i.program_id())
                }
                (None, None) => None,
            };
            (spec.name, id)
        });
        let unattached = programs::UNATTACHED.iter().map(|spec| {
            let loaded = self
                .ebpf
                .as_ref()
                .and_then(|e| e.program(spec.name))
                .and_then(|p| p.info().ok());
            let info = loaded.or_else(|| ProgramInfo::from_pin(pins?.program(spec.name)).ok());
            (spec.name, info.map(|i| i.id()))
        });
        attached.chain(unattached).collect()
    }

    /// Per program: the kernel's statistics (run count and time need
    /// `BPF_ENABLE_STATS`, see [`enable_run_stats`]) and the verifier's count of
    /// processed instructions.
    pub fn program_stats(&self, pins: Option<&PinDir>) -> Vec<ProgramStats> {
        let ids = self.program_ids(pins);
        let infos: Vec<_> = loaded_programs().filter_map(Result::ok).collect();
        ids.into_iter()
            .map(|(name, id)| {
                let info = id.and_then(|id| infos.iter().find(|i| i.id() == id));
                ProgramStats {
                    name,
                    id,
                    run_count: info.map_or(0, |i| i.run_count()),
                    run_time: info.map_or(Duration::ZERO, |i| i.run_time()),
                    verified_insns: info.and_then(|i| i.verified_instruction_count()),
                }
            })
            .collect()
    }

    /// Each program's name and the instructions the verifier processed for it.
    pub fn verifier_stats(&self) -> Result<Vec<(&'static str, Option<u32>)>, BpfError> {
        Ok(self
            .program_stats(None)
            .into_iter()
            .map(|s| (s.name, s.verified_insns))
            .collect())
    }
}

/// What the kernel says about one of our programs.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: &'static str,
    pub id: Option<u32>,
    pub run_count: u64,
    pub run_time: Duration,
    pub verified_insns: Option<u32>,
}

/// Turns on the kernel's run-time statistics for every BPF program while the
/// returned descriptor is open (`BPF_ENABLE_STATS`).
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd, io::Error> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(io::Error::other)
}

/// A descriptor of the loaded control program that outlives `ebpf`'s borrow.
fn control_fd(ebpf: &Ebpf) -> Result<ProgramFd, BpfError> {
    let name = programs::CONTROL.name;
    let program = ebpf
        .program(name)
        .ok_or(BpfError::ProgramMissing { name })?;
    program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(ProgramError::IOError))
        .map_err(|source| BpfError::Program { name, source })
}

/// Policy ids are 1..MAX_POLICIES: 0 marks a destination not yet assigned.
fn check_policy_id(id: u32) -> Result<(), BpfError> {
    if id == 0 || id >= MAX_POLICIES {
        return Err(BpfError::PolicyId {
            id,
            max: MAX_POLICIES - 1,
        });
    }
    Ok(())
}

fn open_cgroup(cgroup: &Path) -> Result<File, BpfError> {
    File::open(cgroup).map_err(|source| BpfError::Cgroup {
        path: cgroup.display().to_string(),
        source,
    })
}

/// A cgroup v2 directory's id is its inode number.
fn cgroup_id(dir: &File, path: &Path) -> Result<u64, BpfError> {
    dir.metadata()
        .map(|m| m.ino())
        .map_err(|source| BpfError::Cgroup {
            path: path.display().to_string(),
            source,
        })
}

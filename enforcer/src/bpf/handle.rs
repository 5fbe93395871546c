//! The handle on our programs in the kernel: loads (or adopts) them once,
//! attaches and pins them, and hands out their typed maps, the control
//! program and the packet plane.

use std::{
    fs::File,
    io,
    os::{fd::AsFd as _, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{
        CgroupSkb, ProgramInfo,
        links::{FdLink, PinnedLink},
        loaded_programs,
    },
};
use enforcer_common::{
    config::Config,
    control::{Command, Kind},
    maps as names,
};

use super::{
    Applied, BpfError, TestRun, btf, conns,
    control::{self, Control},
    interfaces::Interfaces,
    layout,
    maps::Maps,
    object, occupied,
    pins::PinDir,
    programs::{self, ProgramSpec, SkbHooks},
    tc::Attachment,
};

/// aya-log's reader of the programs' log lines, writing them to the `log`
/// crate's logger (which `tracing` collects: see `daemon::logs`).
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Options for loading the object.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the destination map (of a newly created one: a pinned map keeps
    /// the capacity it was created with).
    pub dests_capacity: u32,
    /// Capacity of the connection table, in slots (likewise; a power of two,
    /// rounded up to one).
    pub conns_capacity: u32,
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
            conns_capacity: names::CONNS_CAPACITY,
            flows_capacity: names::FLOWS_CAPACITY,
            rules_capacity: names::POLICY_RULES_CAPACITY,
        }
    }
}

/// The connection table's slots: those of the pinned table when there is
/// one (a pinned map keeps the capacity it was created with), else the
/// options' capacity as slots.
fn conn_slots(options: &LoadOptions, pins: Option<&PinDir>) -> u32 {
    pins.and_then(|p| p.pinned_maps().find(|(name, _)| *name == names::CONNS))
        .and_then(|(_, path)| MapData::from_pin(path).ok())
        .and_then(|map| map.info().ok())
        .map_or_else(
            || conns::slots_for(options.conns_capacity),
            |info| info.max_entries(),
        )
}

/// How [`Enforcer::install`] found the pin directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// Nothing was installed: programs loaded, attached and pinned.
    Fresh,
    /// A previous daemon's pinned programs and maps were adopted as they are.
    Adopted,
}

/// The programs' maps, and what this process holds of the programs: dropping
/// it detaches those it attached, unless they are pinned.
pub struct Enforcer {
    maps: Maps,
    /// The loaded object, while this process owns its programs.
    ebpf: Option<Ebpf>,
    /// The cgroup's links, by program name, where they are not pinned.
    links: Vec<(&'static str, FdLink)>,
    /// The cgroup the programs are attached to, once this process knows it.
    cgroup: Option<PathBuf>,
    /// Where links are pinned, when this process installed or adopted them.
    pins: Option<PinDir>,
    /// The packet plane's attachments on interfaces ([`Interfaces::watch`]).
    packet: Vec<Attachment>,
    /// The control program (loaded here, or adopted from its pin). Shared:
    /// the learning loop runs it on another thread, without the daemon's lock
    /// (each command runs under its destination's lock).
    control: Arc<Control>,
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
        let conn_slots = conn_slots(options, pins);
        let conns_mask = conn_slots - 1;
        loader
            .override_global(names::globals::CONNS_MASK, &conns_mask, true)
            .override_global(names::globals::SK_ERR_OFFSET, &fields.sk_err, true)
            .override_global(
                names::globals::USER_TIMEOUT_OFFSET,
                &fields.user_timeout,
                true,
            )
            .override_global(names::globals::COOKIE_OFFSET, &fields.cookie, true)
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
        loader.map_max_entries(names::CONNS, conn_slots);
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
        let maps = Maps::take(&mut ebpf)?;
        programs::load_all(&mut ebpf)?;
        let control = Arc::new(Control::loaded(&ebpf)?);
        let mut enforcer = Self {
            maps,
            ebpf: Some(ebpf),
            links: Vec::new(),
            cgroup: None,
            pins: pins.cloned(),
            packet: Vec::new(),
            control,
        };
        if pins.is_none() {
            enforcer.maps.config.set(Config::default())?;
        }
        Ok(enforcer)
    }

    /// Attaches every program to the cgroup v2 directory `cgroup` (and so to its
    /// whole subtree), holding the links: dropping the `Enforcer` detaches them.
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), BpfError> {
        let dir = open_cgroup(cgroup)?;
        let ebpf = self.ebpf.as_mut().ok_or(BpfError::ObjectMissing)?;
        self.links = programs::attach_all(ebpf, &dir)?;
        self.cgroup = Some(cgroup.to_path_buf());
        let config = self.maps.config.get()?;
        self.maps.config.set(Config {
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
        let (mut enforcer, installed) = Self::install_in(options, pins, cgroup)?;
        // What is attached later (the packet programs) goes to the same cgroup.
        enforcer.cgroup = Some(cgroup.to_path_buf());
        Ok((enforcer, installed))
    }

    fn install_in(
        options: &LoadOptions,
        pins: &PinDir,
        cgroup: &Path,
    ) -> Result<(Self, Installed), BpfError> {
        pins.create()?;
        layout::check(pins)?;
        let dir = open_cgroup(cgroup)?;
        let wanted = cgroup_id(&dir, cgroup)?;
        let occupant = occupied::find(cgroup, pins).map_err(|source| BpfError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        if let Some(occupant) = occupant {
            return Err(BpfError::Occupied {
                cgroup: cgroup.display().to_string(),
                occupant,
            });
        }
        if pins.has_links() && pins.pinned_maps().all(|(_, p)| p.exists()) {
            let enforcer = Self::adopt(pins)?;
            let attached = enforcer.maps.config.get()?.cgroup_id;
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
        for spec in programs::cgroup_programs() {
            let _ = std::fs::remove_file(pins.link(spec.name));
        }
        let mut enforcer = Self::load_with(options, Some(pins))?;
        // Maps an interrupted installation left hold slots of connections its
        // programs admitted; their socket records went with those programs,
        // so nothing would ever give the slots back.
        let released = enforcer.release_orphaned_slots()?;
        if released > 0 {
            tracing::info!(
                "gave back the slots of {released} destinations an interrupted installation left"
            );
        }
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
        let config = enforcer.maps.config.get()?;
        enforcer.maps.config.set(Config {
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
    fn release_orphaned_slots(&self) -> Result<usize, BpfError> {
        let mut released = 0;
        for (key, _) in self.maps.dests.all()? {
            let command = Command::new(Kind::ReleaseOrphaned, key);
            if self.control.run(&command)? == Applied::Applied {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Opens the maps pinned in `pins`; the pinned links keep the programs attached.
    pub fn adopt(pins: &PinDir) -> Result<Self, BpfError> {
        layout::check(pins)?;
        Ok(Self {
            maps: Maps::open(pins)?,
            ebpf: None,
            links: Vec::new(),
            cgroup: None,
            pins: Some(pins.clone()),
            packet: Vec::new(),
            control: Arc::new(Control::pinned(pins)?),
        })
    }

    /// Attaches the cgroup's packet programs `wanted` names and detaches
    /// the others, pinning the links where this process installed or
    /// adopted pins. Attach before arming what needs them, detach after.
    pub fn set_skb_hooks(&mut self, wanted: SkbHooks) -> Result<(), BpfError> {
        for (spec, want) in wanted.each() {
            if want != self.skb_attached(&spec) {
                if want {
                    self.attach_skb(&spec)?;
                } else {
                    self.detach_skb(&spec)?;
                }
            }
        }
        Ok(())
    }

    /// Which of the cgroup's packet programs are attached.
    pub fn skb_hooks(&self) -> SkbHooks {
        SkbHooks {
            egress: self.skb_attached(&programs::SOCK_OUT),
            ingress: self.skb_attached(&programs::SOCK_IN),
        }
    }

    fn skb_attached(&self, spec: &ProgramSpec) -> bool {
        self.links.iter().any(|(name, _)| *name == spec.name)
            || self
                .pins
                .as_ref()
                .is_some_and(|p| p.link(spec.name).exists())
    }

    fn attach_skb(&mut self, spec: &ProgramSpec) -> Result<(), BpfError> {
        let dir = open_cgroup(self.cgroup.as_deref().ok_or(BpfError::NoCgroup)?)?;
        let link = match (self.ebpf.as_mut(), self.pins.as_ref()) {
            (Some(ebpf), _) => {
                let program = ebpf
                    .program_mut(spec.name)
                    .ok_or(BpfError::ProgramMissing { name: spec.name })?;
                programs::attach_skb(spec, programs::as_kind(spec, program)?, dir.as_fd())?
            }
            // Adopted: the program pinned by the daemon that loaded it.
            (None, Some(pins)) => {
                let mut program =
                    CgroupSkb::from_pin(pins.program(spec.name), programs::skb_direction(spec))
                        .map_err(|source| BpfError::Program {
                            name: spec.name,
                            source,
                        })?;
                programs::attach_skb(spec, &mut program, dir.as_fd())?
            }
            (None, None) => return Err(BpfError::ObjectMissing),
        };
        match &self.pins {
            Some(pins) => {
                let path = pins.link(spec.name);
                link.pin(&path).map_err(|e| BpfError::Pin {
                    path: path.display().to_string(),
                    source: io::Error::other(e),
                })?;
                PinDir::restrict(&path)?;
            }
            None => self.links.push((spec.name, link)),
        }
        Ok(())
    }

    fn detach_skb(&mut self, spec: &ProgramSpec) -> Result<(), BpfError> {
        // Dropping the last descriptor of a link detaches its program.
        self.links.retain(|(name, _)| *name != spec.name);
        if let Some(pins) = &self.pins {
            let path = pins.link(spec.name);
            let pin_err = |source: io::Error| BpfError::Pin {
                path: path.display().to_string(),
                source,
            };
            match PinnedLink::from_pin(&path) {
                Ok(link) => drop(link.unpin().map_err(pin_err)?),
                Err(_) if !path.exists() => {}
                Err(e) => return Err(pin_err(io::Error::other(e))),
            }
        }
        Ok(())
    }

    /// The programs' maps.
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// The programs' maps, to write.
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// The control program, which changes a destination's state in the
    /// kernel under its lock.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The packet plane: attaching the packet programs to interfaces.
    pub fn interfaces(&mut self) -> Interfaces<'_> {
        Interfaces {
            ebpf: self.ebpf.as_mut(),
            watched: &mut self.maps.watched,
            held: &mut self.packet,
        }
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
        control::test_run(fd.as_fd(), frame, repeat).map_err(|source| BpfError::Run {
            name: program,
            source,
        })
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
    /// processed instructions. `pins` finds the programs of an adopted
    /// installation.
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
}

/// What the kernel says about one of our programs.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: &'static str,
    pub id: Option<u32>,
    pub run_count: u64,
    pub run_time: Duration,
    /// The instructions the verifier processed to accept it.
    pub verified_insns: Option<u32>,
}

/// Turns on the kernel's run-time statistics for every BPF program while the
/// returned descriptor is open (`BPF_ENABLE_STATS`).
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd, io::Error> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(io::Error::other)
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

//! The pin directory: where the daemon leaves its maps and links so that
//! enforcement and state outlive it (a crash, `kill -9`, an upgrade).
//!
//! Layout: `<dir>/maps/<MAP>`, `<dir>/links/<program>` (the cgroup's links),
//! `<dir>/programs/<program>` (programs attached later or never: the control
//! program, the packet plane's) and `<dir>/interfaces/<interface>/{ingress,egress}`
//! (the packet plane's links on each watched interface), directories 0700 and
//! pins 0600. A complete set of cgroup link and program pins means "installed": a
//! new daemon adopts it instead of attaching a second copy.

use std::{
    collections::HashSet,
    fs::{self, File},
    io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::programs::{
    links::{FdLink, LinkInfo, PinnedLink},
    loaded_links,
    tc::TcAttachType,
};
use rustix::{
    fs::{FlockOperation, flock, statfs},
    io::Errno,
    mount::{MountFlags, mount},
};

use super::{
    BpfError,
    programs::{CHAOS_IN_TC, PACKET_IN_TC, PACKET_OUT_TC, PROGRAMS, UNATTACHED, cgroup_programs},
};

/// Waits (up to `limit`) until none of the links `ids` exists any more;
/// whether they are gone.
fn released(ids: &[u32], limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        let left = loaded_links()
            .filter_map(Result::ok)
            .any(|link| ids.contains(&link.id()));
        if !left {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every map the object declares (and so every map pin).
pub const MAP_NAMES: [&str; 21] = {
    use enforcer_common::maps::*;
    [
        CONFIG,
        POLICY_RULES[0],
        POLICY_RULES[1],
        RULE_FILTER,
        POLICIES,
        BACKOFF,
        POLICY_STATS,
        DESTS,
        ZERO_DEST,
        OVERRIDES,
        CONNS,
        EVENTS,
        COUNTERS,
        FLOWS,
        WATCHED,
        CLASS_TABLE,
        CLASS_CGROUPS,
        WORKLOADS,
        WORKLOAD_LEVELS,
        CHAOS,
        CHAOS_SOCKS,
    ]
};

/// Maps that are not pinned: socket storage lives and dies with its sockets and
/// the programs that use it, and cannot be reused by a different object.
const UNPINNED: [&str; 1] = [enforcer_common::maps::CHAOS_SOCKS];

/// A pin directory on a bpffs.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

/// The daemon's claim on a pin directory; released when dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct PinLock {
    _dir: File,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// Programs pinned on their own (the control program, which has no link,
    /// and the packet programs, attached to interfaces as configured).
    pub fn program(&self, name: &str) -> PathBuf {
        self.root.join("programs").join(name)
    }

    /// The directory of one watched interface's links. bpffs refuses names with
    /// a dot (VLAN interfaces have one); `:` is the character interface names
    /// can never hold, so it stands in for the dot.
    pub fn interface(&self, interface: &str) -> PathBuf {
        self.root
            .join("interfaces")
            .join(interface.replace('.', ":"))
    }

    /// The interfaces with links pinned here.
    pub fn watched_interfaces(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.root.join("interfaces")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().replace(':', "."))
            .collect();
        names.sort();
        names
    }

    /// The directory that marks, in an interface's directory, that its TC
    /// programs are netlink filters ([`super::tc`]), which cannot be pinned.
    pub const NETLINK_FILTERS: &str = "tc-netlink";

    /// Removes one interface's link pins and netlink filters (detaching the
    /// programs there).
    pub fn remove_interface(&self, interface: &str) -> Result<Vec<PathBuf>, BpfError> {
        let dir = self.interface(interface);
        let mut removed = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
                if path.ends_with(Self::NETLINK_FILTERS) {
                    super::tc::detach_filters(interface, &PACKET_IN_TC, TcAttachType::Ingress)?;
                    super::tc::detach_filters(interface, &CHAOS_IN_TC, TcAttachType::Ingress)?;
                    super::tc::detach_filters(interface, &PACKET_OUT_TC, TcAttachType::Egress)?;
                    let _ = fs::remove_dir(&path);
                    removed.push(path);
                    continue;
                }
                fs::remove_file(&path).map_err(|source| BpfError::Pin {
                    path: path.display().to_string(),
                    source,
                })?;
                removed.push(path);
            }
        }
        let _ = fs::remove_dir(&dir);
        Ok(removed)
    }

    /// Maps to pin, with their pin paths.
    pub fn pinned_maps(&self) -> impl Iterator<Item = (&'static str, PathBuf)> + '_ {
        MAP_NAMES
            .into_iter()
            .filter(|n| !UNPINNED.contains(n))
            .map(|n| (n, self.map(n)))
    }

    /// Creates the directories (0700), mounting bpffs first if `root`'s parent
    /// is not on one.
    pub fn create(&self) -> Result<(), BpfError> {
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| BpfError::Pin { path, source }
        };
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent) {
            mount_bpffs(parent).map_err(io_err(parent))?;
        }
        for dir in [
            self.root.clone(),
            self.root.join("maps"),
            self.root.join("links"),
            self.root.join("programs"),
            self.root.join("interfaces"),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// Whether every program's link (and every unattached program) is pinned here.
    pub fn has_links(&self) -> bool {
        PROGRAMS.iter().all(|p| self.link(p.name).exists())
            && UNATTACHED.iter().all(|p| self.program(p.name).exists())
    }

    /// Whether anything of ours is pinned here.
    pub fn has_any(&self) -> bool {
        !self.existing().is_empty()
    }

    /// Takes the directory's lock, or fails when another daemon holds it.
    pub fn lock(&self) -> Result<PinLock, BpfError> {
        let path = self.root.display().to_string();
        let dir = File::open(&self.root).map_err(|source| BpfError::Pin {
            path: path.clone(),
            source,
        })?;
        match flock(&dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(PinLock { _dir: dir }),
            Err(Errno::WOULDBLOCK) => Err(BpfError::Busy { path }),
            Err(e) => Err(BpfError::Pin {
                path,
                source: e.into(),
            }),
        }
    }

    /// Restricts a pin to its owner (0600).
    pub fn restrict(path: &Path) -> Result<(), BpfError> {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
            BpfError::Pin {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// The cgroup links pinned here, each opened and closed again (an open
    /// descriptor would keep its link attached once the pin is gone).
    pub fn links(&self) -> Vec<LinkInfo> {
        cgroup_programs()
            .filter_map(|spec| PinnedLink::from_pin(self.link(spec.name)).ok())
            .filter_map(|link| FdLink::from(link).info().ok())
            .collect()
    }

    /// Removes every pin and directory of ours. Unpinning a link detaches its
    /// program (no one else holds it); unpinning a map frees it once unused.
    /// Returns the paths removed, once the kernel has released the links: it
    /// frees a link whose last pin is gone from a work queue, a moment later,
    /// and until then its program is still attached, where a daemon started
    /// next would find it.
    pub fn remove_all(&self) -> Result<Vec<PathBuf>, BpfError> {
        let links: Vec<u32> = self.links().iter().map(LinkInfo::id).collect();
        let removed = self.remove_every_pin()?;
        if !released(&links, Duration::from_secs(10)) {
            tracing::warn!("the unpinned links are still held after 10 s");
        }
        Ok(removed)
    }

    fn remove_every_pin(&self) -> Result<Vec<PathBuf>, BpfError> {
        let mut removed = Vec::new();
        // Interfaces first: their programs use the maps.
        for interface in self.watched_interfaces() {
            removed.extend(self.remove_interface(&interface)?);
        }
        // Pins of another layout may carry other names: whatever is in the
        // directories of ours is ours. Links first, maps last.
        for dir in ["links", "programs", "maps"] {
            let entries = fs::read_dir(self.root.join(dir)).into_iter().flatten();
            for path in entries.filter_map(Result::ok).map(|e| e.path()) {
                if path.is_file() {
                    fs::remove_file(&path).map_err(|source| BpfError::Pin {
                        path: path.display().to_string(),
                        source,
                    })?;
                    removed.push(path);
                }
            }
            if dir == "links" {
                crate::crash::point("uninstall.links-removed");
            }
        }
        super::layout::unmark(self);
        removed.extend(self.remove_all_except(&HashSet::new())?);
        Ok(removed)
    }

    /// Every pin of ours that exists now (interfaces' links aside). A pin is a
    /// file on bpffs; anything else at its path is not ours.
    pub fn existing(&self) -> HashSet<PathBuf> {
        self.pin_paths().filter(|p| p.is_file()).collect()
    }

    fn pin_paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let links = cgroup_programs().map(|p| self.link(p.name));
        let programs = UNATTACHED.iter().map(|p| self.program(p.name));
        let maps = self.pinned_maps().map(|(_, path)| path);
        links.chain(programs).chain(maps)
    }

    /// Removes the pins of ours but those in `keep` (and interfaces' links),
    /// then the directories left empty.
    pub fn remove_all_except(&self, keep: &HashSet<PathBuf>) -> Result<Vec<PathBuf>, BpfError> {
        let mut removed = Vec::new();
        for path in self
            .pin_paths()
            .filter(|p| p.is_file() && !keep.contains(p))
        {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BpfError::Pin {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        for dir in [
            self.root.join("maps"),
            self.root.join("links"),
            self.root.join("programs"),
            self.root.join("interfaces"),
            self.root.clone(),
        ] {
            // Left in place when not empty: it holds something that is not ours.
            let _ = fs::remove_dir(dir);
        }
        Ok(removed)
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|st| st.f_type == BPF_FS_MAGIC)
}

/// Mounts a new bpffs instance (mode 0700) on `at`, creating the directory.
pub fn mount_bpffs(at: &Path) -> io::Result<()> {
    fs::create_dir_all(at)?;
    mount("bpf", at, "bpf", MountFlags::empty(), c"mode=0700")?;
    Ok(())
}

//! The packet plane on watched interfaces: `packet_in_*` on what the guests
//! send (XDP where the driver runs it natively, TC otherwise), then
//! `chaos_in_tc` (TC, the guest faults, after it either way), `packet_out_tc`
//! on what they receive (TC: XDP has no egress). Attachments are tcx and XDP
//! links, pinned per interface like the cgroup's, so they outlive the daemon;
//! before Linux 6.6, TC attaches through netlink instead ([`super::tc`]).

use std::{ffi::CString, fmt, path::Path, str::FromStr};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{
        SchedClassifier, Xdp,
        links::{FdLink, PinnedLink},
        tc::TcAttachType,
        xdp::XdpMode,
    },
};

use aya_obj::programs::XdpAttachType;
use enforcer_common::maps as names;

use super::{
    BpfError,
    maps::map_err,
    pins::PinDir,
    programs::{self, CHAOS_IN_TC, PACKET_IN_TC, PACKET_IN_XDP, PACKET_OUT_TC, ProgramSpec},
    tc::{self, Attachment, TcApi},
};

/// Which hook the packet plane's ingress uses (`[daemon] packet_hook`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PacketHook {
    /// XDP in driver mode on physical devices whose driver accepts it, TC on
    /// everything else. Virtual devices (veth, tap) get TC: their XDP_TX hands
    /// the frame to the peer only when the peer runs NAPI, which the guest side
    /// decides.
    #[default]
    Auto,
    /// XDP in driver mode, or fail.
    Xdp,
    /// TC (tcx).
    Tc,
}

impl FromStr for PacketHook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "xdp" => Ok(Self::Xdp),
            "tc" => Ok(Self::Tc),
            _ => Err(format!("`{s}` is not one of auto, xdp, tc")),
        }
    }
}

/// The hook an interface's ingress program runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    Xdp,
    Tc,
}

impl fmt::Display for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        })
    }
}

/// One watched interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub interface: String,
    pub ingress: Ingress,
    /// How its TC programs are attached.
    pub tc: TcApi,
    /// Its links were pinned by an earlier daemon and kept.
    pub adopted: bool,
}

/// Where the packet programs come from: this process's object, or their pins.
enum Source<'a> {
    Loaded(&'a mut Ebpf),
    Pinned(&'a PinDir),
}

/// The `WATCHED` map: each watched interface's index → the bridge it is a
/// port of (0: none). Answers to its guests are routed through that bridge.
pub struct WatchedMap(pub(super) HashMap<MapData, u32, u32>);

impl WatchedMap {
    /// Records which bridge `interface` is a port of, if any (it may have
    /// joined one since it was last recorded).
    pub fn record(&mut self, interface: &str) -> Result<(), BpfError> {
        let index = if_index(interface)?;
        let master = super::link_master::master_of(index)
            .map_err(|_| BpfError::Interface {
                name: interface.to_owned(),
            })?
            .unwrap_or(0);
        self.0
            .insert(index, master, 0)
            .map_err(map_err(names::WATCHED))
    }
}

/// The packet plane of an [`Enforcer`](super::Enforcer), borrowed from it:
/// the programs (its object's, or their pins when it adopted), the `WATCHED`
/// map, and the attachments it holds.
pub struct Interfaces<'a> {
    /// The loaded object, when the handle loaded the programs.
    pub(super) ebpf: Option<&'a mut Ebpf>,
    pub(super) watched: &'a mut WatchedMap,
    /// Attachments held by the handle: dropping it detaches them.
    pub(super) held: &'a mut Vec<Attachment>,
}

impl Interfaces<'_> {
    /// Attaches the loaded packet programs to `interface` in this network
    /// namespace, holding the attachments (dropping the handle detaches them).
    pub fn watch(&mut self, interface: &str, hook: PacketHook) -> Result<Ingress, BpfError> {
        self.watched.record(interface)?;
        let ebpf = self.ebpf.as_deref_mut().ok_or(BpfError::ObjectMissing)?;
        let (ingress, attachments) = attach(&mut Source::Loaded(ebpf), interface, hook)?;
        self.held
            .extend(attachments.into_iter().map(|(_, attachment)| attachment));
        Ok(ingress)
    }

    /// The daemon's interfaces: makes the pinned set of watched interfaces
    /// exactly `interfaces`. Links an earlier daemon pinned for the same
    /// interface (same index, a compatible hook) are kept; interfaces no longer
    /// wanted, or gone, are unpinned (detached).
    pub fn watch_pinned(
        &mut self,
        pins: &PinDir,
        interfaces: &[String],
        hook: PacketHook,
    ) -> Result<Vec<Watched>, BpfError> {
        for name in pins.watched_interfaces() {
            if !interfaces.contains(&name) {
                pins.remove_interface(&name)?;
            }
        }
        let mut watched = Vec::with_capacity(interfaces.len());
        for interface in interfaces {
            let index = if_index(interface)?;
            // Also for adopted links: the interface may have joined a bridge
            // since.
            self.watched.record(interface)?;
            if let Some(ingress) = pinned_ingress(pins, interface, index, hook) {
                watched.push(Watched {
                    interface: interface.clone(),
                    ingress,
                    tc: TcApi::Tcx,
                    adopted: true,
                });
                continue;
            }
            pins.remove_interface(interface)?;
            let mut source = match self.ebpf.as_deref_mut() {
                Some(ebpf) => Source::Loaded(ebpf),
                None => Source::Pinned(pins),
            };
            let (ingress, attachments) = attach(&mut source, interface, hook)?;
            crate::crash::point("interfaces.attached");
            let dir = pins.interface(interface);
            create_dir(&dir)?;
            let mut api = TcApi::Tcx;
            for (name, attachment) in attachments {
                match attachment {
                    Attachment::Link(link) => {
                        let path = dir.join(link_pin_name(name, index));
                        link.pin(&path).map_err(|e| BpfError::Pin {
                            path: path.display().to_string(),
                            source: std::io::Error::other(e),
                        })?;
                        PinDir::restrict(&path)?;
                    }
                    Attachment::Filter(filter) => {
                        // Stays on the interface when the daemon exits, like
                        // a pinned link; the marker tells `uninstall` to
                        // delete it.
                        std::mem::forget(filter);
                        create_dir(&dir.join(PinDir::NETLINK_FILTERS))?;
                        api = TcApi::Netlink;
                    }
                }
            }
            crate::crash::point("interfaces.pinned");
            watched.push(Watched {
                interface: interface.clone(),
                ingress,
                tc: api,
                adopted: false,
            });
        }
        Ok(watched)
    }
}

/// The pin name of a program's link on the interface with index `index`: the
/// index tells a re-created interface (a new index) from the one linked.
fn link_pin_name(program: &str, index: u32) -> String {
    format!("{program}@{index}")
}

/// The ingress hook of the links pinned for `interface`, if they are complete,
/// attached to this very interface (`index`) and compatible with `hook`.
fn pinned_ingress(pins: &PinDir, interface: &str, index: u32, hook: PacketHook) -> Option<Ingress> {
    let dir = pins.interface(interface);
    let has = |spec: &ProgramSpec| dir.join(link_pin_name(spec.name, index)).exists();
    if !has(&PACKET_OUT_TC) || !has(&CHAOS_IN_TC) {
        return None;
    }
    let ingress = if has(&PACKET_IN_XDP) {
        Ingress::Xdp
    } else if has(&PACKET_IN_TC) {
        Ingress::Tc
    } else {
        return None;
    };
    let compatible = match hook {
        PacketHook::Auto => true,
        PacketHook::Xdp => ingress == Ingress::Xdp,
        PacketHook::Tc => ingress == Ingress::Tc,
    };
    // A pin whose link the kernel no longer knows is as good as none.
    let alive = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .all(|e| PinnedLink::from_pin(e.path()).is_ok());
    (compatible && alive).then_some(ingress)
}

/// Attachments by the name of the program they attach.
type Attachments = Vec<(&'static str, Attachment)>;

/// Attaches ingress, the guest faults after it, and egress to `interface`;
/// the links, by program name.
fn attach(
    source: &mut Source<'_>,
    interface: &str,
    hook: PacketHook,
) -> Result<(Ingress, Attachments), BpfError> {
    if_index(interface)?;
    let egress = attach_tc(source, &PACKET_OUT_TC, interface, TcAttachType::Egress, 0)?;
    let xdp = match hook {
        PacketHook::Xdp => Some(attach_xdp(source, interface)?),
        PacketHook::Auto if is_physical(interface) => attach_xdp(source, interface).ok(),
        PacketHook::Auto | PacketHook::Tc => None,
    };
    let (ingress, link) = match xdp {
        Some(link) => ((Ingress::Xdp, PACKET_IN_XDP.name), Attachment::Link(link)),
        None => (
            (Ingress::Tc, PACKET_IN_TC.name),
            attach_tc(source, &PACKET_IN_TC, interface, TcAttachType::Ingress, 0)?,
        ),
    };
    // After the packet plane's ingress: in TC, second on the hook; after XDP,
    // which runs before TC, the first.
    let chaos = attach_tc(source, &CHAOS_IN_TC, interface, TcAttachType::Ingress, 1)?;
    Ok((
        ingress.0,
        vec![
            (PACKET_OUT_TC.name, egress),
            (ingress.1, link),
            (CHAOS_IN_TC.name, chaos),
        ],
    ))
}

fn attach_tc(
    source: &mut Source<'_>,
    spec: &ProgramSpec,
    interface: &str,
    attach_type: TcAttachType,
    rank: u16,
) -> Result<Attachment, BpfError> {
    let attach_err = |source| BpfError::Attach {
        name: spec.name,
        source,
    };
    let mut pinned;
    let program: &mut SchedClassifier = match source {
        Source::Loaded(ebpf) => programs::as_kind(spec, program_mut(ebpf, spec)?)?,
        Source::Pinned(pins) => {
            pinned = SchedClassifier::from_pin(pins.program(spec.name)).map_err(attach_err)?;
            &mut pinned
        }
    };
    tc::attach(
        program,
        spec,
        interface,
        attach_type,
        TcApi::of_running_kernel(),
        rank,
    )
}

fn attach_xdp(source: &mut Source<'_>, interface: &str) -> Result<FdLink, BpfError> {
    let spec = &PACKET_IN_XDP;
    let attach_err = |source| BpfError::Attach {
        name: spec.name,
        source,
    };
    let mut pinned;
    let program: &mut Xdp = match source {
        Source::Loaded(ebpf) => programs::as_kind(spec, program_mut(ebpf, spec)?)?,
        Source::Pinned(pins) => {
            pinned = Xdp::from_pin(pins.program(spec.name), XdpAttachType::Interface)
                .map_err(attach_err)?;
            &mut pinned
        }
    };
    let id = program.attach(interface, XdpMode::Driver);
    programs::fd_link(spec, id.and_then(|id| program.take_link(id)))
}

fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    spec: &ProgramSpec,
) -> Result<&'a mut aya::programs::Program, BpfError> {
    ebpf.program_mut(spec.name)
        .ok_or(BpfError::ProgramMissing { name: spec.name })
}

/// The interface's index in this network namespace.
pub fn if_index(interface: &str) -> Result<u32, BpfError> {
    let unknown = || BpfError::Interface {
        name: interface.to_owned(),
    };
    let name = CString::new(interface).map_err(|_| unknown())?;
    // libc's `if_nametoindex` rather than rustix's `name_to_index`, which
    // would need a socket opened (and closed) for its ioctl.
    // SAFETY: `name` is a NUL-terminated string that outlives the call, which
    // only reads it.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(unknown()),
        index => Ok(index),
    }
}

/// Whether the interface is backed by a device (a NIC) rather than virtual.
fn is_physical(interface: &str) -> bool {
    Path::new("/sys/class/net")
        .join(interface)
        .join("device")
        .exists()
}

fn create_dir(dir: &Path) -> Result<(), BpfError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| BpfError::Pin {
            path: dir.display().to_string(),
            source,
        })
}

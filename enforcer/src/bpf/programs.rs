//! The programs in the object and where each attaches, as data.

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        SchedClassifier, SockOps, Xdp,
        links::{FdLink, LinkError},
    },
};

use super::BpfError;

/// The hook a program attaches to in a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `cgroup/connect4` or `cgroup/connect6` (the attach type is in the section).
    SockAddr,
    /// `sockops`.
    SockOps,
    /// `cgroup/sock_release`.
    SockRelease,
    /// `cgroup_skb/egress`.
    SkbEgress,
    /// `cgroup_skb/ingress`.
    SkbIngress,
    /// Not attached: the daemon test-runs it (see `enforcer-ebpf/src/control.rs`).
    Control,
    /// Packet plane, XDP on a watched interface (ingress only).
    PacketXdp,
    /// Packet plane, TC (tcx) on a watched interface.
    PacketTc,
}

/// One program of the object.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    /// Function name in `enforcer-ebpf`.
    pub name: &'static str,
    pub hook: Hook,
    /// Oldest kernel (major, minor) the program loads on, and why.
    pub min_kernel: (u32, u32),
    pub min_kernel_why: &'static str,
}

/// Every program attached to the cgroup for as long as the enforcer is, in
/// attach order: outcome tracking first, so that no socket the gate admits can
/// miss its callbacks (programs of one hook run in the order they were
/// attached).
pub const PROGRAMS: [ProgramSpec; 4] = [
    ProgramSpec {
        name: "track_sockops",
        hook: Hook::SockOps,
        min_kernel: (5, 10),
        min_kernel_why: "bpf_skc_to_tcp_sock on ops.sk",
    },
    ProgramSpec {
        name: "track_sock_release",
        hook: Hook::SockRelease,
        min_kernel: (5, 11),
        min_kernel_why: "bpf_get_socket_cookie from cgroup_sock programs",
    },
    ProgramSpec {
        name: "gate_connect4",
        hook: Hook::SockAddr,
        min_kernel: (5, 18),
        min_kernel_why: "bpf_set_retval to choose the errno of a rejection, bpf_get_retval",
    },
    ProgramSpec {
        name: "gate_connect6",
        hook: Hook::SockAddr,
        min_kernel: (5, 18),
        min_kernel_why: "bpf_set_retval to choose the errno of a rejection, bpf_get_retval",
    },
];

/// The control program: loaded and pinned, never attached.
pub const CONTROL: ProgramSpec = ProgramSpec {
    name: "control",
    hook: Hook::Control,
    min_kernel: (5, 1),
    min_kernel_why: "bpf_spin_lock in XDP programs run with BPF_PROG_TEST_RUN",
};

/// The packet plane's ingress (from the guests) in XDP.
pub const PACKET_IN_XDP: ProgramSpec = ProgramSpec {
    name: "packet_in_xdp",
    hook: Hook::PacketXdp,
    min_kernel: (5, 18),
    min_kernel_why: "bpf_xdp_load_bytes/bpf_xdp_store_bytes",
};

/// The packet plane's ingress (from the guests) in TC.
pub const PACKET_IN_TC: ProgramSpec = ProgramSpec {
    name: "packet_in_tc",
    hook: Hook::PacketTc,
    min_kernel: (6, 6),
    min_kernel_why: "tcx links (pinnable TC attachments)",
};

/// The packet plane's egress (to the guests), always TC: XDP has no egress.
pub const PACKET_OUT_TC: ProgramSpec = ProgramSpec {
    name: "packet_out_tc",
    hook: Hook::PacketTc,
    min_kernel: (6, 6),
    min_kernel_why: "tcx links (pinnable TC attachments)",
};

/// The chaos faults for guests, on a watched interface's TC ingress after
/// the packet plane's ingress program (whichever hook that runs in).
pub const CHAOS_IN_TC: ProgramSpec = ProgramSpec {
    name: "chaos_in_tc",
    hook: Hook::PacketTc,
    min_kernel: (6, 6),
    min_kernel_why: "tcx links (pinnable TC attachments)",
};

/// The cgroup's egress packets: SYNs a chaos fault drops, the start of the
/// response clock. Every packet of every socket in the cgroup passes it, so
/// it is attached only while a feature needs it ([`SkbHooks`]).
pub const SOCK_OUT: ProgramSpec = ProgramSpec {
    name: "sock_out",
    hook: Hook::SkbEgress,
    min_kernel: (5, 7),
    min_kernel_why: "bpf_sk_storage_get and bpf_tcp_sock from cgroup_skb, cgroup links",
};

/// The cgroup's ingress packets: the end of the response clock. Attached as
/// [`SOCK_OUT`] is.
pub const SOCK_IN: ProgramSpec = ProgramSpec {
    name: "sock_in",
    hook: Hook::SkbIngress,
    min_kernel: (5, 7),
    min_kernel_why: "bpf_sk_storage_get from cgroup_skb, cgroup links",
};

/// Programs loaded and pinned on their own, attached later (or never).
pub const UNATTACHED: [ProgramSpec; 7] = [
    CONTROL,
    PACKET_IN_XDP,
    PACKET_IN_TC,
    PACKET_OUT_TC,
    CHAOS_IN_TC,
    SOCK_OUT,
    SOCK_IN,
];

/// The cgroup programs attached only while a feature needs them.
pub const ON_DEMAND: [ProgramSpec; 2] = [SOCK_OUT, SOCK_IN];

/// Every program that may be attached to the cgroup (and so have a link
/// pinned): [`PROGRAMS`] and [`ON_DEMAND`].
pub fn cgroup_programs() -> impl Iterator<Item = &'static ProgramSpec> {
    PROGRAMS.iter().chain(&ON_DEMAND)
}

/// Which of the cgroup's packet programs ([`SOCK_OUT`], [`SOCK_IN`]) the
/// running features need: they tax every packet of the cgroup, so none runs
/// that nothing reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbHooks {
    pub egress: bool,
    pub ingress: bool,
}

impl SkbHooks {
    /// What policies measuring `response` latency and chaos faults that
    /// drop SYNs (`syn_faults`) need: the response clock starts on the way
    /// out and stops on the way in; a SYN is dropped on the way out.
    pub const fn wanted(response: bool, syn_faults: bool) -> Self {
        Self {
            egress: response || syn_faults,
            ingress: response,
        }
    }

    /// Each program with whether it is wanted.
    pub const fn each(self) -> [(ProgramSpec, bool); 2] {
        [(SOCK_OUT, self.egress), (SOCK_IN, self.ingress)]
    }
}

/// Loads every program into the kernel (runs the verifier).
pub fn load_all(ebpf: &mut Ebpf) -> Result<(), BpfError> {
    for spec in PROGRAMS.iter().chain(&UNATTACHED) {
        let program = ebpf
            .program_mut(spec.name)
            .ok_or(BpfError::ProgramMissing { name: spec.name })?;
        let loaded = match spec.hook {
            Hook::SockAddr => as_kind::<CgroupSockAddr>(spec, program)?.load(),
            Hook::SockOps => as_kind::<SockOps>(spec, program)?.load(),
            Hook::SockRelease => as_kind::<CgroupSock>(spec, program)?.load(),
            Hook::SkbEgress | Hook::SkbIngress => as_kind::<CgroupSkb>(spec, program)?.load(),
            Hook::Control | Hook::PacketXdp => as_kind::<Xdp>(spec, program)?.load(),
            Hook::PacketTc => as_kind::<SchedClassifier>(spec, program)?.load(),
        };
        loaded.map_err(|source| BpfError::Program {
            name: spec.name,
            source,
        })?;
    }
    Ok(())
}

/// Attaches every program to the cgroup open as `cgroup` and hands back the
/// links: dropping an `FdLink` detaches its program, pinning it keeps it attached
/// after the process exits.
pub fn attach_all(
    ebpf: &mut Ebpf,
    cgroup: impl AsFd,
) -> Result<Vec<(&'static str, FdLink)>, BpfError> {
    let cgroup = cgroup.as_fd();
    let mut links = Vec::with_capacity(PROGRAMS.len());
    for spec in &PROGRAMS {
        let program = ebpf
            .program_mut(spec.name)
            .ok_or(BpfError::ProgramMissing { name: spec.name })?;
        // Each program type has its own link type; all convert into an FdLink.
        let mode = CgroupAttachMode::Single;
        let link: FdLink = match spec.hook {
            Hook::SockAddr => {
                let p = as_kind::<CgroupSockAddr>(spec, program)?;
                let id = p.attach(cgroup, mode);
                fd_link(spec, id.and_then(|id| p.take_link(id)))?
            }
            Hook::SockOps => {
                let p = as_kind::<SockOps>(spec, program)?;
                let id = p.attach(cgroup, mode);
                fd_link(spec, id.and_then(|id| p.take_link(id)))?
            }
            Hook::SockRelease => {
                let p = as_kind::<CgroupSock>(spec, program)?;
                let id = p.attach(cgroup, mode);
                fd_link(spec, id.and_then(|id| p.take_link(id)))?
            }
            Hook::SkbEgress | Hook::SkbIngress => {
                attach_skb(spec, as_kind::<CgroupSkb>(spec, program)?, cgroup)?
            }
            // Not attached to the cgroup.
            Hook::Control | Hook::PacketXdp | Hook::PacketTc => continue,
        };
        links.push((spec.name, link));
    }
    Ok(links)
}

/// Attaches a cgroup packet program (`spec`'s, loaded as `program`) to the
/// cgroup open as `cgroup`.
pub(super) fn attach_skb(
    spec: &ProgramSpec,
    program: &mut CgroupSkb,
    cgroup: BorrowedFd<'_>,
) -> Result<FdLink, BpfError> {
    let id = program.attach(cgroup, skb_direction(spec), CgroupAttachMode::Single);
    fd_link(spec, id.and_then(|id| program.take_link(id)))
}

/// Which way a cgroup packet program (`spec`'s) looks.
pub(super) fn skb_direction(spec: &ProgramSpec) -> CgroupSkbAttachType {
    if spec.hook == Hook::SkbEgress {
        CgroupSkbAttachType::Egress
    } else {
        CgroupSkbAttachType::Ingress
    }
}

/// The link an attach (`attach` then `take_link`) produced, as the FdLink every
/// program type's link converts into (and which can be pinned).
pub(super) fn fd_link<L>(
    spec: &ProgramSpec,
    link: Result<L, ProgramError>,
) -> Result<FdLink, BpfError>
where
    L: TryInto<FdLink, Error = LinkError>,
{
    let name = spec.name;
    link.map_err(|source| BpfError::Attach { name, source })?
        .try_into()
        .map_err(|source| BpfError::Link { name, source })
}

pub(super) fn as_kind<'a, T>(
    spec: &ProgramSpec,
    program: &'a mut aya::programs::Program,
) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    program.try_into().map_err(|source| BpfError::Program {
        name: spec.name,
        source,
    })
}

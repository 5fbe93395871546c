//! How the TC packet programs attach: a tcx link where the kernel has tcx
//! (Linux 6.6 and later), pinned like every other link; a filter on the
//! interface's clsact qdisc, through netlink, before that (Linux 6.1).
//!
//! A netlink filter is not a BPF object: it cannot be pinned, and it stays on
//! the interface after its process exits until someone deletes it. So the
//! daemon finds its filters again by their program's name, at the priority
//! reserved here, deletes them before attaching anew (one program of ours per
//! hook, always), and marks the interface in the pin directory so that
//! `uninstall` knows to delete them.

use std::{fmt, io};

use aya::{
    programs::{
        SchedClassifier,
        links::{FdLink, LinkOrder},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcAttachType, TcError},
    },
    util::KernelVersion,
};

use super::{BpfError, programs::ProgramSpec};

/// The kernel interface TC programs attach through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcApi {
    /// tcx links (Linux 6.6+).
    Tcx,
    /// Filters on the clsact qdisc, through netlink.
    Netlink,
}

impl TcApi {
    pub fn of_running_kernel() -> Self {
        match KernelVersion::current() {
            Ok(running) if running < KernelVersion::new(6, 6, 0) => Self::Netlink,
            // A release it cannot read is a newer kernel's, not an older one's.
            _ => Self::Tcx,
        }
    }
}

impl fmt::Display for TcApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcx => "tcx",
            Self::Netlink => "netlink clsact (no tcx before Linux 6.6)",
        })
    }
}

/// The priority of our first netlink filter on a hook: high in the range, so
/// that filters an operator adds with tc's defaults run before ours and see
/// every packet. Our later ones follow it (see [`attach`]'s `rank`).
const PRIORITY: u16 = 0xe000;

/// A TC program attached to an interface.
pub enum Attachment {
    Link(FdLink),
    /// Deleted from the interface when dropped.
    Filter(SchedClassifierLink),
}

/// Attaches `program` (named by `spec`) to `interface` through `api`, at
/// place `rank` among our programs on that hook (0 first): a netlink filter
/// gets the priority that orders it so; a tcx link is appended, so callers
/// attach in rank order.
pub fn attach(
    program: &mut SchedClassifier,
    spec: &ProgramSpec,
    interface: &str,
    attach_type: TcAttachType,
    api: TcApi,
    rank: u16,
) -> Result<Attachment, BpfError> {
    let attach_err = |source| BpfError::Attach {
        name: spec.name,
        source,
    };
    match api {
        TcApi::Tcx => {
            let options = TcAttachOptions::TcxOrder(LinkOrder::default());
            let id = program.attach_with_options(interface, attach_type, options);
            super::programs::fd_link(spec, id.and_then(|id| program.take_link(id)))
                .map(Attachment::Link)
        }
        TcApi::Netlink => {
            match tc::qdisc_add_clsact(interface) {
                Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                other => other.map_err(|e| attach_err(e.into()))?,
            }
            detach_filters(interface, spec, attach_type)?;
            let options = TcAttachOptions::Netlink(NlOptions {
                priority: PRIORITY + rank,
                ..NlOptions::default()
            });
            let id = program
                .attach_with_options(interface, attach_type, options)
                .map_err(attach_err)?;
            let filter = program.take_link(id).map_err(attach_err)?;
            Ok(Attachment::Filter(filter))
        }
    }
}

/// Deletes the netlink filters of the program `spec` names from `interface`
/// (none is fine).
pub fn detach_filters(
    interface: &str,
    spec: &ProgramSpec,
    attach_type: TcAttachType,
) -> Result<(), BpfError> {
    match tc::qdisc_detach_program(interface, attach_type, spec.name) {
        Ok(()) => Ok(()),
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BpfError::Attach {
            name: spec.name,
            source: e.into(),
        }),
    }
}

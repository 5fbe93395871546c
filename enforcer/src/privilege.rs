//! Least privilege. Root's power is needed to start: creating the maps,
//! loading and attaching the programs (`CAP_BPF`, `CAP_PERFMON`,
//! `CAP_NET_ADMIN`), mounting bpffs, turning on BPF run-time statistics
//! (`CAP_SYS_ADMIN`). Once the daemon has attached, written its policies and
//! bound its sockets, it keeps only what it still needs and drops every other
//! capability from its effective, permitted, inheritable, bounding and ambient
//! sets, so that a daemon taken over is no longer root.
//!
//! Enforcing, reloading, healing from the daemon's own namespace and
//! uninstalling need none: on the kernels the enforcer runs on (6.1 and
//! later) bpf(2) checks capabilities when a map or program is created, not
//! when a descriptor the daemon already holds is used (map reads and writes, the control program's test runs,
//! links), and the pins are files of the daemon's own. What is kept is for the
//! optional [`Feature`]s the configuration asks for.
//!
//! [`plan`] (pure) decides what is kept for a configuration and what the
//! process holds; [`drop_to`] applies it.

use std::{fmt, io};

use rustix::thread::{self as caps, CapabilitySet, CapabilitySets};

/// A feature that needs capabilities after the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// The cgroup's packet programs (`sock_out`, `sock_in`), attached only
    /// while a policy learns from response latency or a chaos fault drops
    /// SYNs: the kernel checks `CAP_NET_ADMIN` when a cgroup_skb program is
    /// attached (anyone may load one).
    SocketPackets,
    /// The packet plane (`daemon.interfaces`): programs attached to an
    /// interface through netlink (TC on kernels without tcx links, before
    /// 6.6) are detached through netlink too, which needs `CAP_NET_ADMIN`.
    PacketPlane,
    /// Entering other network namespaces (`setns`): learning their cookies
    /// (so that status and metrics name them) and healing from inside them.
    EnterNamespaces,
    /// Finding the namespaces of processes that hold capabilities the daemon
    /// does not (their `/proc/PID/ns/net` is behind a ptrace access check).
    FindNamespaces,
    /// BPF run-time statistics: turned on at start (host-wide) and read per
    /// program by id, which the kernel allows only with `CAP_SYS_ADMIN`.
    RunStats,
}

impl Feature {
    pub const ALL: [Self; 5] = [
        Self::SocketPackets,
        Self::PacketPlane,
        Self::EnterNamespaces,
        Self::FindNamespaces,
        Self::RunStats,
    ];

    /// What it needs. Finding namespaces is of no use without entering them.
    pub const fn needs(self) -> CapabilitySet {
        match self {
            Self::SocketPackets | Self::PacketPlane => CapabilitySet::NET_ADMIN,
            Self::EnterNamespaces | Self::RunStats => CapabilitySet::SYS_ADMIN,
            Self::FindNamespaces => CapabilitySet::SYS_ADMIN.union(CapabilitySet::SYS_PTRACE),
        }
    }

    /// The configuration key that asks for it (for the packet programs,
    /// what they are).
    pub const fn field(self) -> &'static str {
        match self {
            Self::SocketPackets => "the cgroup's packet programs (sock_out, sock_in)",
            Self::PacketPlane => "daemon.interfaces",
            Self::EnterNamespaces | Self::FindNamespaces => "daemon.enter_namespaces",
            Self::RunStats => "daemon.bpf_run_stats",
        }
    }

    /// What is lost without it.
    pub const fn lost(self) -> &'static str {
        match self {
            Self::SocketPackets => {
                "policies learning from response latency and chaos faults that drop SYNs \
                 started after the start cannot attach the packet programs they need"
            }
            Self::PacketPlane => {
                "packet-plane programs attached through netlink cannot be detached by an \
                 uninstall through the daemon"
            }
            Self::EnterNamespaces => {
                "destinations in other network namespaces are not healed (counted as \
                 enforcer_healing_skipped_total{reason=\"netns_not_permitted\"}) and \
                 namespaces that appear after the start are not named"
            }
            Self::FindNamespaces => {
                "namespaces held only by processes with capabilities the daemon lacks \
                 are not found (shown as unknown, not healed)"
            }
            Self::RunStats => "no enforcer_bpf_program_runs_total / _run_seconds_total",
        }
    }

    fn wanted(self, wants: Wants) -> bool {
        match self {
            Self::SocketPackets => wants.socket_packets,
            Self::PacketPlane => wants.packet_plane,
            Self::EnterNamespaces | Self::FindNamespaces => wants.enter_namespaces,
            Self::RunStats => wants.run_stats,
        }
    }
}

/// What the configuration asks for that needs capabilities after the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Features that attach the cgroup's packet programs may start at any
    /// time (a policy set, a chaos experiment): always.
    pub socket_packets: bool,
    /// `daemon.interfaces` is not empty.
    pub packet_plane: bool,
    /// `daemon.enter_namespaces`
    pub enter_namespaces: bool,
    /// `daemon.bpf_run_stats`
    pub run_stats: bool,
}

/// What the daemon keeps, and what that leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Kept in the effective, permitted and bounding sets.
    pub keep: CapabilitySet,
    /// Held at start and dropped.
    pub dropped: CapabilitySet,
    /// Features asked for and on.
    pub on: Vec<Feature>,
    /// Features asked for but off, with the capabilities they miss.
    pub off: Vec<(Feature, CapabilitySet)>,
}

impl Plan {
    pub fn has(&self, feature: Feature) -> bool {
        self.on.contains(&feature)
    }
}

/// What to keep of `held` (the permitted set at start) for `wants`.
pub fn plan(wants: Wants, held: CapabilitySet) -> Plan {
    let mut keep = CapabilitySet::empty();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for feature in Feature::ALL.into_iter().filter(|f| f.wanted(wants)) {
        let lacking = feature.needs().difference(held);
        if lacking.is_empty() {
            keep |= feature.needs();
            on.push(feature);
        } else {
            off.push((feature, lacking));
        }
    }
    Plan {
        keep,
        dropped: held.difference(keep),
        on,
        off,
    }
}

/// Capability names as `capabilities(7)` spells them, by number.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A set written as `CAP_A, CAP_B` (`none` when empty).
pub struct Names(pub CapabilitySet);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let bits = self.0.bits();
        let mut first = true;
        for n in (0..64).filter(|n| bits & (1 << n) != 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match NAMES.get(n) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "CAP_{n}")?,
            }
        }
        Ok(())
    }
}

/// The log lines that say what `plan` keeps and what is off because of it.
pub fn describe(plan: &Plan) -> Vec<String> {
    let mut lines = vec![format!(
        "capabilities kept: {}; dropped: {}",
        Names(plan.keep),
        Names(plan.dropped)
    )];
    let entering_is_off = plan.off.iter().any(|(f, _)| *f == Feature::EnterNamespaces);
    for (feature, lacking) in &plan.off {
        if *feature == Feature::FindNamespaces && entering_is_off {
            continue; // said already: finding is of no use without entering
        }
        let verb = if lacking.bits().count_ones() > 1 {
            "are"
        } else {
            "is"
        };
        let asked = match feature {
            Feature::SocketPackets => format!("attaching {} needs it", feature.field()),
            _ => format!("{} is set", feature.field()),
        };
        lines.push(format!(
            "{asked}, but {} {verb} missing: {}",
            Names(*lacking),
            feature.lost()
        ));
    }
    lines
}

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// Capabilities belong to threads: a thread started before the drop would
    /// keep everything.
    #[error("capabilities are per thread, and the daemon already runs {0} threads")]
    Threads(usize),
    #[error("{what}: {source}")]
    Syscall {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("after dropping, the daemon still holds {0} (it should hold {1})")]
    Left(String, String),
}

fn syscall<T>(what: &'static str, result: rustix::io::Result<T>) -> Result<T, DropError> {
    result.map_err(|e| DropError::Syscall {
        what,
        source: e.into(),
    })
}

/// The capabilities the process holds (its permitted set).
pub fn held() -> io::Result<CapabilitySet> {
    Ok(caps::capabilities(None)?.permitted)
}

/// The number of the highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// `Threads:` of a `/proc/PID/status` text.
fn thread_count(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// What [`drop_to`] could not do (never a reason to stop).
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Left in the bounding set for want of `CAP_SETPCAP`. Harmless: with
    /// `no_new_privs` set, no exec can bring them back.
    pub bounding_left: CapabilitySet,
}

/// Keeps only `keep` in the effective, permitted and bounding sets, empties
/// the inheritable and ambient sets, and sets `no_new_privs` (so that no
/// exec, of a set-user-ID program or as uid 0, can gain anything back).
/// Call it while the process has a single thread: capabilities are per thread,
/// and threads started later inherit the reduced sets.
pub fn drop_to(keep: CapabilitySet) -> Result<Dropped, DropError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match thread_count(&status) {
        Some(1) => {}
        Some(n) => return Err(DropError::Threads(n)),
        None => {
            return Err(DropError::Syscall {
                what: "reading Threads: in /proc/self/status",
                source: io::Error::from(io::ErrorKind::InvalidData),
            });
        }
    }
    let keep = keep & syscall("capget", caps::capabilities(None))?.permitted;
    let mut dropped = Dropped {
        bounding_left: CapabilitySet::empty(),
    };
    // First the bounding set: dropping from it needs CAP_SETPCAP, which goes
    // with the rest below.
    for n in 0..=last_cap().min(63) {
        let cap = CapabilitySet::from_bits_retain(1 << n);
        if keep.contains(cap) || !caps::capability_is_in_bounding_set(cap).unwrap_or(false) {
            continue;
        }
        match caps::remove_capability_from_bounding_set(cap) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) => dropped.bounding_left |= cap,
            Err(e) => return syscall("prctl(PR_CAPBSET_DROP)", Err(e)),
        }
    }
    syscall(
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
        caps::clear_ambient_capability_set(),
    )?;
    syscall(
        "capset",
        caps::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        ),
    )?;
    syscall("prctl(PR_SET_NO_NEW_PRIVS)", caps::set_no_new_privs(true))?;
    let now = syscall("capget", caps::capabilities(None))?;
    if now.permitted != keep || now.effective != keep || !now.inheritable.is_empty() {
        return Err(DropError::Left(
            Names(now.permitted | now.effective | now.inheritable).to_string(),
            Names(keep).to_string(),
        ));
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the systemd unit grants: what the start needs.
    const UNIT: CapabilitySet = CapabilitySet::BPF
        .union(CapabilitySet::NET_ADMIN)
        .union(CapabilitySet::PERFMON)
        .union(CapabilitySet::SETPCAP);

    const NAMESPACES: CapabilitySet = CapabilitySet::SYS_ADMIN.union(CapabilitySet::SYS_PTRACE);

    fn wants(packet_plane: bool, enter_namespaces: bool, run_stats: bool) -> Wants {
        Wants {
            socket_packets: false,
            packet_plane,
            enter_namespaces,
            run_stats,
        }
    }

    #[test]
    fn the_packet_programs_keep_what_attaching_them_takes() {
        let asked = Wants {
            socket_packets: true,
            ..Wants::default()
        };
        let p = plan(asked, UNIT);
        assert_eq!(p.keep, CapabilitySet::NET_ADMIN);
        assert_eq!(p.on, [Feature::SocketPackets]);
        let p = plan(asked, CapabilitySet::BPF);
        assert_eq!(p.keep, CapabilitySet::empty());
        assert_eq!(p.off, [(Feature::SocketPackets, CapabilitySet::NET_ADMIN)]);
        assert!(
            describe(&p)[1].starts_with(
                "attaching the cgroup's packet programs (sock_out, sock_in) needs it, but \
                 CAP_NET_ADMIN is missing: policies learning from response latency"
            ),
            "{:?}",
            describe(&p)
        );
    }

    #[test]
    fn enforcing_alone_keeps_nothing() {
        let p = plan(wants(false, false, false), CapabilitySet::all());
        assert_eq!(p.keep, CapabilitySet::empty());
        assert_eq!(p.dropped, CapabilitySet::all());
        assert!(p.on.is_empty() && p.off.is_empty());
        let p = plan(wants(false, false, false), UNIT);
        assert_eq!((p.keep, p.dropped), (CapabilitySet::empty(), UNIT));
    }

    #[test]
    fn root_keeps_only_what_the_wanted_features_need() {
        let root = CapabilitySet::all();
        let p = plan(wants(false, true, false), root);
        assert_eq!(p.keep, NAMESPACES);
        assert_eq!(p.on, [Feature::EnterNamespaces, Feature::FindNamespaces]);
        assert!(
            p.dropped
                .contains(CapabilitySet::BPF | CapabilitySet::DAC_OVERRIDE)
        );

        let p = plan(wants(false, false, true), root);
        assert_eq!(p.keep, CapabilitySet::SYS_ADMIN);
        assert!(p.has(Feature::RunStats));
        assert!(!p.has(Feature::EnterNamespaces));

        let p = plan(wants(true, false, false), root);
        assert_eq!(p.keep, CapabilitySet::NET_ADMIN);
        assert_eq!(p.on, [Feature::PacketPlane]);

        let p = plan(wants(true, true, true), root);
        assert_eq!(p.keep, NAMESPACES | CapabilitySet::NET_ADMIN);
        assert_eq!(p.on, Feature::ALL[1..]);
    }

    #[test]
    fn a_feature_whose_capabilities_were_not_granted_is_off_and_says_why() {
        let p = plan(wants(true, true, true), UNIT);
        assert_eq!(p.keep, CapabilitySet::NET_ADMIN);
        assert_eq!(p.on, [Feature::PacketPlane]);
        assert_eq!(
            p.off,
            [
                (Feature::EnterNamespaces, CapabilitySet::SYS_ADMIN),
                (Feature::FindNamespaces, NAMESPACES),
                (Feature::RunStats, CapabilitySet::SYS_ADMIN),
            ]
        );
        let lines = describe(&p);
        assert_eq!(
            lines[0],
            "capabilities kept: CAP_NET_ADMIN; dropped: CAP_SETPCAP, CAP_PERFMON, CAP_BPF"
        );
        assert!(
            lines[1].starts_with(
                "daemon.enter_namespaces is set, but CAP_SYS_ADMIN is missing: destinations in other network namespaces are not healed"
            ),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("daemon.bpf_run_stats is set, but"),
            "{lines:?}"
        );
        assert_eq!(
            lines.len(),
            3,
            "finding namespaces goes without saying: {lines:?}"
        );

        // Entering without finding: only CAP_SYS_PTRACE is missing.
        let p = plan(wants(false, true, false), UNIT | CapabilitySet::SYS_ADMIN);
        assert_eq!(p.on, [Feature::EnterNamespaces]);
        assert_eq!(
            p.off,
            [(Feature::FindNamespaces, CapabilitySet::SYS_PTRACE)]
        );
        assert_eq!(p.keep, CapabilitySet::SYS_ADMIN);
        let lines = describe(&p);
        assert!(
            lines[1].starts_with(
                "daemon.enter_namespaces is set, but CAP_SYS_PTRACE is missing: namespaces held only"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn names_follow_capabilities_7() {
        assert_eq!(Names(CapabilitySet::empty()).to_string(), "none");
        assert_eq!(
            Names(CapabilitySet::CHOWN | CapabilitySet::CHECKPOINT_RESTORE).to_string(),
            "CAP_CHOWN, CAP_CHECKPOINT_RESTORE"
        );
        assert_eq!(
            Names(CapabilitySet::from_bits_retain(1 << 45)).to_string(),
            "CAP_45"
        );
        // The table agrees with the kernel's numbering as rustix has it.
        for (cap, name) in [
            (CapabilitySet::NET_ADMIN, "CAP_NET_ADMIN"),
            (CapabilitySet::SYS_PTRACE, "CAP_SYS_PTRACE"),
            (CapabilitySet::SYS_ADMIN, "CAP_SYS_ADMIN"),
            (CapabilitySet::PERFMON, "CAP_PERFMON"),
            (CapabilitySet::BPF, "CAP_BPF"),
        ] {
            assert_eq!(Names(cap).to_string(), name);
        }
    }

    #[test]
    fn the_thread_count_is_read_from_proc_status() {
        assert_eq!(thread_count("Name:\tx\nThreads:\t3\nCpus:\t1\n"), Some(3));
        assert_eq!(thread_count("Name:\tx\n"), None);
    }
}

//! The daemon's start, in steps: check the input, bind the sockets, take the
//! pin directory, install (or adopt) the programs, watch the interfaces, then
//! build the state and apply the policies. Everything that can be the
//! operator's mistake is checked before anything is attached.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use tokio::sync::broadcast;

use super::{
    Listeners, RunningPolicy, Shared, apply,
    classes::{self, RunningClass},
    heal, private_dir, saved, skb_hooks,
    state::Daemon,
    workloads,
};
use crate::{
    bpf::{BpfError, Enforcer, Installed, LoadOptions, PacketHook, pins::PinDir},
    cgroup,
    clock::Jitter,
    config::{Config, DaemonOverrides},
    netns::Registry,
    privilege,
};

/// How `enforcer run` was asked to run.
pub struct RunOptions {
    pub config: Config,
    pub config_path: PathBuf,
    pub overrides: DaemonOverrides,
    pub detach_on_exit: bool,
}

/// The cgroup to attach to: as configured, or the cgroup v2 root.
pub fn attach_point(configured: &std::path::Path) -> anyhow::Result<PathBuf> {
    if configured.as_os_str().is_empty() {
        return cgroup::v2_mount().context("finding the cgroup v2 root");
    }
    anyhow::ensure!(
        cgroup::is_v2_dir(configured),
        "daemon.cgroup: {} is not a cgroup v2 directory",
        configured.display()
    );
    Ok(configured.to_owned())
}

/// The programs let the daemon's own connects pass by the pid the kernel
/// knows it by, the host's: in a PID namespace of its own, the pid it would
/// write names another process. The initial PID namespace has a fixed inode
/// (`PROC_PID_INIT_INO`, include/linux/proc_ns.h); a process's own view of
/// /proc (`NSpid`) cannot tell, since a container mounts its own.
fn host_pid_namespace() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    let ino = std::fs::metadata("/proc/self/ns/pid")
        .context("reading /proc/self/ns/pid")?
        .ino();
    anyhow::ensure!(
        ino == PROC_PID_INIT_INO,
        "the daemon runs in a PID namespace of its own (pid:[{ino}]): it must run in the host's (hostPID), whose pids the kernel's programs see"
    );
    Ok(())
}

/// Why the daemon could not start. Nothing that was running has changed: the
/// checks and the pin directory's lock come before any write.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration names something that is not there or is taken (a
    /// cgroup, a busy pin directory, pins attached elsewhere).
    #[error("{0:#}")]
    BadInput(anyhow::Error),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// What [`start`] hands to [`settle`] and [`serve`].
pub struct Started {
    pub shared: Shared,
    /// Held while the daemon runs: no other daemon may use the pins.
    pub pin_lock: crate::bpf::pins::PinLock,
    pub listeners: Listeners,
}

/// Binds the sockets, installs or adopts, applies the policies: everything
/// before serving. The sockets come first: a busy address must stop the
/// start before anything is attached.
pub fn start(options: RunOptions) -> Result<Started, StartError> {
    use StartError::{BadInput, Failed};
    let RunOptions {
        config,
        config_path,
        overrides,
        ..
    } = options;
    let (cgroup, classes) = check(&config).map_err(BadInput)?;
    let listeners = Listeners::bind(&config.daemon).map_err(BadInput)?;
    let (pins, pin_lock) = take_pins(&config.daemon.pin_dir)?;
    let (mut enforcer, installed) = install(&config, &pins, &cgroup)?;
    crate::crash::point("start.installed");
    watch_interfaces(&mut enforcer, &pins, &config)?;
    match installed {
        Installed::Fresh => tracing::info!(
            "attached to {} (pins in {})",
            cgroup.display(),
            pins.root().display()
        ),
        Installed::Adopted => tracing::info!(
            "adopted the programs attached to {} (pins in {})",
            cgroup.display(),
            pins.root().display()
        ),
    }
    let shared = build(
        config,
        config_path,
        overrides,
        pins,
        enforcer,
        installed,
        classes,
    )
    .map_err(Failed)?;
    Ok(Started {
        shared,
        pin_lock,
        listeners,
    })
}

/// What can be checked before anything is bound or written; the cgroup to
/// attach to and the classes, their cgroups found.
fn check(config: &Config) -> anyhow::Result<(PathBuf, Vec<RunningClass>)> {
    host_pid_namespace()?;
    let cgroup = attach_point(&config.daemon.cgroup)?;
    apply::check(&config.policies)?;
    let classes = classes::resolve(&config.classes)?;

    for interface in &config.daemon.interfaces {
        crate::bpf::if_index(interface).context("daemon.interfaces")?;
    }
    // Directories another user could write into would let them redirect the
    // daemon's (root's) writes or impersonate its socket.
    private_dir::check(&config.daemon.state_dir, "daemon.state_dir")?;
    if let Some(dir) = config.daemon.socket.parent() {
        private_dir::check(dir, "daemon.socket")?;
    }
    Ok((cgroup, classes))
}

/// Creates the pin directory and takes its lock: one daemon per directory.
fn take_pins(dir: &Path) -> Result<(PinDir, crate::bpf::pins::PinLock), StartError> {
    let pins = PinDir::new(dir);
    pins.create()
        .context("creating the pin directory")
        .map_err(StartError::Failed)?;
    let lock = pins.lock().map_err(|e| match e {
        BpfError::Busy { .. } => StartError::BadInput(e.into()),
        e => StartError::Failed(e.into()),
    })?;
    Ok((pins, lock))
}

/// Installs the programs into `pins` and attaches them to `cgroup`, or adopts
/// the installation already there.
fn install(
    config: &Config,
    pins: &PinDir,
    cgroup: &Path,
) -> Result<(Enforcer, Installed), StartError> {
    let load = LoadOptions {
        dests_capacity: config.daemon.dests_capacity,
        conns_capacity: config.daemon.conns_capacity,
        flows_capacity: config.daemon.flows_capacity,
        rules_capacity: config.daemon.rules_capacity,
    };
    Enforcer::install(&load, pins, cgroup).map_err(|e| {
        let bad_input = matches!(
            e,
            BpfError::AttachedElsewhere { .. }
                | BpfError::Occupied { .. }
                | BpfError::Layout { .. }
        );
        let e = anyhow::Error::new(e).context(format!("installing into {}", pins.root().display()));
        if bad_input {
            StartError::BadInput(e)
        } else {
            StartError::Failed(e)
        }
    })
}

/// Attaches the packet plane to `daemon.interfaces` (or adopts its pins).
fn watch_interfaces(
    enforcer: &mut Enforcer,
    pins: &PinDir,
    config: &Config,
) -> Result<(), StartError> {
    let daemon = &config.daemon;
    let watched = enforcer
        .interfaces()
        .watch_pinned(pins, &daemon.interfaces, daemon.packet_hook)
        .map_err(|e| {
            // A forced hook the driver refuses is the operator's choice.
            let bad_input =
                daemon.packet_hook == PacketHook::Xdp && matches!(e, BpfError::Attach { .. });
            let e = anyhow::Error::new(e).context("attaching to daemon.interfaces");
            if bad_input {
                StartError::BadInput(e)
            } else {
                StartError::Failed(e)
            }
        })?;
    for w in &watched {
        tracing::info!(
            "watching {} (ingress {}, tc through {}{})",
            w.interface,
            w.ingress,
            w.tc,
            if w.adopted { ", adopted" } else { "" }
        );
    }
    Ok(())
}

/// The state, once installed: the kernel's configuration for this process
/// and its classes, the policies (as saved at runtime, or as configured)
/// written under their ids. Nothing in here is the operator's input.
fn build(
    config: Config,
    config_path: PathBuf,
    overrides: DaemonOverrides,
    pins: PinDir,
    mut enforcer: Enforcer,
    installed: Installed,
    classes: Vec<RunningClass>,
) -> anyhow::Result<Shared> {
    let kernel_logs = config
        .daemon
        .kernel_log
        .then(|| open_kernel_logs(&enforcer, &pins, installed))
        .flatten();
    configure_kernel(&mut enforcer, &config, kernel_logs.is_some())?;
    // On this (the main) thread: the registry takes the daemon's namespace
    // from the thread that creates it.
    let namespaces = Arc::new(Registry::new().context("learning the host's network namespaces")?);
    let wants = privilege::Wants {
        socket_packets: true,
        packet_plane: !config.daemon.interfaces.is_empty(),
        enter_namespaces: config.daemon.enter_namespaces,
        run_stats: config.daemon.bpf_run_stats,
    };
    let privilege = privilege::plan(wants, privilege::held().context("reading capabilities")?);
    let config_fingerprint =
        saved::fingerprint(&std::fs::read_to_string(&config_path).unwrap_or_default());
    let policies = policies_to_run(&config, config_fingerprint);
    // Sockets and destinations a previous daemon's programs admitted hold its
    // ids: a policy it ran keeps its id here.
    let running = apply::running_ids(&apply::kernel_epochs(&enforcer)?, &policies);
    let ids = apply::assign_ids(&running, &policies);
    let (events, _) = broadcast::channel(1024);
    let mut daemon = Daemon {
        enforcer,
        chaos: super::chaos::Experiments::load(&config.daemon.state_dir),
        config,
        config_path,
        config_fingerprint,
        overrides,
        pins,
        policies: Vec::new(),
        classes,
        jitter: Jitter::seeded(),
        open: HashSet::new(),
        learning: Default::default(),
        baselines: Default::default(),
        outliers: Default::default(),
        ejections: Default::default(),
        healing: heal::Healing::default(),
        namespaces,
        events,
        event_counts: HashMap::new(),
        flows_tracked: 0,
        privilege,
        run_stats: None,
        kernel_logs,
        workloads: workloads::Workloads::new(
            crate::cgroup::v2_mount().context("finding the cgroup v2 hierarchy")?,
        ),
        ready: false,
        uninstall_requested: false,
    };
    apply::apply(&mut daemon.enforcer, &policies, &ids, &mut daemon.jitter)?;
    daemon.policies = RunningPolicy::set(policies, ids);
    // The classes and what the selectors match now, replacing what an
    // earlier daemon left.
    workloads::sync(&mut daemon).context("the workload selectors")?;
    skb_hooks::sync(&mut daemon, false).context("the cgroup's packet programs")?;
    daemon.ready = true;
    Ok(Arc::new(Mutex::new(daemon)))
}

/// What every program reads about this daemon: its pid (whose own connects
/// pass), the packet plane's timeouts, whether anyone reads the kernel logs.
fn configure_kernel(
    enforcer: &mut Enforcer,
    config: &Config,
    kernel_logs: bool,
) -> Result<(), BpfError> {
    let config_map = &mut enforcer.maps_mut().config;
    let kernel_config = config_map.get()?;
    let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    config_map.set(enforcer_common::config::Config {
        bypass_tgid: std::process::id(),
        flow_syn_timeout_ms: millis(config.daemon.flow_syn_timeout),
        flow_idle_timeout_ms: millis(config.daemon.flow_idle_timeout),
        // Only with a reader: lines nobody reads are not worth their cost.
        kernel_log: kernel_logs.into(),
        // Faults a predecessor left armed belong to experiments whose safety
        // valve nobody runs any more: they end now, not at their deadline.
        chaos_armed: 0,
        ..kernel_config
    })
}

/// The policy set to run: as changed at runtime and saved for this
/// configuration file, or as configured.
fn policies_to_run(config: &Config, fingerprint: u64) -> Vec<crate::config::PolicySpec> {
    match saved::load(&config.daemon.state_dir, config, fingerprint) {
        Ok(Some(saved)) => {
            tracing::info!("restored {} policies changed at runtime", saved.len());
            saved
        }
        Ok(None) => config.policies.clone(),
        Err(e) => {
            tracing::warn!("ignoring the saved runtime policies: {e}");
            config.policies.clone()
        }
    }
}

/// The reader of the programs' kernel logs, or `None` (said in the log):
/// kernel logs are a diagnostic, never a reason not to start. Without a
/// reader the programs' flag stays off, and they skip every log call.
fn open_kernel_logs(
    enforcer: &Enforcer,
    pins: &PinDir,
    installed: Installed,
) -> Option<crate::bpf::KernelLogger> {
    match enforcer.kernel_logger(pins) {
        Ok(logger) => {
            tracing::info!("daemon.kernel_log: the programs' rare paths are logged here");
            Some(logger)
        }
        Err(e) => {
            let how = match installed {
                Installed::Fresh => "the programs just loaded",
                Installed::Adopted => "the adopted programs (pinned by an earlier daemon)",
            };
            tracing::warn!(
                "daemon.kernel_log: cannot read the kernel logs of {how}: {e}; \
                 the daemon runs without them (the metrics still count every case)"
            );
            None
        }
    }
}

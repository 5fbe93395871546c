//! `enforcer run`: the daemon. It installs (or adopts) the pinned programs, writes
//! the policies, and then serves the control API and the metrics while the
//! controller loop re-jitters backoff tables, heals, collects garbage and expires
//! overrides, and the event reader turns kernel transitions into logs.
//!
//! Everything shared lives in one [`Daemon`] behind a mutex: every operation on it
//! is a handful of map syscalls, and one lock keeps API, controller and event
//! reader from interleaving half-done changes.

pub mod api;
pub mod apply;
mod control_socket;
pub mod controller;
pub mod events;
mod flows;
pub mod heal;
mod kernel_log;
pub mod logs;
pub mod metrics;
mod notices;
mod private_dir;
pub mod saved;
pub mod scan;
mod series;
pub mod view;

use std::{
    collections::{HashMap, HashSet},
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use anyhow::Context as _;
use enforcer_common::dest::DestKey;
use tokio::sync::broadcast;

use crate::{
    bpf::{BpfError, Enforcer, Installed, LoadOptions, PacketHook, pins::PinDir},
    cgroup,
    clock::Jitter,
    config::{Config, DaemonOverrides, PolicySpec},
    netns::Registry,
    privilege::{self, Feature, Plan},
};

/// The daemon's state.
pub struct Daemon {
    pub enforcer: Enforcer,
    pub config: Config,
    /// Where the configuration came from, for reloads.
    pub config_path: PathBuf,
    /// Fingerprint of that file's text (see [`saved`]).
    pub config_fingerprint: u64,
    pub overrides: DaemonOverrides,
    pub pins: PinDir,
    /// The running policy set, in configuration order.
    pub policies: Vec<RunningPolicy>,
    pub jitter: Jitter,
    /// Destinations not CLOSED: kept current by the event reader, re-learnt by
    /// the controller's periodic scan.
    pub open: HashSet<DestKey>,
    /// Healers and the choice among open destinations ([`heal`]).
    pub healing: heal::Healing,
    /// The host's network namespaces by cookie: how destinations' namespaces
    /// are shown and named, and where healing probes are made from.
    pub namespaces: Arc<Registry>,
    /// Events for `enforcer events` followers.
    pub events: broadcast::Sender<crate::api::Event>,
    /// Kernel events read, by kind name.
    pub event_counts: HashMap<&'static str, u64>,
    /// The capabilities kept after the start, and the optional features
    /// that are on ([`privilege`]).
    pub privilege: Plan,
    /// Open while the kernel's BPF run-time statistics are on for us
    /// (`daemon.bpf_run_stats`).
    pub run_stats: Option<OwnedFd>,
    /// The reader of the programs' kernel logs (`daemon.kernel_log`), until
    /// [`serve`] hands it to its task.
    pub kernel_logs: Option<crate::bpf::KernelLogger>,
    /// Set once the programs are attached and the policies written.
    pub ready: bool,
    /// Set by `enforcer uninstall` through the API: detach and exit.
    pub uninstall_requested: bool,
}

/// A policy as it runs.
pub struct RunningPolicy {
    pub spec: PolicySpec,
    /// Its kernel id. Ids stay with their policy's name across changes:
    /// destinations and the group guard's counts refer to them.
    pub id: u32,
    /// When its backoff table was last re-jittered.
    pub jittered_at: Instant,
}

impl RunningPolicy {
    /// A set as written into the kernel under `ids`.
    fn set(specs: Vec<PolicySpec>, ids: Vec<u32>) -> Vec<Self> {
        let now = Instant::now();
        specs
            .into_iter()
            .zip(ids)
            .map(|(spec, id)| Self {
                spec,
                id,
                jittered_at: now,
            })
            .collect()
    }
}

pub type Shared = Arc<Mutex<Daemon>>;

/// Locks the daemon; a panic elsewhere must not take the API down with it.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Daemon> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Daemon {
    /// The running policy with kernel id `id`.
    pub fn policy(&self, id: u32) -> Option<&PolicySpec> {
        self.policies.iter().find(|p| p.id == id).map(|p| &p.spec)
    }

    /// The running policy named `name`.
    pub fn policy_by_name(&self, name: &str) -> Option<&RunningPolicy> {
        self.policies.iter().find(|p| p.spec.name == name)
    }

    /// The running set's specifications, to change and apply.
    pub fn specs(&self) -> Vec<PolicySpec> {
        self.policies.iter().map(|p| p.spec.clone()).collect()
    }

    /// The name of policy `id` ("?" for an id no policy has).
    pub fn policy_name(&self, id: u32) -> &str {
        self.policy(id).map_or("?", |p| p.name.as_str())
    }

    /// A runtime change of the policy set (API, CLI): applied, then saved so that
    /// it survives a restart on the same configuration file.
    pub fn change_policies(&mut self, specs: Vec<PolicySpec>) -> Result<(), apply::ApplyError> {
        self.set_policies(specs)?;
        if let Err(e) = saved::save(
            &self.config.daemon.state_dir,
            self.config_fingerprint,
            &self.specs(),
        ) {
            tracing::warn!("saving the runtime policies: {e} (they last until the next start)");
        }
        Ok(())
    }

    /// Replaces the running policy set (validated) in the kernel. Policies keep
    /// their ids by name; new ones take free ids.
    pub fn set_policies(&mut self, specs: Vec<PolicySpec>) -> Result<(), apply::ApplyError> {
        let _span = tracing::info_span!("apply", policies = specs.len()).entered();
        let previous: Vec<(&str, u32)> = self
            .policies
            .iter()
            .map(|p| (p.spec.name.as_str(), p.id))
            .collect();
        let ids = apply::assign_ids(&previous, &specs);
        apply::apply(&mut self.enforcer, &specs, &ids, &mut self.jitter)?;
        self.policies = RunningPolicy::set(specs, ids);
        self.publish(notices::daemon_event(
            "policies_applied",
            None,
            &format!("{} policies", self.policies.len()),
        ));
        Ok(())
    }

    /// Logs an event and sends it to `enforcer events` followers (none
    /// listening is fine).
    pub fn publish(&self, event: crate::api::Event) {
        tracing::info!(
            target: "enforcer::events",
            kind = %event.kind,
            dest = ?event.dest,
            netns = ?event.netns.as_ref().and_then(|n| n.netns),
            policy = ?event.policy,
            detail = ?event.detail,
            "event"
        );
        let _ = self.events.send(event);
    }
}

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
    host_pid_namespace().map_err(BadInput)?;
    let cgroup = attach_point(&config.daemon.cgroup).map_err(BadInput)?;
    apply::check(&config.policies).map_err(|e| BadInput(e.into()))?;
    for interface in &config.daemon.interfaces {
        crate::bpf::if_index(interface)
            .map_err(|e| BadInput(anyhow::Error::new(e).context("daemon.interfaces")))?;
    }
    // Directories another user could write into would let them redirect the
    // daemon's (root's) writes or impersonate its socket.
    private_dir::check(&config.daemon.state_dir, "daemon.state_dir")
        .map_err(|e| BadInput(e.into()))?;
    if let Some(dir) = config.daemon.socket.parent() {
        private_dir::check(dir, "daemon.socket").map_err(|e| BadInput(e.into()))?;
    }
    let listeners = Listeners::bind(&config.daemon).map_err(BadInput)?;
    let pins = PinDir::new(&config.daemon.pin_dir);
    pins.create()
        .context("creating the pin directory")
        .map_err(Failed)?;
    let pin_lock = pins.lock().map_err(|e| match e {
        BpfError::Busy { .. } => BadInput(e.into()),
        e => Failed(e.into()),
    })?;
    let load = LoadOptions {
        dests_capacity: config.daemon.dests_capacity,
        flows_capacity: config.daemon.flows_capacity,
        rules_capacity: config.daemon.rules_capacity,
    };
    let (mut enforcer, installed) = Enforcer::install(&load, &pins, &cgroup).map_err(|e| {
        let context = format!("installing into {}", pins.root().display());
        match e {
            BpfError::AttachedElsewhere { .. } | BpfError::Layout { .. } => {
                BadInput(anyhow::Error::new(e).context(context))
            }
            e => Failed(anyhow::Error::new(e).context(context)),
        }
    })?;
    crate::crash::point("start.installed");
    let daemon = &config.daemon;
    let watched = enforcer
        .interfaces()
        .watch_pinned(&pins, &daemon.interfaces, daemon.packet_hook)
        .map_err(|e| {
            // A forced hook the driver refuses is the operator's choice.
            let bad_input =
                daemon.packet_hook == PacketHook::Xdp && matches!(e, BpfError::Attach { .. });
            let e = anyhow::Error::new(e).context("attaching to daemon.interfaces");
            if bad_input { BadInput(e) } else { Failed(e) }
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
    finish_start(
        config,
        config_path,
        overrides,
        &cgroup,
        pins,
        enforcer,
        installed,
    )
    .map(|shared| Started {
        shared,
        pin_lock,
        listeners,
    })
    .map_err(Failed)
}

/// The rest of the start, once installed: nothing in here is the operator's input.
fn finish_start(
    config: Config,
    config_path: PathBuf,
    overrides: DaemonOverrides,
    cgroup: &std::path::Path,
    pins: PinDir,
    mut enforcer: Enforcer,
    installed: Installed,
) -> anyhow::Result<Shared> {
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
    let kernel_logs = config
        .daemon
        .kernel_log
        .then(|| open_kernel_logs(&enforcer, &pins, installed))
        .flatten();
    let kernel_config = enforcer.maps().config.get()?;
    let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    enforcer
        .maps_mut()
        .config
        .set(enforcer_common::config::Config {
            bypass_tgid: std::process::id(),
            flow_syn_timeout_ms: millis(config.daemon.flow_syn_timeout),
            flow_idle_timeout_ms: millis(config.daemon.flow_idle_timeout),
            // Only with a reader: lines nobody reads are not worth their cost.
            kernel_log: kernel_logs.is_some().into(),
            ..kernel_config
        })?;
    // On this (the main) thread: the registry takes the daemon's namespace
    // from the thread that creates it.
    let namespaces = Arc::new(Registry::new().context("learning the host's network namespaces")?);
    let (events, _) = broadcast::channel(1024);
    let wants = privilege::Wants {
        packet_plane: !config.daemon.interfaces.is_empty(),
        enter_namespaces: config.daemon.enter_namespaces,
        run_stats: config.daemon.bpf_run_stats,
    };
    let privilege = privilege::plan(wants, privilege::held().context("reading capabilities")?);
    let config_fingerprint =
        saved::fingerprint(&std::fs::read_to_string(&config_path).unwrap_or_default());
    let policies = match saved::load(&config.daemon.state_dir, &config, config_fingerprint) {
        Ok(Some(saved)) => {
            tracing::info!("restored {} policies changed at runtime", saved.len());
            saved
        }
        Ok(None) => config.policies.clone(),
        Err(e) => {
            tracing::warn!("ignoring the saved runtime policies: {e}");
            config.policies.clone()
        }
    };
    // Sockets and destinations a previous daemon's programs admitted hold its
    // ids: a policy it ran keeps its id here.
    let running = apply::running_ids(&apply::kernel_epochs(&enforcer)?, &policies);
    let ids = apply::assign_ids(&running, &policies);
    let mut daemon = Daemon {
        enforcer,
        config: config.clone(),
        config_path,
        config_fingerprint,
        overrides,
        pins,
        policies: Vec::new(),
        jitter: Jitter::seeded(),
        open: HashSet::new(),
        healing: heal::Healing::default(),
        namespaces,
        events,
        event_counts: HashMap::new(),
        privilege,
        run_stats: None,
        kernel_logs,
        ready: false,
        uninstall_requested: false,
    };
    apply::apply(&mut daemon.enforcer, &policies, &ids, &mut daemon.jitter)?;
    daemon.policies = RunningPolicy::set(policies, ids);
    daemon.ready = true;
    Ok(Arc::new(Mutex::new(daemon)))
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

/// The sockets the daemon serves on, bound first of all (a metrics port
/// below 1024 needs `CAP_NET_BIND_SERVICE`, dropped later).
pub struct Listeners {
    api: std::os::unix::net::UnixListener,
    /// Removes the control socket's file when the daemon is done with it.
    api_file: control_socket::SocketFile,
    metrics: std::net::TcpListener,
}

impl Listeners {
    /// Binds both; the error names the field whose address is unusable.
    fn bind(daemon: &crate::config::DaemonConfig) -> anyhow::Result<Self> {
        let (api, api_file) = control_socket::bind(&daemon.socket)
            .with_context(|| format!("daemon.socket: binding {}", daemon.socket.display()))?;
        let metrics = std::net::TcpListener::bind(daemon.metrics)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .with_context(|| format!("daemon.metrics: binding {}", daemon.metrics))?;
        Ok(Self {
            api,
            api_file,
            metrics,
        })
    }
}

/// After the start: does what needs more than the capabilities kept (BPF
/// run-time statistics on), then drops every capability the daemon no
/// longer needs ([`privilege`]) and says what it kept. Call it before any
/// other thread starts: capabilities are per thread, and threads started
/// later inherit the reduced sets.
pub fn settle(shared: &Shared) -> anyhow::Result<()> {
    let mut d = lock(shared);
    if d.privilege.has(Feature::RunStats) {
        match crate::bpf::enable_run_stats() {
            Ok(fd) => d.run_stats = Some(fd),
            Err(e) => tracing::warn!("daemon.bpf_run_stats: statistics unavailable: {e}"),
        }
    }
    for line in privilege::describe(&d.privilege) {
        tracing::info!("{line}");
    }
    let dropped = privilege::drop_to(d.privilege.keep).context("dropping capabilities")?;
    if !dropped.bounding_left.is_empty() {
        tracing::warn!(
            "left in the bounding set for want of CAP_SETPCAP (no exec can regain them: no_new_privs is set): {}",
            privilege::Names(dropped.bounding_left)
        );
    }
    Ok(())
}

/// Serves until SIGINT/SIGTERM (or an uninstall request); SIGHUP reloads.
pub async fn serve(
    shared: Shared,
    listeners: Listeners,
    detach_on_exit: bool,
) -> anyhow::Result<()> {
    use crate::http::server::{Limits, serve as serve_http};
    use tokio::signal::unix::{SignalKind, signal};
    let Listeners {
        api,
        api_file,
        metrics,
    } = listeners;
    let api = tokio::net::UnixListener::from_std(api).context("the control socket")?;
    let metrics = tokio::net::TcpListener::from_std(metrics).context("the metrics socket")?;
    tracing::info!(
        "control socket {}, metrics on http://{}/metrics",
        api_file.path().display(),
        metrics.local_addr().context("the metrics socket")?
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let tasks = [
        tokio::spawn(serve_http(
            api,
            api::router(shared.clone(), stop_tx.clone()),
            Limits::CONTROL,
        )),
        tokio::spawn(serve_http(
            metrics,
            metrics::router(shared.clone()),
            Limits::METRICS,
        )),
        tokio::spawn(controller::run(shared.clone())),
        tokio::spawn(events::run(shared.clone())),
        tokio::spawn(lock(&shared).namespaces.clone().keep_fresh()),
    ];
    let kernel_logs = lock(&shared)
        .kernel_logs
        .take()
        .map(|logger| tokio::spawn(kernel_log::run(logger)));
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = stop_rx.changed() => break,
            _ = hup.recv() => {
                match api::reload(&shared) {
                    Ok(n) => tracing::info!("reloaded: {n} policies"),
                    Err(e) => tracing::warn!("reload rejected, the running configuration stays: {e}"),
                }
            }
        }
    }
    for task in tasks.into_iter().chain(kernel_logs) {
        task.abort();
    }
    drop(api_file);
    let mut d = lock(&shared);
    if detach_on_exit || d.uninstall_requested {
        let removed = d.pins.remove_all()?;
        tracing::info!("detached; removed {} pins", removed.len());
    } else {
        // The bypass names this process by pid: once it is gone, that pid
        // may become anyone's. Nobody reads the kernel logs any more either.
        let config = &mut d.enforcer.maps_mut().config;
        let kernel = config.get()?;
        config.set(enforcer_common::config::Config {
            bypass_tgid: 0,
            kernel_log: 0,
            ..kernel
        })?;
        tracing::info!(
            "exiting; the programs stay attached (pins in {})",
            d.pins.root().display()
        );
    }
    Ok(())
}

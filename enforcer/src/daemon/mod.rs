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
pub mod metrics;
mod notices;
mod private_dir;
pub mod saved;
pub mod scan;
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
    pub policies: Vec<PolicySpec>,
    /// The kernel id of each policy (parallel to `policies`). Ids stay with their
    /// policy's name across changes: destinations and the group guard's counts
    /// refer to them.
    pub ids: Vec<u32>,
    pub jitter: Jitter,
    /// When each policy's backoff table was last re-jittered.
    pub jittered_at: Vec<Instant>,
    /// Destinations not CLOSED: kept current by the event reader, re-learnt by
    /// the controller's periodic scan.
    pub open: HashSet<DestKey>,
    /// Healers and the choice among open destinations ([`heal`]).
    pub healing: heal::Healing,
    /// The host's network namespaces by cookie: how destinations' namespaces
    /// are shown and named, and where healing probes are made from.
    pub namespaces: Arc<Registry>,
    /// Events, as JSON lines, for `enforcer events` followers.
    pub events: broadcast::Sender<String>,
    /// Kernel events read, by kind name.
    pub event_counts: HashMap<&'static str, u64>,
    /// The capabilities kept after the start, and the optional features
    /// that are on ([`privilege`]).
    pub privilege: Plan,
    /// Open while the kernel's BPF run-time statistics are on for us
    /// (`daemon.bpf_run_stats`).
    pub run_stats: Option<OwnedFd>,
    /// Set once the programs are attached and the policies written.
    pub ready: bool,
    /// Set by `enforcer uninstall` through the API: detach and exit.
    pub uninstall_requested: bool,
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
        self.ids
            .iter()
            .position(|i| *i == id)
            .map(|i| &self.policies[i])
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
            &self.policies,
        ) {
            eprintln!(
                "enforcer: saving the runtime policies: {e} (they last until the next start)"
            );
        }
        Ok(())
    }

    /// Replaces the running policy set (validated) in the kernel. Policies keep
    /// their ids by name; new ones take free ids.
    pub fn set_policies(&mut self, specs: Vec<PolicySpec>) -> Result<(), apply::ApplyError> {
        let previous: Vec<(&str, u32)> = self
            .policies
            .iter()
            .map(|p| p.name.as_str())
            .zip(self.ids.iter().copied())
            .collect();
        let ids = apply::assign_ids(&previous, &specs);
        apply::apply(&mut self.enforcer, &specs, &ids, &mut self.jitter)?;
        self.jittered_at = vec![Instant::now(); specs.len()];
        self.policies = specs;
        self.ids = ids;
        self.publish(notices::daemon_event(
            "policies_applied",
            None,
            &format!("{} policies", self.policies.len()),
        ));
        Ok(())
    }

    /// Sends a JSON line to `enforcer events` followers (none listening is fine).
    pub fn publish(&self, line: String) {
        eprintln!("enforcer: event {line}");
        let _ = self.events.send(line);
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

/// Installs or adopts, applies the policies: everything before serving.
pub fn start(options: RunOptions) -> Result<(Shared, crate::bpf::pins::PinLock), StartError> {
    use StartError::{BadInput, Failed};
    let RunOptions {
        config,
        config_path,
        overrides,
        ..
    } = options;
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
        .watch_pinned(&pins, &daemon.interfaces, daemon.packet_hook)
        .map_err(|e| {
            // A forced hook the driver refuses is the operator's choice.
            let bad_input =
                daemon.packet_hook == PacketHook::Xdp && matches!(e, BpfError::Attach { .. });
            let e = anyhow::Error::new(e).context("attaching to daemon.interfaces");
            if bad_input { BadInput(e) } else { Failed(e) }
        })?;
    for w in &watched {
        eprintln!(
            "enforcer: watching {} (ingress {}, tc through {}{})",
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
    .map(|shared| (shared, pin_lock))
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
        Installed::Fresh => eprintln!(
            "enforcer: attached to {} (pins in {})",
            cgroup.display(),
            pins.root().display()
        ),
        Installed::Adopted => eprintln!(
            "enforcer: adopted the programs attached to {} (pins in {})",
            cgroup.display(),
            pins.root().display()
        ),
    }
    let kernel_config = enforcer.config()?;
    let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    enforcer.set_config(enforcer_common::config::Config {
        bypass_tgid: std::process::id(),
        flow_syn_timeout_ms: millis(config.daemon.flow_syn_timeout),
        flow_idle_timeout_ms: millis(config.daemon.flow_idle_timeout),
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
            eprintln!(
                "enforcer: restored {} policies changed at runtime",
                saved.len()
            );
            saved
        }
        Ok(None) => config.policies.clone(),
        Err(e) => {
            eprintln!("enforcer: ignoring the saved runtime policies: {e}");
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
        ids: Vec::new(),
        jitter: Jitter::seeded(),
        jittered_at: Vec::new(),
        open: HashSet::new(),
        healing: heal::Healing::default(),
        namespaces,
        events,
        event_counts: HashMap::new(),
        privilege,
        run_stats: None,
        ready: false,
        uninstall_requested: false,
    };
    apply::apply(&mut daemon.enforcer, &policies, &ids, &mut daemon.jitter)?;
    daemon.jittered_at = vec![Instant::now(); policies.len()];
    daemon.policies = policies;
    daemon.ids = ids;
    daemon.ready = true;
    Ok(Arc::new(Mutex::new(daemon)))
}

/// The sockets the daemon serves on, bound before it drops its capabilities
/// (a metrics port below 1024 needs `CAP_NET_BIND_SERVICE`).
pub struct Listeners {
    api: std::os::unix::net::UnixListener,
    metrics: std::net::TcpListener,
}

/// After the start: does what needs more than the capabilities kept (BPF
/// run-time statistics on, sockets bound), then drops every capability the
/// daemon no longer needs ([`privilege`]) and says what it kept. Call it before
/// any other thread starts: capabilities are per thread, and threads started
/// later inherit the reduced sets.
pub fn settle(shared: &Shared) -> anyhow::Result<Listeners> {
    let mut d = lock(shared);
    if d.privilege.has(Feature::RunStats) {
        match crate::bpf::enable_run_stats() {
            Ok(fd) => d.run_stats = Some(fd),
            Err(e) => eprintln!("enforcer: daemon.bpf_run_stats: statistics unavailable: {e}"),
        }
    }
    let (socket, metrics_addr) = (d.config.daemon.socket.clone(), d.config.daemon.metrics);
    let api = control_socket::bind(&socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    let metrics = std::net::TcpListener::bind(metrics_addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("binding the metrics address {metrics_addr}"))?;
    for line in privilege::describe(&d.privilege) {
        eprintln!("enforcer: {line}");
    }
    let dropped = privilege::drop_to(d.privilege.keep).context("dropping capabilities")?;
    if !dropped.bounding_left.is_empty() {
        eprintln!(
            "enforcer: left in the bounding set for want of CAP_SETPCAP (no exec can regain them: no_new_privs is set): {}",
            privilege::Names(dropped.bounding_left)
        );
    }
    Ok(Listeners { api, metrics })
}

/// Serves until SIGINT/SIGTERM (or an uninstall request); SIGHUP reloads.
pub async fn serve(
    shared: Shared,
    listeners: Listeners,
    detach_on_exit: bool,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (socket, metrics_addr) = {
        let d = lock(&shared);
        (d.config.daemon.socket.clone(), d.config.daemon.metrics)
    };
    let api = tokio::net::UnixListener::from_std(listeners.api).context("the control socket")?;
    let metrics =
        tokio::net::TcpListener::from_std(listeners.metrics).context("the metrics socket")?;
    eprintln!(
        "enforcer: control socket {}, metrics on http://{metrics_addr}/metrics",
        socket.display()
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let tasks = [
        tokio::spawn(api::serve(api, shared.clone(), stop_tx.clone())),
        tokio::spawn(metrics::serve(metrics, shared.clone())),
        tokio::spawn(controller::run(shared.clone())),
        tokio::spawn(events::run(shared.clone())),
        tokio::spawn(lock(&shared).namespaces.clone().keep_fresh()),
    ];
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = stop_rx.changed() => break,
            _ = hup.recv() => {
                match api::reload(&shared) {
                    Ok(n) => eprintln!("enforcer: reloaded: {n} policies"),
                    Err(e) => eprintln!("enforcer: reload rejected, the running configuration stays: {e}"),
                }
            }
        }
    }
    for task in tasks {
        task.abort();
    }
    let _ = std::fs::remove_file(&socket);
    let d = lock(&shared);
    if detach_on_exit || d.uninstall_requested {
        let removed = Enforcer::uninstall(&d.pins)?;
        eprintln!("enforcer: detached; removed {} pins", removed.len());
    } else {
        eprintln!(
            "enforcer: exiting; the programs stay attached (pins in {})",
            d.pins.root().display()
        );
    }
    Ok(())
}

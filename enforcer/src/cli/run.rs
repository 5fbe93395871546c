//! `enforcer run`: the daemon, in the foreground.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Failure;
use crate::{
    config::{self, Config, DaemonOverrides},
    daemon::{
        self, RunOptions,
        logs::{self, LogFormat},
    },
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file; the embedded defaults are used when the default path
    /// does not exist.
    #[arg(long, env = "ENFORCER_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// cgroup v2 directory whose subtree is protected (default: the cgroup v2
    /// root, i.e. the whole host). Overrides `daemon.cgroup`.
    #[arg(long, env = "ENFORCER_CGROUP")]
    cgroup: Option<PathBuf>,
    /// Pin directory. Overrides `daemon.pin_dir`.
    #[arg(long, env = "ENFORCER_PIN_DIR")]
    pin_dir: Option<PathBuf>,
    /// Control socket. Overrides `daemon.socket`.
    #[arg(long, env = "ENFORCER_SOCKET")]
    socket: Option<PathBuf>,
    /// Metrics address. Overrides `daemon.metrics`.
    #[arg(long, env = "ENFORCER_METRICS")]
    metrics: Option<String>,
    /// Interface facing guests whose connections are enforced on their packets
    /// (repeatable; comma-separated in the variable). Overrides `daemon.interfaces`.
    #[arg(long = "interface", env = "ENFORCER_INTERFACES", value_delimiter = ',')]
    interfaces: Option<Vec<String>>,
    /// At most this many destinations healed at once (most recently tripped
    /// first). Overrides `daemon.max_healers`.
    #[arg(long, env = "ENFORCER_MAX_HEALERS")]
    max_healers: Option<u32>,
    /// Share of the destination map's capacity that starts evictions.
    /// Overrides `daemon.dests_high_water`.
    #[arg(long, env = "ENFORCER_DESTS_HIGH_WATER")]
    dests_high_water: Option<f64>,
    /// Share of the destination map's capacity evictions bring it back to.
    /// Overrides `daemon.dests_low_water`.
    #[arg(long, env = "ENFORCER_DESTS_LOW_WATER")]
    dests_low_water: Option<f64>,
    /// Log the programs' rare paths (full maps, unexpected states) into the
    /// daemon's log. Overrides `daemon.kernel_log`.
    #[arg(long, env = "ENFORCER_KERNEL_LOG")]
    kernel_log: bool,
    /// Detach and unpin everything on exit instead of leaving enforcement running.
    #[arg(long)]
    detach_on_exit: bool,
    /// Log lines as text or JSON (one object per line); `RUST_LOG` filters
    /// them (default `info`).
    #[arg(long, env = "ENFORCER_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    logs::init(args.log_format);
    let overrides = DaemonOverrides {
        cgroup: args.cgroup,
        pin_dir: args.pin_dir,
        socket: args.socket,
        metrics: args.metrics,
        interfaces: args.interfaces,
        dests_high_water: args.dests_high_water,
        dests_low_water: args.dests_low_water,
        max_healers: args.max_healers,
        // The flag can only turn it on; otherwise the file decides.
        kernel_log: args.kernel_log.then_some(true),
    };
    let config = Config::load(&args.config, &overrides).map_err(|e| Failure::Usage(e.into()))?;
    let options = RunOptions {
        config,
        config_path: args.config,
        overrides,
        detach_on_exit: args.detach_on_exit,
    };
    let detach = options.detach_on_exit;
    // Anything wrong with what the configuration names (a cgroup that does not
    // exist, a busy pin directory) is bad input too: nothing changed.
    let started = daemon::start(options).map_err(|e| match e {
        daemon::StartError::BadInput(e) => Failure::Usage(e),
        daemon::StartError::Failed(e) => Failure::Runtime(e),
    })?;
    // Before the runtime's threads exist: capabilities are per thread.
    daemon::settle(&started.shared).map_err(Failure::Runtime)?;
    let daemon::Started {
        shared,
        pin_lock: _pin_lock,
        listeners,
    } = started;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Failure::Runtime)?;
    runtime
        .block_on(daemon::serve(shared, listeners, detach))
        .map_err(Failure::Runtime)
}

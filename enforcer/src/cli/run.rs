//! `enforcer run`: the daemon, in the foreground.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use enforcer_common::counters::GlobalCounter;

use super::Failure;
use crate::{
    bpf::{Enforcer, LoadOptions},
    cgroup,
    config::{self, Config},
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
}

pub fn execute(args: Args) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| Failure::Usage(e.into()))?;
    let cgroup = resolve_cgroup(args.cgroup.unwrap_or(config.daemon.cgroup.clone()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Failure::Runtime)?;
    runtime
        .block_on(serve(&config, cgroup))
        .map_err(Failure::Runtime)
}

/// The cgroup to attach to: as configured, or the cgroup v2 root.
fn resolve_cgroup(configured: PathBuf) -> Result<PathBuf, Failure> {
    if configured.as_os_str().is_empty() {
        return cgroup::v2_mount()
            .context("finding the cgroup v2 root")
            .map_err(Failure::Runtime);
    }
    if !cgroup::is_v2_dir(&configured) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "cgroup: {} is not a cgroup v2 directory",
            configured.display()
        )));
    }
    Ok(configured)
}

async fn serve(config: &Config, cgroup: PathBuf) -> anyhow::Result<()> {
    let options = LoadOptions {
        dests_capacity: config.daemon.dests_capacity,
    };
    let mut enforcer = Enforcer::load(&options).context("loading the kernel programs")?;
    enforcer
        .attach(&cgroup)
        .with_context(|| format!("attaching to {}", cgroup.display()))?;
    eprintln!("enforcer: attached to {}", cgroup.display());

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let interval = config.daemon.report_interval;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            () = sleep_or_forever(interval) => report(&enforcer),
        }
    }
    eprintln!("enforcer: detaching and exiting");
    Ok(())
}

async fn sleep_or_forever(interval: Duration) {
    if interval.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(interval).await;
}

/// One summary line: what the programs have seen so far.
fn report(enforcer: &Enforcer) {
    let tracked = enforcer.dests().map(|d| d.len());
    let counters: Vec<String> = GlobalCounter::ALL
        .iter()
        .map(|&c| match enforcer.counter(c) {
            Ok(v) => format!("{}={v}", c.name()),
            Err(e) => format!("{}=error({e})", c.name()),
        })
        .collect();
    match tracked {
        Ok(n) => eprintln!("enforcer: destinations={n} {}", counters.join(" ")),
        Err(e) => eprintln!("enforcer: reading destinations: {e}"),
    }
}

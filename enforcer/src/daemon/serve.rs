//! Serving: the API and metrics listeners, the controller, the event reader
//! and the kernel-log reader as tasks; signals; and what stays behind when
//! the daemon exits.

use anyhow::Context as _;

use super::{
    Daemon, Listeners, Shared, api, baselines, controller, events, kernel_log, learn, lock,
    metrics, outliers, workloads,
};

/// Serves until SIGINT/SIGTERM (or an uninstall request); SIGHUP reloads.
pub async fn serve(
    shared: Shared,
    listeners: Listeners,
    detach_on_exit: bool,
) -> anyhow::Result<()> {
    use crate::http::server::{Limits, serve as serve_http};
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        tokio::spawn(learn::run(shared.clone())),
        tokio::spawn(outliers::run(shared.clone())),
        tokio::spawn(baselines::run(shared.clone())),
        tokio::spawn(events::run(shared.clone())),
        tokio::spawn(workloads::run(shared.clone())),
        tokio::spawn(lock(&shared).namespaces.clone().keep_fresh()),
    ];
    let kernel_logs = lock(&shared)
        .kernel_logs
        .take()
        .map(|logger| tokio::spawn(kernel_log::run(logger)));
    wait_for_stop(&shared, stop_rx).await?;
    for task in tasks.into_iter().chain(kernel_logs) {
        task.abort();
    }
    drop(api_file);
    leave(&mut lock(&shared), detach_on_exit)
}

/// Until SIGINT, SIGTERM or an uninstall request; SIGHUP reloads meanwhile.
async fn wait_for_stop(
    shared: &Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = stop.changed() => return Ok(()),
            _ = hup.recv() => {
                match api::reload(shared) {
                    Ok(n) => tracing::info!("reloaded: {n} policies"),
                    Err(e) => tracing::warn!("reload rejected, the running configuration stays: {e}"),
                }
            }
        }
    }
}

/// What the daemon leaves behind: nothing when asked to detach, otherwise the
/// pinned programs, enforcing, with no process passing them.
fn leave(d: &mut Daemon, detach: bool) -> anyhow::Result<()> {
    if detach || d.uninstall_requested {
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

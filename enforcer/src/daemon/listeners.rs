//! The sockets the daemon serves on.

use anyhow::Context as _;

use super::control_socket;

/// The sockets the daemon serves on, bound first of all (a metrics port
/// below 1024 needs `CAP_NET_BIND_SERVICE`, dropped later).
pub struct Listeners {
    pub(super) api: std::os::unix::net::UnixListener,
    /// Removes the control socket's file when the daemon is done with it.
    pub(super) api_file: control_socket::SocketFile,
    pub(super) metrics: std::net::TcpListener,
}

impl Listeners {
    /// Binds both; the error names the field whose address is unusable.
    pub(super) fn bind(daemon: &crate::config::DaemonConfig) -> anyhow::Result<Self> {
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

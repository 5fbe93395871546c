//! Serving a router on a listener with bounds on everything a client
//! controls: any local user can reach the metrics port, so a client that
//! trickles bytes, never finishes its headers, sends a huge body or opens
//! thousands of connections must cost the daemon a bounded amount and never
//! stall the other clients.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::DefaultBodyLimit, serve::Listener};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as it is
    /// accepted (the backlog stays empty, and the daemon's descriptors
    /// bounded).
    pub connections: usize,
    /// The whole head (request line and headers), and hyper's read buffer.
    pub head_bytes: usize,
    /// A request body (policy sets); larger ones answer 413.
    pub body_bytes: usize,
    /// A connection must deliver each request's head within this, counted
    /// from when the daemon starts waiting for it: slow and idle clients are
    /// cut off.
    pub head_timeout: Duration,
    /// Each chunk of a request body must come within this.
    pub body_timeout: Duration,
}

impl Limits {
    /// The control socket: root only, policy sets as bodies, `events`
    /// followers that stay for hours (a response, so no timeout applies).
    pub const CONTROL: Self = Self {
        connections: 64,
        head_bytes: 16 * 1024,
        body_bytes: 1024 * 1024,
        head_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
    /// The metrics listener: anyone on the host, GETs only.
    pub const METRICS: Self = Self {
        connections: 32,
        head_bytes: 16 * 1024,
        body_bytes: 0,
        head_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
}

/// Serves `router` on `listener` until the task is dropped. Accept errors
/// (EMFILE) back off in the listener (axum's, one second).
pub async fn serve<L: Listener>(mut listener: L, router: Router, limits: Limits) {
    let router = router
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let permits = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (io, _) = listener.accept().await;
        // Over the limit, shed at once: a client that parks connections
        // keeps at most `connections` of them, each until its deadline.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(io);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = http1::Builder::new();
            conn.timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .max_buf_size(limits.head_bytes.max(MIN_BUF))
                .max_headers(MAX_HEADERS);
            // An error here is the client's (a malformed or slow request)
            // and ends only its connection.
            let _ = conn.serve_connection(TokioIo::new(io), service).await;
        });
    }
}

/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8192;
/// Headers per request: curl and Prometheus send fewer than 10.
const MAX_HEADERS: usize = 32;

//! The loopback server of the connect loop: a thread that accepts and closes.
//!
//! The harness's `AcceptingServer`, pinned to its own CPU, away from the
//! measured client, so that a wake-up of the server never preempts the connect
//! being timed.

use std::net::{SocketAddrV4, TcpListener};

use enforcer_tests::net::{AcceptingServer, RefusingPort};

use crate::client;

pub struct AcceptAndClose {
    pub addr: SocketAddrV4,
    _server: AcceptingServer,
}

impl AcceptAndClose {
    /// Listens on a free 127.0.0.1 port with a 1024-deep backlog (the std default
    /// of 128 can fill while the client runs ahead, and a full queue drops SYNs:
    /// a one-second stall) and serves from a thread pinned to `cpu`, if any.
    pub fn start(cpu: Option<usize>) -> Self {
        let listener: TcpListener = RefusingPort::loopback_v4().listen();
        let std::net::SocketAddr::V4(addr) = listener.local_addr().expect("local_addr") else {
            unreachable!("bound on 127.0.0.1")
        };
        let pin = move || {
            if let Some(cpu) = cpu {
                client::pin_to_cpu(cpu);
            }
        };
        Self {
            addr,
            _server: AcceptingServer::serve_with(listener, pin, drop),
        }
    }
}

//! The loopback server of the connect loop: a thread that accepts and closes.
//!
//! Like the harness's `AcceptingServer`, but pinned to its own CPU, away from
//! the measured client, so that a wake-up of the server never preempts the
//! connect being timed.

use std::{
    net::{SocketAddrV4, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use enforcer_tests::net::RefusingPort;

use crate::client;

pub struct AcceptAndClose {
    pub addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                if let Some(cpu) = cpu {
                    client::pin_to_cpu(cpu);
                }
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    drop(conn);
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for AcceptAndClose {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

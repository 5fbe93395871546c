//! Real endpoints for tests: listening servers and ports that refuse.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    io::Errno,
    net::{AddressFamily, SendFlags, Shutdown, SocketFlags, SocketType, socket_with, sockopt},
};

/// A TCP server that accepts and closes every connection, on its own thread.
pub struct AcceptingServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The network namespace it listens in, when not the test's own: the
    /// wake-up connect on drop must come from there.
    netns: Option<OwnedFd>,
}

impl AcceptingServer {
    pub fn bind(addr: &str) -> Self {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        Self::serve(listener)
    }

    /// Binds `addr` inside the network namespace (from a thread that enters it).
    pub fn bind_in(netns: &crate::netns::NetNs, addr: SocketAddr) -> Self {
        let ns = netns.open();
        let listener = std::thread::spawn(move || {
            crate::netns::enter_raw(&ns).expect("setns");
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in netns: {e}"))
        })
        .join()
        .expect("binding in the namespace");
        Self::serve_in(netns, listener)
    }

    /// Accepts on `listener`, which listens inside `netns`, until dropped.
    pub fn serve_in(netns: &crate::netns::NetNs, listener: TcpListener) -> Self {
        let mut server = Self::serve(listener);
        server.in_netns(netns);
        server
    }

    /// Says that the listener listens inside `netns` (where the wake-up
    /// connect on drop must come from).
    pub fn in_netns(&mut self, netns: &crate::netns::NetNs) {
        self.listens_in(netns.open());
    }

    /// As [`Self::in_netns`], the namespace given open.
    pub fn listens_in(&mut self, netns: OwnedFd) {
        self.netns = Some(netns);
    }

    /// Accepts on `listener` until dropped.
    pub fn serve(listener: TcpListener) -> Self {
        Self::serve_with(listener, || {}, drop)
    }

    /// Accepts on `listener` from a thread that first runs `setup` (say, pinning
    /// itself to a CPU) and hands every connection to `handle`, until dropped
    /// (which also closes the listener).
    pub fn serve_with<S, H>(listener: TcpListener, setup: S, mut handle: H) -> Self
    where
        S: FnOnce() + Send + 'static,
        H: FnMut(TcpStream) + Send + 'static,
    {
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                setup();
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        handle(conn);
                    }
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
            netns: None,
        }
    }
}

impl Drop for AcceptingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`, from where it listens;
        // again while refused (a test's firewall may refuse some SYNs).
        let addr = self.addr;
        let wake = move || {
            for _ in 0..100 {
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    break;
                }
            }
        };
        match self.netns.take() {
            None => wake(),
            Some(ns) => {
                let _ = std::thread::spawn(move || {
                    if crate::netns::enter_raw(&ns).is_ok() {
                        wake();
                    }
                })
                .join();
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to each of `addrs` from `threads` threads of its own, each
/// closing every connection at once and pausing `pause` before the next,
/// for `run` (refusals and rejections are expected); a connect gives up
/// after `timeout`. A slow destination slows only its own threads.
pub fn connect_loop(
    addrs: &[SocketAddr],
    threads: usize,
    pause: Duration,
    timeout: Duration,
    run: Duration,
) {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for addr in addrs.iter().flat_map(|a| std::iter::repeat_n(a, threads)) {
            s.spawn(move || {
                while start.elapsed() < run {
                    let _ = TcpStream::connect_timeout(addr, timeout);
                    std::thread::sleep(pause);
                }
            });
        }
    });
}

/// A port with a TCP socket bound but not listening: SYNs to it get a RST, and
/// nobody else can take the port while this lives.
pub struct RefusingPort {
    pub addr: SocketAddr,
    _socket: OwnedFd,
}

impl RefusingPort {
    /// On 127.0.0.1.
    pub fn loopback_v4() -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap())
    }

    /// On `addr` (port 0 picks a free one).
    pub fn bind(addr: SocketAddr) -> Self {
        // std has no bind-without-listen.
        let socket = tcp_socket(addr.is_ipv4(), false);
        rustix::net::bind(&socket, &addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let bound = rustix::net::getsockname(&socket).expect("getsockname");
        let bound = SocketAddr::try_from(bound).expect("an IP socket's address");
        Self {
            addr: SocketAddr::new(addr.ip(), bound.port()),
            _socket: socket,
        }
    }

    /// Starts listening on the same port: from now on it accepts.
    pub fn listen(self) -> TcpListener {
        listen_fd(&self._socket).unwrap_or_else(|e| panic!("listen: errno {e}"));
        TcpListener::from(self._socket)
    }
}

/// A free loopback port (bound, read, released).
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A blocking `connect()` that reports the raw errno of a failure.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, i32> {
    TcpStream::connect(addr).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A non-blocking socket whose `connect()` has been called: the socket, and
/// `Ok(())` when it is under way (EINPROGRESS) or done, or the errno.
pub fn connect_nonblocking(addr: SocketAddr) -> (OwnedFd, Result<(), i32>) {
    let socket = tcp_socket(addr.is_ipv4(), true);
    let result = connect_fd(&socket, addr);
    (socket, result)
}

/// A new TCP socket (IPv4 or IPv6), non-blocking or not.
pub fn tcp_socket(ipv4: bool, nonblocking: bool) -> OwnedFd {
    let family = if ipv4 {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let mut flags = SocketFlags::CLOEXEC;
    if nonblocking {
        flags |= SocketFlags::NONBLOCK;
    }
    socket_with(family, SocketType::STREAM, flags, None).expect("socket")
}

/// `connect()` on an existing socket: `Ok(())` when done or under way
/// (EINPROGRESS), or the errno.
pub fn connect_fd(socket: &OwnedFd, addr: SocketAddr) -> Result<(), i32> {
    match rustix::net::connect(socket, &addr) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(()),
        Err(e) => Err(e.raw_os_error()),
    }
}

/// A `connect()` to `addr` from a new socket bound to 127.0.0.1, which fakes a
/// destination off the host safely: the gate sees it as any connect, then it
/// fails inside `connect()` before any packet leaves (EINVAL where a route to
/// `addr` exists, the source being loopback's; ENETUNREACH where none does).
pub fn connect_from_loopback(addr: SocketAddr) -> Result<(), i32> {
    let socket = tcp_socket(true, false);
    bind_fd(&socket, "127.0.0.1:0".parse().unwrap()).expect("bind");
    connect_fd(&socket, addr)
}

/// The errnos of [`connect_from_loopback`] to a destination off the host.
pub const LOCAL_CONNECT_ERRORS: [i32; 2] = [
    Errno::INVAL.raw_os_error(),
    Errno::NETUNREACH.raw_os_error(),
];

/// `bind()` on an existing socket.
pub fn bind_fd(socket: &OwnedFd, addr: SocketAddr) -> Result<(), i32> {
    rustix::net::bind(socket, &addr).map_err(Errno::raw_os_error)
}

/// `listen()` on a bound socket.
pub fn listen_fd(socket: &OwnedFd) -> Result<(), i32> {
    rustix::net::listen(socket, 1024).map_err(Errno::raw_os_error)
}

/// `connect()` with `AF_UNSPEC`: dissolves the association (a connect in
/// SYN_SENT is disconnected).
pub fn disconnect(socket: &OwnedFd) -> Result<(), i32> {
    rustix::net::connect_unspec(socket).map_err(Errno::raw_os_error)
}

/// `shutdown(SHUT_RDWR)`.
pub fn shutdown(socket: &OwnedFd) -> Result<(), i32> {
    rustix::net::shutdown(socket, Shutdown::Both).map_err(Errno::raw_os_error)
}

/// Sets an integer socket option.
pub fn set_int_option(socket: &OwnedFd, level: i32, option: i32, value: i32) -> Result<(), i32> {
    // libc: rustix has no raw setsockopt, nor TCP_FASTOPEN or
    // TCP_FASTOPEN_CONNECT (what the tests set through this).
    // SAFETY: an int option value of the size passed, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

/// The socket's pending error (`SO_ERROR`, 0 for none), which reading clears.
pub fn take_error(socket: &OwnedFd) -> i32 {
    match sockopt::socket_error(socket).expect("SO_ERROR") {
        Ok(()) => 0,
        Err(e) => e.raw_os_error(),
    }
}

/// Waits (poll, up to `timeout`) until a non-blocking connect on `socket` is
/// done one way or the other; its result (`SO_ERROR`, 0 = connected).
pub fn connect_result(socket: &OwnedFd, timeout: Duration) -> Option<i32> {
    connect_done(socket, timeout).then(|| take_error(socket))
}

/// Waits (poll, up to `timeout`) until a non-blocking connect on `socket` is
/// done one way or the other, leaving its result (`SO_ERROR`) unread; false
/// on timeout.
pub fn connect_done(socket: &OwnedFd, timeout: Duration) -> bool {
    let timeout = Timespec::try_from(timeout).expect("a timeout in range");
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    poll(&mut fds, Some(&timeout)).is_ok_and(|ready| ready > 0)
}

/// `sendto(MSG_FASTOPEN)`: connects and sends `data` in one call (TCP Fast
/// Open); the bytes sent, or the errno.
pub fn send_fast_open(socket: &OwnedFd, addr: SocketAddr, data: &[u8]) -> Result<usize, i32> {
    // rustix's `SendFlags` names no MSG_FASTOPEN but passes on flags it does not
    // name (bitflags' "externally defined flags").
    let fast_open = SendFlags::from_bits_retain(libc::MSG_FASTOPEN as u32);
    rustix::net::sendto(socket, data, fast_open, &addr).map_err(Errno::raw_os_error)
}

/// `write()` of `data` on a connected socket: the bytes written, or the errno.
pub fn write_fd(socket: &OwnedFd, data: &[u8]) -> Result<usize, i32> {
    rustix::io::write(socket, data).map_err(Errno::raw_os_error)
}

/// Closes `socket` with a RST instead of a FIN (SO_LINGER with a zero timeout).
pub fn close_with_rst(socket: OwnedFd) {
    let _ = sockopt::set_socket_linger(&socket, Some(Duration::ZERO));
    drop(socket);
}

/// A server that holds every connection until the client closes it, and records
/// the most it ever held at once.
pub struct HoldingServer {
    pub addr: SocketAddr,
    max_concurrent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl HoldingServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let (current, max_concurrent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (max, stop) = (max_concurrent.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let (current, max) = (current.clone(), max.clone());
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                        current.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        Self {
            addr,
            max_concurrent,
            stop,
        }
    }
}

impl HoldingServer {
    /// The most connections it held at once.
    pub fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

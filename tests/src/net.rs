//! Real endpoints for tests: listening servers and ports that refuse.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
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
        self.netns = Some(netns.open());
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
        // Wake the accept loop so it sees `stop`, from where it listens.
        let addr = self.addr;
        match self.netns.take() {
            None => drop(TcpStream::connect(addr)),
            Some(ns) => {
                let _ = std::thread::spawn(move || {
                    if crate::netns::enter_raw(&ns).is_ok() {
                        let _ = TcpStream::connect(addr);
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
        // std has no bind-without-listen; a listener's address tells us a free port,
        // and a raw socket takes it over.
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket syscall.
        let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is owned here.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let (storage, len) = sockaddr(addr);
        // SAFETY: storage holds a valid sockaddr of `len` bytes.
        let rc = unsafe { libc::bind(socket.as_raw_fd(), (&raw const storage).cast(), len) };
        assert_eq!(rc, 0, "bind {addr}: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_storage is plain integers and bytes: all zeroes is a
        // valid value of it.
        let mut bound: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut bound_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: valid out-pointers.
        let rc = unsafe {
            libc::getsockname(socket.as_raw_fd(), (&raw mut bound).cast(), &mut bound_len)
        };
        assert_eq!(rc, 0);
        let port = u16::from_be(if addr.is_ipv4() {
            // SAFETY: the kernel filled a sockaddr_in for an AF_INET socket.
            unsafe { (*(&raw const bound).cast::<libc::sockaddr_in>()).sin_port }
        } else {
            // SAFETY: and a sockaddr_in6 for AF_INET6.
            unsafe { (*(&raw const bound).cast::<libc::sockaddr_in6>()).sin6_port }
        });
        Self {
            addr: SocketAddr::new(addr.ip(), port),
            _socket: socket,
        }
    }

    /// Starts listening on the same port: from now on it accepts.
    pub fn listen(self) -> TcpListener {
        // SAFETY: listen on a bound socket we own.
        let rc = unsafe { libc::listen(self._socket.as_raw_fd(), 1024) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
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
    let domain = if ipv4 { libc::AF_INET } else { libc::AF_INET6 };
    let flags = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket syscall.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | flags | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned here.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `connect()` on an existing socket: `Ok(())` when done or under way
/// (EINPROGRESS), or the errno.
pub fn connect_fd(socket: &OwnedFd, addr: SocketAddr) -> Result<(), i32> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes.
    let rc = unsafe { libc::connect(socket.as_raw_fd(), (&raw const storage).cast(), len) };
    errno_of(rc).or_else(|e| {
        if e == libc::EINPROGRESS {
            Ok(())
        } else {
            Err(e)
        }
    })
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
pub const LOCAL_CONNECT_ERRORS: [i32; 2] = [libc::EINVAL, libc::ENETUNREACH];

/// `bind()` on an existing socket.
pub fn bind_fd(socket: &OwnedFd, addr: SocketAddr) -> Result<(), i32> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes.
    errno_of(unsafe { libc::bind(socket.as_raw_fd(), (&raw const storage).cast(), len) })
}

/// `listen()` on a bound socket.
pub fn listen_fd(socket: &OwnedFd) -> Result<(), i32> {
    // SAFETY: plain syscall on a socket we own.
    errno_of(unsafe { libc::listen(socket.as_raw_fd(), 1024) })
}

/// `connect()` with `AF_UNSPEC`: dissolves the association (a connect in
/// SYN_SENT is disconnected).
pub fn disconnect(socket: &OwnedFd) -> Result<(), i32> {
    // SAFETY: all-zero is a valid sockaddr; AF_UNSPEC is 0.
    let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    // SAFETY: a valid sockaddr of the size passed.
    errno_of(unsafe {
        libc::connect(
            socket.as_raw_fd(),
            &raw const unspec,
            size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    })
}

/// `shutdown(SHUT_RDWR)`.
pub fn shutdown(socket: &OwnedFd) -> Result<(), i32> {
    // SAFETY: plain syscall on a socket we own.
    errno_of(unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) })
}

/// Sets an integer socket option.
pub fn set_int_option(socket: &OwnedFd, level: i32, option: i32, value: i32) -> Result<(), i32> {
    // SAFETY: an int option value of the size passed.
    errno_of(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
}

/// The socket's pending error (`SO_ERROR`), which reading clears.
pub fn take_error(socket: &OwnedFd) -> i32 {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: an int out-buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "SO_ERROR: {}", std::io::Error::last_os_error());
    value
}

/// Waits (poll, up to `timeout`) until a non-blocking connect on `socket` is
/// done one way or the other; its result (`SO_ERROR`, 0 = connected).
pub fn connect_result(socket: &OwnedFd, timeout: std::time::Duration) -> Option<i32> {
    connect_done(socket, timeout).then(|| take_error(socket))
}

/// Waits (poll, up to `timeout`) until a non-blocking connect on `socket` is
/// done one way or the other, leaving its result (`SO_ERROR`) unread; false
/// on timeout.
pub fn connect_done(socket: &OwnedFd, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    ready > 0
}

/// `sendto(MSG_FASTOPEN)`: connects and sends `data` in one call (TCP Fast
/// Open); the bytes sent, or the errno.
pub fn send_fast_open(socket: &OwnedFd, addr: SocketAddr, data: &[u8]) -> Result<usize, i32> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: a valid buffer and sockaddr of the sizes passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_FASTOPEN,
            (&raw const storage).cast(),
            len,
        )
    };
    usize::try_from(sent).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
}

/// `write()` of `data` on a connected socket: the bytes written, or the errno.
pub fn write_fd(socket: &OwnedFd, data: &[u8]) -> Result<usize, i32> {
    // SAFETY: a valid buffer of the size passed.
    let n = unsafe { libc::write(socket.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
}

fn errno_of(rc: i32) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

/// Closes `socket` with a RST instead of a FIN (SO_LINGER with a zero timeout).
pub fn close_with_rst(socket: OwnedFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid option value on a socket we own.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(socket);
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

//! Network namespaces. The kernel names a destination's namespace by its cookie
//! (`bpf_get_netns_cookie`); userspace learns a namespace's cookie from a socket
//! created in it (`SO_NETNS_COOKIE`, Linux ≥ 5.14). Operators name a namespace
//! by its inode (what `ip netns identify`, `lsns -t net` and `readlink
//! /proc/PID/ns/net` print) or by its name under `/run/netns`: the
//! [`Registry`] maps cookies to those.
//!
//! Entering a namespace (`setns`) changes the calling thread for good, so it is
//! only ever done on a short-lived thread of our own that ends right after —
//! never on a runtime worker, which would carry the namespace into unrelated
//! work.

mod discover;
mod registry;

use std::{
    fmt,
    fs::File,
    io, mem,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    str::FromStr,
    sync::Arc,
};

pub use registry::{Label, Registry, Resolution};
use rustix::{
    net::{AddressFamily, SocketFlags, SocketType},
    thread::{LinkNameSpaceType, move_into_link_name_space},
};

/// `SO_NETNS_COOKIE` (`asm-generic/socket.h`); not exported by the libc crate,
/// and rustix has no getter for it (only `SO_COOKIE`'s): read with a raw
/// `getsockopt`.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Where `ip netns add NAME` binds named namespaces.
pub const NAMED_DIR: &str = "/run/netns";

/// The cookie of the network namespace `socket` was created in.
pub fn cookie_of(socket: &impl AsRawFd) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid fd, and an out-buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cookie of the calling thread's network namespace.
pub fn own_cookie() -> io::Result<u64> {
    // A Unix socket exists in every namespace, needs no address and sends
    // nothing (an inet socket would need a loopback that may be down).
    cookie_of(&socket(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::empty(),
    )?)
}

/// A new socket (close-on-exec) in the calling thread's network namespace.
fn socket(domain: AddressFamily, kind: SocketType, flags: SocketFlags) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        domain,
        kind,
        flags | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Moves the calling thread into the network namespace open as `handle`.
fn enter(handle: &File) -> io::Result<()> {
    Ok(move_into_link_name_space(
        handle.as_fd(),
        Some(LinkNameSpaceType::Network),
    )?)
}

/// How an operator names a namespace (`--netns`): its inode, or its name under
/// [`NAMED_DIR`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Inode(u64),
    Name(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "netns: `{0}` is not a network namespace: an inode (as `ip netns identify` or `lsns -t net` print it) or a name under /run/netns"
)]
pub struct BadSelector(pub String);

impl FromStr for Selector {
    type Err = BadSelector;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadSelector(text.to_owned());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse() {
                Ok(0) | Err(_) => Err(bad()),
                Ok(inode) => Ok(Self::Inode(inode)),
            };
        }
        // A file name in /run/netns: one path component, nothing `ip netns`
        // would refuse.
        let file_name = (1..=255).contains(&text.len())
            && text != "."
            && text != ".."
            && !text.chars().any(|c| c == '/' || c.is_control());
        if file_name {
            Ok(Self::Name(text.to_owned()))
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inode(inode) => write!(f, "{inode}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Why something could not be done inside a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("entering network namespace {inode}: {source}")]
    Enter {
        inode: u64,
        #[source]
        source: io::Error,
    },
    #[error("a socket in network namespace {inode}: {source}")]
    Socket {
        inode: u64,
        #[source]
        source: io::Error,
    },
    /// The handle no longer leads where it did (never expected: a namespace
    /// cannot change while a handle on it is open; checked because a probe
    /// from the wrong namespace would reach another service).
    #[error("network namespace {inode}: a socket created in it has cookie {found}, not {expected}")]
    Mismatch {
        inode: u64,
        expected: u64,
        found: u64,
    },
    #[error("a thread to enter network namespace {inode}: {source}")]
    Thread {
        inode: u64,
        #[source]
        source: io::Error,
    },
}

/// A network namespace on this host, with an open handle on it (which keeps
/// it from being freed, so its inode and cookie stay its own).
#[derive(Debug)]
pub struct Namespace {
    pub cookie: u64,
    pub inode: u64,
    /// Its names under [`NAMED_DIR`] (usually none or one), sorted.
    pub names: Vec<String>,
    handle: File,
}

impl Namespace {
    /// The name it is shown with: the first of its names.
    pub fn name(&self) -> Option<&str> {
        self.names.first().map(String::as_str)
    }

    /// A non-blocking TCP socket created inside this namespace: a connect on
    /// it goes wherever this namespace routes, whichever thread makes it. The
    /// socket is made on a thread of its own that enters the namespace and
    /// ends right after.
    pub async fn tcp_socket(self: Arc<Self>, ipv6: bool) -> Result<OwnedFd, NetnsError> {
        let inode = self.inode;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("enforcer-netns".into())
            .spawn(move || {
                let _ = tx.send(self.tcp_socket_inside(ipv6));
            })
            .map_err(|source| NetnsError::Thread { inode, source })?;
        rx.await.unwrap_or_else(|_| {
            Err(NetnsError::Thread {
                inode,
                source: io::Error::other("the thread ended without an answer"),
            })
        })
    }

    /// Enters the namespace and makes the socket: only on a thread that ends
    /// right after.
    fn tcp_socket_inside(&self, ipv6: bool) -> Result<OwnedFd, NetnsError> {
        let inode = self.inode;
        enter(&self.handle).map_err(|source| NetnsError::Enter { inode, source })?;
        let domain = if ipv6 {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        let socket = socket(domain, SocketType::STREAM, SocketFlags::NONBLOCK)
            .map_err(|source| NetnsError::Socket { inode, source })?;
        let found = cookie_of(&socket).map_err(|source| NetnsError::Socket { inode, source })?;
        if found != self.cookie {
            return Err(NetnsError::Mismatch {
                inode,
                expected: self.cookie,
                found,
            });
        }
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_has_one_nonzero_cookie() {
        let a = own_cookie().unwrap();
        assert_ne!(a, 0);
        assert_eq!(own_cookie().unwrap(), a);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(cookie_of(&udp).unwrap(), a, "any socket of the namespace");
    }

    #[test]
    fn selectors_are_inodes_or_names() {
        assert_eq!("4026531840".parse(), Ok(Selector::Inode(4_026_531_840)));
        assert_eq!("ci-x".parse(), Ok(Selector::Name("ci-x".into())));
        assert_eq!(
            "4026531840x".parse(),
            Ok(Selector::Name("4026531840x".into()))
        );
        for bad in ["", "0", "99999999999999999999999", ".", "..", "a/b", "a\nb"] {
            let e = bad.parse::<Selector>().unwrap_err();
            assert!(e.to_string().starts_with("netns: "), "{bad:?}: {e}");
        }
        assert_eq!(Selector::Inode(7).to_string(), "7");
    }
}

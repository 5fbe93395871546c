//! Network namespaces: the kernel names a destination's namespace by its
//! cookie (`bpf_get_netns_cookie`); userspace learns a namespace's cookie from
//! a socket created in it (`SO_NETNS_COOKIE`, Linux ≥ 5.14).

use std::{io, mem, net::UdpSocket, os::fd::AsRawFd};

/// `SO_NETNS_COOKIE` (`asm-generic/socket.h`); not exported by the libc crate.
const SO_NETNS_COOKIE: libc::c_int = 71;

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
    // Any socket will do; a UDP one bound to nothing sends nothing.
    let socket = UdpSocket::bind("127.0.0.1:0").or_else(|_| UdpSocket::bind("[::1]:0"))?;
    cookie_of(&socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_has_one_nonzero_cookie() {
        let a = own_cookie().unwrap();
        assert_ne!(a, 0);
        assert_eq!(own_cookie().unwrap(), a);
    }
}

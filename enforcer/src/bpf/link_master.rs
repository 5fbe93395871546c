//! The bridge (or bond) an interface is enslaved to, asked of the kernel over
//! rtnetlink (`RTM_GETLINK`, attribute `IFLA_MASTER`) in the calling thread's
//! network namespace — `/sys/class/net` would show the namespace sysfs was
//! mounted in instead. One request and one answer: the few lines of netlink
//! needed do not warrant a netlink stack.

use std::{io, mem, os::fd::AsRawFd as _, os::fd::FromRawFd as _, os::fd::OwnedFd};

const NETLINK_ROUTE: libc::c_int = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const IFLA_MASTER: u16 = 10;

#[repr(C)]
struct Request {
    header: libc::nlmsghdr,
    info: libc::ifinfomsg,
}

/// The index of the device `ifindex` is enslaved to, or `None`.
pub fn master_of(ifindex: u32) -> io::Result<Option<u32>> {
    // SAFETY: plain socket syscall; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned here.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid value of both C structs.
    let mut request: Request = unsafe { mem::zeroed() };
    request.header.nlmsg_len = mem::size_of::<Request>() as u32;
    request.header.nlmsg_type = RTM_GETLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST;
    request.header.nlmsg_seq = 1;
    request.info.ifi_family = libc::AF_UNSPEC as u8;
    request.info.ifi_index = ifindex as i32;
    // SAFETY: a buffer of the size passed; the kernel is the peer (address 0).
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&raw const request).cast(),
            mem::size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = vec![0u8; 16 * 1024];
    // SAFETY: a buffer of the size passed.
    let got = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            answer.as_mut_ptr().cast(),
            answer.len(),
            0,
        )
    };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    parse(&answer[..got])
}

/// `IFLA_MASTER` of the first `RTM_NEWLINK` message in `answer`.
fn parse(answer: &[u8]) -> io::Result<Option<u32>> {
    let u16_at = |at: usize| {
        answer
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        answer
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed RTM_NEWLINK answer");
    let length = u32_at(0).ok_or_else(malformed)? as usize;
    match u16_at(4).ok_or_else(malformed)? {
        NLMSG_ERROR => {
            let errno = u32_at(16).ok_or_else(malformed)? as i32;
            return Err(io::Error::from_raw_os_error(-errno));
        }
        RTM_NEWLINK => {}
        _ => return Err(malformed()),
    }
    let end = length.min(answer.len());
    // Attributes follow the 16-byte header and the 16-byte ifinfomsg, each
    // a 4-byte (length, type) header and its value, padded to 4 bytes.
    let mut at = 32;
    while at + 4 <= end {
        let (len, kind) = (
            u16_at(at).ok_or_else(malformed)? as usize,
            u16_at(at + 2).ok_or_else(malformed)?,
        );
        if len < 4 {
            return Err(malformed());
        }
        if kind == IFLA_MASTER {
            return Ok(u32_at(at + 4).filter(|&m| m != 0));
        }
        at += (len + 3) & !3;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_master() {
        assert_eq!(master_of(1).unwrap(), None);
    }

    #[test]
    fn an_unknown_interface_is_an_error() {
        assert!(master_of(u32::MAX >> 1).is_err());
    }

    #[test]
    fn the_master_attribute_is_found_among_others() {
        let mut msg = vec![0u8; 32];
        msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        // IFLA_MTU (4) = 1500, then IFLA_MASTER = 7.
        for (kind, value) in [(4u16, 1500u32), (IFLA_MASTER, 7)] {
            msg.extend_from_slice(&8u16.to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(&value.to_ne_bytes());
        }
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse(&msg).unwrap(), Some(7));
        assert!(parse(&msg[..3]).is_err());
    }
}

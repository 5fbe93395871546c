//! The bridge (or bond) an interface is enslaved to, asked of the kernel over
//! rtnetlink (`RTM_GETLINK`, attribute `IFLA_MASTER`) in the calling thread's
//! network namespace — `/sys/class/net` would show the namespace sysfs was
//! mounted in instead. One request and one answer: the few lines of netlink
//! needed do not warrant a netlink stack.

use std::io;

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, recv, send, socket_with,
};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const IFLA_MASTER: u16 = 10;

/// `struct nlmsghdr` (16 bytes) then `struct ifinfomsg` (16 bytes).
const REQUEST_LEN: usize = 32;

/// The `RTM_GETLINK` request for `ifindex`, in native byte order.
fn request(ifindex: u32) -> [u8; REQUEST_LEN] {
    let mut request = [0u8; REQUEST_LEN];
    // nlmsghdr: length, type, flags, sequence, port (0: the kernel).
    request[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // ifinfomsg: family (AF_UNSPEC, 0), padding, type, then the index; flags
    // and change stay 0.
    request[20..24].copy_from_slice(&ifindex.to_ne_bytes());
    request
}

/// The index of the device `ifindex` is enslaved to, or `None`.
pub fn master_of(ifindex: u32) -> io::Result<Option<u32>> {
    // `None`: the netlink family's default protocol, `NETLINK_ROUTE`.
    let socket = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    send(&socket, &request(ifindex), SendFlags::empty())?;
    let mut answer = vec![0u8; 16 * 1024];
    let (got, _) = recv(&socket, &mut answer[..], RecvFlags::empty())?;
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

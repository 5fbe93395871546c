//! The record of an admitted socket (`CONNS`, by socket cookie), as the socket
//! hooks find it and end it.
//!
//! The gate writes the record inside `connect()`; the hook that records the
//! end which finishes the connect (a failure, or the close after a handshake)
//! removes it. A socket without a record was not admitted, or has nothing
//! left to give back.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;
use enforcer_common::{outcome::End, sock::SockInfo};

use crate::{dest::record_end, layout::TcpSock, maps::CONNS, policies::Policies};

/// The cookie of the socket a program runs for.
///
/// # Safety
/// `ctx` must be the program's own context pointer (a socket address, sock_ops,
/// socket or skb context), which is what the helper takes.
#[inline(always)]
pub unsafe fn cookie(ctx: *mut c_void) -> u64 {
    // SAFETY: the caller passes the program's context.
    unsafe { bpf_get_socket_cookie(ctx) }
}

/// A socket the gate admitted and whose end is still to come: its TCP view,
/// its cookie and its record.
pub struct Admitted {
    pub tp: Option<TcpSock>,
    pub cookie: u64,
    pub sock: &'static mut SockInfo,
}

impl Admitted {
    /// The program's socket `sk`, if it has a record. A socket whose cookie
    /// nobody asked for has none (the gate asks for the cookie of every
    /// socket it admits): the cookie is read in the socket where the
    /// kernel's layout is known, so that none is made for a socket that
    /// never needs one, and asked for otherwise.
    ///
    /// # Safety
    /// As [`cookie`]; `sk` is the same program's non-null socket.
    #[inline(always)]
    pub unsafe fn of(ctx: *mut c_void, sk: *mut c_void) -> Option<Self> {
        // SAFETY: as the caller promises.
        let tp = unsafe { TcpSock::of(sk) };
        let cookie = match tp.and_then(TcpSock::cookie) {
            Some(0) => return None,
            Some(cookie) => cookie,
            // SAFETY: as the caller promises.
            None => unsafe { cookie(ctx) },
        };
        let sock = admitted(cookie)?;
        Some(Self { tp, cookie, sock })
    }
}

/// The record of the socket `cookie` names, if the gate admitted it and its
/// end is still to come.
#[inline(always)]
pub fn admitted(cookie: u64) -> Option<&'static mut SockInfo> {
    // SAFETY: a value of CONNS, valid for the program's run; shared with the
    // other hooks of the same socket as each one's doc says.
    CONNS
        .get_ptr_mut(cookie)
        .and_then(|p| unsafe { p.as_mut() })
}

/// Records `end` for the socket `cookie`'s record, and removes the record
/// when the end finishes it.
#[inline(always)]
pub fn end(cookie: u64, sock: *mut SockInfo, end: End, policies: Policies) {
    record_end(sock, cookie, end, policies);
    if end.finishes() {
        let _ = CONNS.remove(cookie);
    }
}

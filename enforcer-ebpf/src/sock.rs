//! The record of an admitted socket (a slot of `CONNS` its cookie names), as
//! the socket hooks find it and end it.
//!
//! The gate claims a slot and writes the record inside `connect()`; the hook
//! that records the end which finishes the connect (a failure, or the close
//! after a handshake) frees it. A socket without a record was not admitted,
//! or has nothing left to give back.
//!
//! A slot is the socket's while its first field holds the socket's cookie:
//! claimed by swapping a free slot's 0 for the cookie (two CPUs cannot both
//! take it), freed by swapping it back (only by the socket whose record it
//! holds).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;
use enforcer_common::{maps::CONN_PROBES, outcome::End, sock::SockInfo};

use crate::{atomic, dest::record_end, layout::TcpSock, maps::CONNS, policies::Policies};

/// `CONNS`' capacity minus one (`enforcer_common::maps::globals::CONNS_MASK`),
/// set by the loader.
#[unsafe(no_mangle)]
static CONNS_MASK: u32 = 0;

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

/// The slots a record of `cookie` may take, in the order it takes them: the
/// one the cookie names, then slots spread over the table by an odd stride
/// (which visits every slot of a power-of-two table before repeating one).
/// Not the neighbours: the kernel hands out cookies in sequence, so
/// connections opened together (a pool) hold neighbouring slots, and a later
/// cookie named into that run would find every neighbour taken.
#[inline(always)]
fn probes(cookie: u64) -> impl Iterator<Item = u32> {
    /// 2^64 / φ, odd.
    const STRIDE: u64 = 0x9e37_79b9_7f4a_7c15;
    // SAFETY: a plain static of the object (the loader set it), read once.
    let mask = u64::from(unsafe { core::ptr::read_volatile(&CONNS_MASK) });
    (0..CONN_PROBES).map(move |i| (cookie.wrapping_add(i.wrapping_mul(STRIDE)) & mask) as u32)
}

/// The slot among `cookie`'s probes that holds its record, if any.
#[inline(always)]
fn find(cookie: u64) -> Option<u32> {
    for at in probes(cookie) {
        // A probe is below the capacity, so its slot is there: the lookup
        // cannot answer null. Were it to, the search ends, so that the
        // verifier walks on from the end it already knows instead of
        // walking the next probe once more.
        let slot = CONNS.get_ptr(at)?;
        // SAFETY: a value of CONNS, valid for the program's run.
        if atomic::load(unsafe { &raw const (*slot).cookie }) == cookie {
            return Some(at);
        }
    }
    None
}

/// The record of the socket `cookie` names, if the gate admitted it and its
/// end is still to come.
#[inline(always)]
pub fn admitted(cookie: u64) -> Option<&'static mut SockInfo> {
    if cookie == 0 {
        return None;
    }
    // Found by its index and looked up once more: a pointer carried out of
    // each probe's exit would have the verifier walk the caller's rest once
    // per probe.
    let at = find(cookie)?;
    // SAFETY: a value of CONNS, valid for the program's run, that holds this
    // socket's record; shared with the other hooks of the same socket as each
    // one's doc says.
    CONNS.get_ptr_mut(at).map(|slot| unsafe { &mut *slot })
}

/// A slot for the record of the socket `cookie`, which holds none (the gate
/// settled its previous one): the first free one among its probes; `None`
/// when all are taken.
#[inline(always)]
pub fn claim(cookie: u64) -> Option<&'static mut SockInfo> {
    // SAFETY: values of CONNS, whose first field is the owner's cookie.
    let slot = probes(cookie)
        .filter_map(|at| CONNS.get_ptr_mut(at))
        .find(|&slot| unsafe { atomic::swap_if(&raw mut (*slot).cookie, 0, cookie) })?;
    // SAFETY: as above; the slot is this socket's now.
    unsafe { slot.as_mut() }
}

/// Records `end` for the socket `cookie`'s record, and frees the record's
/// slot when the end finishes it.
#[inline(always)]
pub fn end(cookie: u64, sock: *mut SockInfo, end: End, policies: Policies) {
    record_end(sock, cookie, end, policies);
    if end.finishes() {
        free(cookie, sock);
    }
}

/// Frees the slot of the socket `cookie`'s record (unless it is no longer
/// the socket's).
#[inline(always)]
pub fn free(cookie: u64, sock: *mut SockInfo) {
    // SAFETY: a value of CONNS; its first field is the owner's cookie.
    atomic::swap_if(unsafe { &raw mut (*sock).cookie }, cookie, 0);
}

//! What the `cgroup/connect*` programs read of their context: whether the
//! socket is TCP, the destination, and the socket itself.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_sock_addr, helpers::generated::bpf_set_retval, programs::SockAddrContext,
};
use enforcer_common::dest::DestKey;

/// Return value of a `cgroup_sock_addr` program that lets the call proceed.
pub const ALLOW: i32 = 1;
/// Return value that refuses the call (with the errno set by `bpf_set_retval`).
pub const REJECT: i32 = 0;

const SOCK_STREAM: u32 = 1;
pub const IPPROTO_TCP: u32 = 6;

/// Reads one context field as a single load at a constant offset from the context
/// pointer: the verifier rejects context accesses through a modified pointer, which
/// is what a plain struct or array copy may compile to.
macro_rules! ctx_read {
    ($field:expr) => {
        // SAFETY: a field of the context the kernel handed to the program.
        unsafe { core::ptr::read_volatile($field) }
    };
}

/// The socket that connects (a full socket: the hook runs inside `connect()`).
#[inline(always)]
pub fn socket(ctx: &SockAddrContext) -> *mut c_void {
    let sa = ctx.sock_addr;
    ctx_read!(&raw const (*sa).__bindgen_anon_1.sk).cast()
}

/// Fails the connect at once with `errno`.
#[inline(always)]
pub fn reject(errno: u32) -> i32 {
    // SAFETY: plain helper call; the kernel bounds-checks the errno.
    unsafe { bpf_set_retval(-(errno as i32)) };
    REJECT
}

/// Whether the connecting socket is TCP (not UDP, raw or MPTCP).
#[inline(always)]
pub fn is_tcp(ctx: &SockAddrContext) -> bool {
    let sa = ctx.sock_addr;
    ctx_read!(&raw const (*sa).type_) == SOCK_STREAM
        && ctx_read!(&raw const (*sa).protocol) == IPPROTO_TCP
}

/// The destination of a `connect4` (which may read `user_ip4` only), in no
/// namespace yet.
#[inline(always)]
pub fn dest4(ctx: &SockAddrContext) -> DestKey {
    let sa = ctx.sock_addr;
    DestKey::from_ipv4_raw(ctx_read!(&raw const (*sa).user_ip4), user_port(sa))
}

/// The destination of a `connect6` (which may read `user_ip6` only, one
/// 32-bit word at a time), in no namespace yet.
#[inline(always)]
pub fn dest6(ctx: &SockAddrContext) -> DestKey {
    let sa = ctx.sock_addr;
    let addr = [
        ctx_read!(&raw const (*sa).user_ip6[0]),
        ctx_read!(&raw const (*sa).user_ip6[1]),
        ctx_read!(&raw const (*sa).user_ip6[2]),
        ctx_read!(&raw const (*sa).user_ip6[3]),
    ];
    DestKey::from_ipv6_raw(addr, user_port(sa))
}

/// `user_port` holds the port in network order in its low 16 bits.
#[inline(always)]
fn user_port(sa: *const bpf_sock_addr) -> u16 {
    u16::from_be(ctx_read!(&raw const (*sa).user_port) as u16)
}

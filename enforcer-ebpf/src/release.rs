//! `cgroup/sock_release`: the safety net at the end of an admitted socket's life.
//!
//! `inet_release` runs this hook *before* the protocol's close, so the state the
//! socket is in says what its application walked away from
//! ([`enforcer_common::outcome::on_release`]):
//!
//! | state      | recorded                                                        |
//! |------------|-----------------------------------------------------------------|
//! | SYN_SENT   | abandoned (timeout if its SYN was already retransmitted)        |
//! | CLOSE      | a connect that failed inside `connect()`: local error, slot back |
//! | other      | nothing, not even a lookup: the state callback reports the close |
//!
//! Every end is recorded under the destination's lock from the record's flags,
//! so whichever of this hook and `sock_ops` comes second changes nothing.
//! Always returns 1 (allow): release cannot be refused.

use aya_ebpf::{macros::cgroup_sock, programs::SockContext};
use enforcer_common::outcome::{ends_at_release, on_release};

use crate::{atomic, policies::Policies, sock, sockaddr::IPPROTO_TCP};

#[cgroup_sock(sock_release)]
pub fn track_sock_release(ctx: SockContext) -> i32 {
    // Every socket of the cgroup ends here: only a TCP one in a state whose
    // release can record an end is looked up (the close reports the others).
    // SAFETY: the kernel hands a valid context.
    let (protocol, state) = unsafe { ((*ctx.sock).protocol, (*ctx.sock).state) };
    if protocol != IPPROTO_TCP || !ends_at_release(state) {
        return 1;
    }
    // SAFETY: a cgroup_sock context is the socket itself, the program's context.
    let cookie = unsafe { sock::cookie(ctx.sock.cast()) };
    let Some(sock) = sock::admitted(cookie) else {
        return 1;
    };
    if let Some(end) = on_release(state, sock.flags, atomic::load(&raw const sock.marks)) {
        sock::end(cookie, sock, end, Policies::active());
    }
    1
}

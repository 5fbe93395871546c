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
//! | other      | nothing (the state callback reports the close), unless the      |
//! |            | callbacks could not be enabled: the slot is given back here     |
//!
//! Every end is recorded under the destination's lock from the record's flags,
//! so whichever of this hook and `sock_ops` comes second changes nothing.
//! Always returns 1 (allow): release cannot be refused.

use aya_ebpf::{macros::cgroup_sock, programs::SockContext};
use enforcer_common::outcome::on_release;

use crate::{atomic, dest, policies::Policies, sock};

#[cgroup_sock(sock_release)]
pub fn track_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: a cgroup_sock context is the socket itself.
    let Some(sock) = (unsafe { sock::admitted(ctx.sock.cast()) }) else {
        return 1;
    };
    // SAFETY: the kernel hands a valid context.
    let state = unsafe { (*ctx.sock).state };
    if let Some(end) = on_release(state, sock.flags, atomic::load(&raw const sock.marks)) {
        dest::record_end(sock, end, Policies::active());
    }
    1
}

//! `sock_out` and `sock_in` (cgroup_skb egress and ingress): the packets of
//! every socket in the cgroup. Egress drops the SYNs a chaos fault marked
//! ([`crate::chaos`]); both measure the response latency of admitted
//! sockets ([`crate::response`]).
//!
//! Every packet passes here, so the common case leaves after one lookup of
//! its socket's record (sockets the gate did not admit, and admitted ones
//! with nothing left to measure); a SYN also looks up its chaos mark while
//! a fault is armed.

use enforcer_common::sock::SockInfo;

use crate::{chaos, response, sock::Admitted};
use aya_ebpf::{
    bindings::{BPF_TCP_SYN_SENT, bpf_sock},
    helpers::{bpf_ktime_get_ns, generated::bpf_sk_fullsock},
    macros::cgroup_skb,
    programs::SkBuffContext,
};

/// Return value of a cgroup_skb program that lets the packet go.
const PASS: i32 = 1;
/// Return value that drops it (the sender sees a local transmit error, which
/// TCP treats as a lost segment: the retransmission timer runs on).
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn sock_out(ctx: SkBuffContext) -> i32 {
    let Some(sk) = full_sock(&ctx) else {
        return PASS;
    };
    // A SYN is looked at only while a fault is armed: a mark left by one
    // disarmed since makes no later fault drop anything (`drops_syn`).
    // SAFETY: a full socket from `full_sock`.
    if unsafe { (*sk).state } == BPF_TCP_SYN_SENT {
        let armed = chaos::armed();
        // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
        if armed != 0 && chaos::drops_syn(sk, armed, unsafe { bpf_ktime_get_ns() }) {
            return DROP;
        }
    }
    if let Some(sock) = admitted(&ctx, sk) {
        response::on_out(sk, sock);
    }
    PASS
}

#[cgroup_skb(ingress)]
pub fn sock_in(ctx: SkBuffContext) -> i32 {
    if let Some(sk) = full_sock(&ctx)
        && let Some(sock) = admitted(&ctx, sk)
    {
        response::on_in(&ctx, sock);
    }
    PASS
}

/// The record of the packet's full socket `sk`, if the gate admitted it.
#[inline(always)]
fn admitted(ctx: &SkBuffContext, sk: *mut bpf_sock) -> Option<&'static mut SockInfo> {
    // SAFETY: the program's own context, and its full socket.
    unsafe { Admitted::of(ctx.skb.skb.cast(), sk.cast()) }.map(|a| a.sock)
}

/// The packet's full socket.
#[inline(always)]
fn full_sock(ctx: &SkBuffContext) -> Option<*mut bpf_sock> {
    // SAFETY: the kernel hands a valid context; `sk` may be null.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    // SAFETY: a non-null socket of the context.
    let sk = unsafe { bpf_sk_fullsock(sk) };
    (!sk.is_null()).then_some(sk)
}

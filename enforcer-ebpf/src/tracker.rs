//! `sockops`: outcome tracking and slot release for sockets the gate admitted.
//!
//! | op                             | action                                                       |
//! |--------------------------------|--------------------------------------------------------------|
//! | `TCP_CONNECT_CB`               | enable state and RTO callbacks (or end it, abandoned:        |
//! |                                | nothing would report its end); apply the connect timeout;    |
//! |                                | note what the socket carries in (errors, segments, TTL)      |
//! | `ACTIVE_ESTABLISHED_CB`        | success (latency, slow connects, probes); drop the timeout   |
//! | `RTO_CB` in SYN_SENT           | mark the SYN as retransmitted (and timed out when it gives up) |
//! | `STATE_CB` SYN_SENT → CLOSE    | outcome classified from the socket's error, slot released    |
//! | `STATE_CB` other → CLOSE       | slot released                                                |
//!
//! Every other op (and `RTO_CB`, `STATE_CB` otherwise) leaves before the
//! record's lookup. Sockets without a record (not admitted, or ended) are
//! ignored; the end that finishes a record removes it ([`sock::end`]).
//! Always returns 1: sock_ops verdicts are not used for these ops.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE, BPF_TCP_SYN_SENT,
    },
    helpers::generated::{bpf_getsockopt, bpf_setsockopt},
    macros::sock_ops,
    programs::SockOpsContext,
};
use enforcer_common::{
    counters::GlobalCounter,
    outcome::{End, Outcome, SynSentClose, classify_syn_sent_close},
    sock::{SockInfo, marks},
};

use crate::{
    atomic, counters,
    klog::rare,
    layout::TcpSock,
    policies::Policies,
    sock::{self, Admitted},
};

const SOL_TCP: i32 = 6;
const TCP_USER_TIMEOUT: i32 = 18;

#[sock_ops]
pub fn track_sockops(ctx: SockOpsContext) -> u32 {
    // Every TCP socket in the cgroup calls this for every op (timeouts, window
    // and ECN initialisation, every state change of a tracked one, ...):
    // leave before the record's lookup unless the op is one this hook acts on.
    if let Some(op) = Op::of(&ctx)
        && let Some(sock) = admitted(&ctx)
    {
        on_op(&ctx, op, sock);
    }
    1
}

/// The ops this hook acts on.
#[derive(Clone, Copy)]
enum Op {
    /// `TCP_CONNECT_CB`: the SYN is about to leave.
    Connect,
    /// `ACTIVE_ESTABLISHED_CB`: the handshake completed.
    Established,
    /// `RTO_CB` in SYN_SENT: the SYN went unanswered for a whole timeout.
    SynTimeout,
    /// `STATE_CB` to CLOSE (the other state changes say nothing to us).
    Closed,
}

impl Op {
    #[inline(always)]
    fn of(ctx: &SockOpsContext) -> Option<Self> {
        match ctx.op() {
            BPF_SOCK_OPS_TCP_CONNECT_CB => Some(Self::Connect),
            BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => Some(Self::Established),
            BPF_SOCK_OPS_RTO_CB if ctx.state() == BPF_TCP_SYN_SENT => Some(Self::SynTimeout),
            BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => Some(Self::Closed),
            _ => None,
        }
    }
}

#[inline(always)]
fn on_op(ctx: &SockOpsContext, op: Op, admitted: Admitted) {
    let Admitted { tp, cookie, sock } = admitted;
    let policies = Policies::active();
    match op {
        Op::Connect => on_connect(ctx, tp, cookie, sock, policies),
        Op::Established => {
            if atomic::load(&raw const sock.marks) & marks::USER_TIMEOUT_SET != 0 {
                // The handshake is done: back to the kernel's default for data.
                set_user_timeout(ctx, 0);
            }
            sock::end(cookie, sock, End::Established, policies);
        }
        // args: retransmits, rto, expired (the timer is giving up: the socket
        // closes with a timeout right after this callback).
        Op::SynTimeout => {
            let timed_out = if ctx.arg(2) != 0 {
                marks::SYN_TIMED_OUT
            } else {
                0
            };
            atomic::fetch_or(&raw mut sock.marks, marks::SYN_RETRANSMITTED | timed_out);
        }
        Op::Closed => {
            if ctx.arg(0) == BPF_TCP_SYN_SENT {
                let seen = SynSentClose {
                    sk_err: tp.and_then(TcpSock::sk_err),
                    segs_in: ctx.segs_in().wrapping_sub(sock.segs_in_at_connect),
                    marks: atomic::load(&raw const sock.marks),
                };
                let end = End::Failed(classify_syn_sent_close(seen));
                sock::end(cookie, sock, end, policies);
            } else {
                sock::end(cookie, sock, End::Closed, policies);
            }
        }
    }
}

#[inline(always)]
fn on_connect(
    ctx: &SockOpsContext,
    tp: Option<TcpSock>,
    cookie: u64,
    sock: &mut SockInfo,
    policies: Policies,
) {
    let wanted = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG;
    // Without callbacks nothing would report the end: the connect gives back
    // what it holds now, counted abandoned, and goes on untracked (fails open).
    let mut noted = match ctx.set_cb_flags(wanted as i32) {
        Ok(()) => marks::CALLBACKS_ON,
        Err(errno) => {
            counters::bump(GlobalCounter::CallbacksFailed);
            rare!(
                error,
                "state callbacks not enabled (errno {}): connect to [{:i}]:{} passes untracked",
                -errno,
                sock.dest.octets(),
                sock.dest.port
            );
            sock::end(cookie, sock, End::Failed(Outcome::Abandoned), policies);
            return;
        }
    };
    // What the socket carries in from an earlier connect or from its caller,
    // so that only what happens from here on counts.
    sock.segs_in_at_connect = ctx.segs_in();
    if let Some(tp) = tp {
        if tp.sk_err().is_some_and(|e| e != 0) {
            noted |= marks::STALE_ERROR;
        }
        if tp.hop_limit_lowered() {
            noted |= marks::HOP_LIMITED;
        }
    }
    atomic::fetch_or(&raw mut sock.marks, noted);
    let timeout_ms = policies
        .policy(sock.policy_id)
        .map_or(0, |p| p.connect_timeout_ms);
    // An application that chose its own user timeout keeps it: read in the
    // socket where the kernel's layout is known, asked for otherwise.
    let theirs = || {
        tp.and_then(TcpSock::user_timeout)
            .map(|ms| ms as i32)
            .or_else(|| user_timeout(ctx))
    };
    if timeout_ms != 0 && theirs() == Some(0) {
        if set_user_timeout(ctx, timeout_ms as i32) {
            atomic::fetch_or(&raw mut sock.marks, marks::USER_TIMEOUT_SET);
        } else {
            counters::bump(GlobalCounter::SetsockoptFailed);
            rare!(
                warn,
                "connect timeout ({} ms) not applied to connect to [{:i}]:{}",
                timeout_ms,
                sock.dest.octets(),
                sock.dest.port
            );
        }
    }
}

/// The socket's `TCP_USER_TIMEOUT` (ms), if it can be read.
#[inline(always)]
fn user_timeout(ctx: &SockOpsContext) -> Option<i32> {
    let mut value: i32 = 0;
    // SAFETY: sock_ops callbacks run with the socket locked, as bpf_getsockopt
    // requires; `value` lives on the stack for the call.
    let rc = unsafe {
        bpf_getsockopt(
            ctx.ops.cast(),
            SOL_TCP,
            TCP_USER_TIMEOUT,
            (&raw mut value).cast::<c_void>(),
            size_of::<i32>() as i32,
        )
    };
    (rc == 0).then_some(value)
}

/// Sets the socket's `TCP_USER_TIMEOUT` (ms; 0 = the kernel's retry schedule).
#[inline(always)]
fn set_user_timeout(ctx: &SockOpsContext, ms: i32) -> bool {
    let mut value = ms;
    // SAFETY: as in `user_timeout`.
    let rc = unsafe {
        bpf_setsockopt(
            ctx.ops.cast(),
            SOL_TCP,
            TCP_USER_TIMEOUT,
            (&raw mut value).cast::<c_void>(),
            size_of::<i32>() as i32,
        )
    };
    rc == 0
}

/// The context's socket, if the gate admitted it.
#[inline(always)]
fn admitted(ctx: &SockOpsContext) -> Option<Admitted> {
    // SAFETY: the kernel hands a valid context.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    // The verifier types `sk` as maybe-null and insists on the check.
    if sk.is_null() {
        return None;
    }
    // SAFETY: the program's own context, and its non-null socket.
    unsafe { Admitted::of(ctx.ops.cast(), sk.cast()) }
}

/// Accessors the aya context does not provide.
trait SockOpsExt {
    fn state(&self) -> u32;
    fn segs_in(&self) -> u32;
}

impl SockOpsExt for SockOpsContext {
    fn state(&self) -> u32 {
        // SAFETY: the kernel hands a valid context.
        unsafe { (*self.ops).state }
    }

    fn segs_in(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.ops).segs_in }
    }
}

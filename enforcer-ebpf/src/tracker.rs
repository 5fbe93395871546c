//! `sockops`: outcome tracking for sockets the gate admitted.
//!
//! | op                        | action                                          |
//! |---------------------------|-------------------------------------------------|
//! | `TCP_CONNECT_CB`          | enable state and RTO callbacks on the socket    |
//! | `ACTIVE_ESTABLISHED_CB`   | success                                         |
//! | `RTO_CB` while connecting | mark the SYN as retransmitted                   |
//! | `STATE_CB` SYN_SENT→CLOSE | failure, classified (or abandoned)              |
//!
//! Sockets without storage (not admitted by the gate, or untracked) are ignored.
//! Always returns 1: sock_ops verdicts are not used for these ops.

use core::ptr;

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE, BPF_TCP_SYN_SENT,
    },
    helpers::generated::bpf_sk_storage_get,
    macros::sock_ops,
    programs::SockOpsContext,
};
use enforcer_common::{
    outcome::{Outcome, classify_syn_sent_close},
    sock::{SockInfo, flags},
};

use crate::{atomic, maps::SOCKS, outcome};

#[sock_ops]
pub fn track_sockops(ctx: SockOpsContext) -> u32 {
    if let Some(info) = sock_info(&ctx) {
        on_op(&ctx, info);
    }
    1
}

#[inline(always)]
fn on_op(ctx: &SockOpsContext, info: *mut SockInfo) {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            let wanted = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG;
            // Failing to enable callbacks leaves the outcome to sock_release.
            let _ = ctx.set_cb_flags(wanted as i32);
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => outcome::record(info, Outcome::Success),
        BPF_SOCK_OPS_RTO_CB if ctx.state() == BPF_TCP_SYN_SENT => {
            atomic::fetch_or_u64(unsafe { &raw mut (*info).flags }, flags::SYN_RETRANSMITTED);
        }
        BPF_SOCK_OPS_STATE_CB if ctx.arg(0) == BPF_TCP_SYN_SENT && ctx.arg(1) == BPF_TCP_CLOSE => {
            // SAFETY: non-null socket storage, valid for the program's run.
            let sock_flags = unsafe { (*info).flags };
            outcome::record(info, classify_syn_sent_close(sock_flags, ctx.segs_in()));
        }
        _ => {}
    }
}

/// The socket's storage, if the gate admitted it.
#[inline(always)]
fn sock_info(ctx: &SockOpsContext) -> Option<*mut SockInfo> {
    // SAFETY: the kernel hands a valid context.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    // The verifier types `sk` as maybe-null and insists on the check.
    if sk.is_null() {
        return None;
    }
    let map = ptr::from_ref(&SOCKS).cast_mut().cast();
    // SAFETY: `sk` is a non-null socket pointer from the context; flags 0 = lookup only.
    let info = unsafe { bpf_sk_storage_get(map, sk.cast(), ptr::null_mut(), 0) };
    (!info.is_null()).then_some(info.cast())
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

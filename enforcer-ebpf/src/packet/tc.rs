//! `packet_in_tc` and `packet_out_tc`: the packet plane in TC (clsact/tcx), for
//! any device. A rejected SYN is rewritten into a RST and redirected back out
//! of the interface it came in on. `chaos_in_tc`: the guest faults, on the
//! same ingress after the packet plane's program.
//!
//! What passes goes on to the next program (`TC_ACT_UNSPEC`, which is
//! tcx's `TCX_NEXT`, and which a netlink filter's chain also continues
//! from): `chaos_in_tc` after `packet_in_tc`, then anything an operator
//! attached after ours. With none left the packet passes.

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_fib_lookup},
    helpers::generated::{
        bpf_fib_lookup as fib_lookup, bpf_l4_csum_replace, bpf_redirect, bpf_skb_load_bytes,
        bpf_skb_store_bytes,
    },
    macros::classifier,
    programs::TcContext,
};
use enforcer_common::packet::{HEADER_BYTES, Reply};

use super::{Action, Frame, helper_len};

#[classifier]
pub fn packet_in_tc(ctx: TcContext) -> i32 {
    verdict(&ctx, super::from_guest(&mut TcFrame(&ctx)))
}

#[classifier]
pub fn chaos_in_tc(ctx: TcContext) -> i32 {
    verdict(&ctx, super::chaos::from_guest(&mut TcFrame(&ctx)))
}

/// An ingress program's verdict on a frame from the guests.
#[inline(always)]
fn verdict(ctx: &TcContext, action: Action) -> i32 {
    match action {
        Action::Pass => TC_ACT_UNSPEC,
        // SAFETY: plain helper call; out of the interface the SYN came in on.
        Action::Reply => unsafe { bpf_redirect((*ctx.skb.skb).ifindex, 0) as i32 },
        Action::Drop => TC_ACT_SHOT,
    }
}

#[classifier]
pub fn packet_out_tc(ctx: TcContext) -> i32 {
    super::to_guest(&TcFrame(&ctx));
    TC_ACT_UNSPEC
}

struct TcFrame<'a>(&'a TcContext);

impl Frame for TcFrame<'_> {
    #[inline(always)]
    fn load(&self, buf: &mut [u8; HEADER_BYTES]) -> usize {
        let len = helper_len(self.0.len() as usize);
        // SAFETY: `buf` has room for `len` bytes; the helper reads paged data too.
        let rc =
            unsafe { bpf_skb_load_bytes(self.0.skb.skb.cast(), 0, buf.as_mut_ptr().cast(), len) };
        if rc == 0 { len as usize } else { 0 }
    }

    #[inline(always)]
    fn store_reply(&mut self, buf: &mut [u8; HEADER_BYTES], reply: &Reply) -> bool {
        let len = helper_len(reply.len);
        // The skb may carry its TCP checksum as a partial (pseudo-header only)
        // sum for offload: keep the field as it was and let the kernel apply the
        // header's difference, which it does only for a complete checksum (the
        // pseudo-header is unchanged: addresses swapped, length kept).
        if let Some(field) = buf.get_mut(reply.csum_at..reply.csum_at + 2) {
            field.copy_from_slice(&reply.old_csum);
        } else {
            return false;
        }
        let skb = self.0.skb.skb.cast();
        // SAFETY: `len` bytes of `buf`; the helpers bounds-check the skb.
        unsafe {
            bpf_skb_store_bytes(
                skb,
                0,
                buf.as_mut_ptr().cast(),
                len,
                BPF_F_RECOMPUTE_CSUM.into(),
            ) == 0
                && bpf_l4_csum_replace(skb, reply.csum_at as u32, 0, reply.diff.into(), 0) == 0
        }
    }

    /// There is no `ip_summed` in `__sk_buff`, so ask the kernel in a way its
    /// answer shows: updating a checksum field by a difference, without the
    /// pseudo-header flag, changes the field of a complete checksum and leaves
    /// a `CHECKSUM_PARTIAL` one alone (`inet_proto_csum_replace4`). A changed
    /// field is put back byte for byte (the packet's `skb->csum`, if any, never
    /// saw the change). Runs only for a SYN whose field already holds the
    /// offload form.
    #[inline(always)]
    fn checksum_deferred(&mut self, csum_at: usize) -> bool {
        // Bytes of a checksum field, for the helpers' size and flags arguments.
        const FIELD: u32 = 2;
        let skb = self.0.skb.skb;
        let Ok(at) = u32::try_from(csum_at) else {
            return false;
        };
        let mut before = [0u8; 2];
        let mut after = [0u8; 2];
        // SAFETY: two bytes of stack each; the helpers bounds-check the skb.
        unsafe {
            if bpf_skb_load_bytes(skb.cast(), at, before.as_mut_ptr().cast(), FIELD) != 0
                || bpf_l4_csum_replace(skb, at, 0, 1, FIELD.into()) != 0
                || bpf_skb_load_bytes(skb.cast(), at, after.as_mut_ptr().cast(), FIELD) != 0
            {
                return false;
            }
            if after == before {
                return true;
            }
            bpf_skb_store_bytes(skb, at, before.as_mut_ptr().cast(), FIELD, 0);
        }
        false
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: a read of the context the verifier allows a classifier.
        unsafe { (*self.0.skb.skb).ingress_ifindex }
    }

    #[inline(always)]
    fn fib_lookup(&self, params: *mut bpf_fib_lookup) -> i64 {
        // SAFETY: `params` points at a whole `bpf_fib_lookup` (per-CPU scratch).
        unsafe {
            fib_lookup(
                self.0.skb.skb.cast(),
                params,
                size_of::<bpf_fib_lookup>() as i32,
                0,
            )
        }
    }

    #[inline(always)]
    fn looped_back(&self) -> bool {
        // SAFETY: reads of the context the verifier allows a classifier.
        unsafe { (*self.0.skb.skb).ingress_ifindex == (*self.0.skb.skb).ifindex }
    }
}

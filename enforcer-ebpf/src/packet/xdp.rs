//! `packet_in_xdp`: the packet plane's ingress (from the guests) in XDP, for
//! drivers that run XDP natively; a rejected SYN goes back with `XDP_TX`.

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    macros::xdp,
    programs::XdpContext,
};
use enforcer_common::packet::{HEADER_BYTES, Reply};

use super::{Action, Frame, helper_len};

#[xdp]
pub fn packet_in_xdp(ctx: XdpContext) -> u32 {
    match super::from_guest(&mut XdpFrame(&ctx)) {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Reply => xdp_action::XDP_TX,
        Action::Drop => xdp_action::XDP_DROP,
    }
}

struct XdpFrame<'a>(&'a XdpContext);

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn load(&self, buf: &mut [u8; HEADER_BYTES]) -> usize {
        let len = helper_len(self.0.data_end().saturating_sub(self.0.data()));
        // SAFETY: `buf` has room for `len` (<= HEADER_BYTES) bytes; the helper
        // bounds-checks the frame.
        let rc = unsafe { bpf_xdp_load_bytes(self.0.ctx, 0, buf.as_mut_ptr().cast(), len) };
        if rc == 0 { len as usize } else { 0 }
    }

    #[inline(always)]
    fn store_reply(&mut self, buf: &mut [u8; HEADER_BYTES], reply: &Reply) -> bool {
        // An XDP frame carries no checksum state: the reply's checksums, computed
        // from scratch, are final.
        let len = helper_len(reply.len);
        // SAFETY: `len` bytes of `buf`; the helper bounds-checks the frame.
        unsafe { bpf_xdp_store_bytes(self.0.ctx, 0, buf.as_mut_ptr().cast(), len) == 0 }
    }

    /// Frames reaching XDP come off the wire, where a checksum is complete or
    /// wrong; XDP cannot see an offload state.
    #[inline(always)]
    fn checksum_deferred(&mut self, _csum_at: usize) -> bool {
        false
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: a read of the context the verifier allows XDP.
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn fib_lookup(&self, params: *mut bpf_fib_lookup) -> i64 {
        // SAFETY: `params` points at a whole `bpf_fib_lookup` (per-CPU scratch).
        unsafe {
            fib_lookup(
                self.0.ctx.cast(),
                params,
                size_of::<bpf_fib_lookup>() as i32,
                0,
            )
        }
    }

    /// XDP sees only what the interface receives (from the guests).
    #[inline(always)]
    fn looped_back(&self) -> bool {
        false
    }
}

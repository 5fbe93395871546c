//! The enforcer kernel programs.
//!
//! One module per hook; all maps are declared in [`maps`]. Hooks stay thin: read the
//! context, call the pure logic in `enforcer-common`, apply the verdict. Every
//! internal error fails open: a resilience tool must never become the outage.
#![no_std]
#![no_main]
// `core::intrinsics` atomics compile to BPF atomic instructions; `AtomicU64` has no
// `fetch_add` on the bpf target.
#![feature(core_intrinsics)]
#![allow(internal_features, reason = "core_intrinsics, see above")]

mod admission;
mod atomic;
mod chaos;
mod classes;
mod clock;
mod control;
mod counters;
mod dest;
mod gate;
mod klog;
mod layout;
mod maps;
mod packet;
mod policies;
mod release;
mod response;
mod skb;
mod sock;
mod sockaddr;
mod tracker;
mod workloads;

/// A reachable panic becomes an infinite loop, which the verifier rejects at load
/// time, instead of undefined behaviour at run time.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

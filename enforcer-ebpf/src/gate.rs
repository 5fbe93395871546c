//! `cgroup/connect4` and `cgroup/connect6`: the gate every `connect()` in the
//! protected cgroup subtree passes through.
//!
//! | case                                   | verdict | accounting                    |
//! |----------------------------------------|---------|-------------------------------|
//! | not TCP (UDP, raw, MPTCP)               | allow   | `other_connects`              |
//! | global switch off                      | allow   | `paused_passes`               |
//! | destination map full                   | allow   | `dest_map_full`, untracked    |
//! | socket storage cannot be created       | allow   | `sock_storage_failed`         |
//! | otherwise                              | allow   | attempt, socket tracked       |
//!
//! Every internal error fails open.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_sock_addr},
    helpers::bpf_ktime_get_ns,
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    counters::GlobalCounter,
    dest::{DestKey, DestState},
    sock::{SockInfo, flags},
};

use crate::{
    counters,
    maps::{DESTS, SOCKS},
};

/// Return value of a `cgroup_sock_addr` program that lets the call proceed.
const ALLOW: i32 = 1;

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;

#[cgroup_sock_addr(connect4)]
pub fn gate_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // connect4 may read `user_ip4` only.
    gate(&ctx, || {
        DestKey::from_ipv4_raw(ctx_read!(&raw const (*sa).user_ip4), user_port(sa))
    })
}

#[cgroup_sock_addr(connect6)]
pub fn gate_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // connect6 may read `user_ip6` only, one 32-bit word at a time.
    gate(&ctx, || {
        let addr = [
            ctx_read!(&raw const (*sa).user_ip6[0]),
            ctx_read!(&raw const (*sa).user_ip6[1]),
            ctx_read!(&raw const (*sa).user_ip6[2]),
            ctx_read!(&raw const (*sa).user_ip6[3]),
        ];
        DestKey::from_ipv6_raw(addr, user_port(sa))
    })
}

/// Reads one context field as a single load at a constant offset from the context
/// pointer: the verifier rejects context accesses through a modified pointer, which
/// is what a plain struct or array copy may compile to.
macro_rules! ctx_read {
    ($field:expr) => {
        // SAFETY: a field of the context the kernel handed to the program.
        unsafe { core::ptr::read_volatile($field) }
    };
}
use ctx_read;

/// `user_port` holds the port in network order in its low 16 bits.
#[inline(always)]
fn user_port(sa: *const bpf_sock_addr) -> u16 {
    u16::from_be(ctx_read!(&raw const (*sa).user_port) as u16)
}

#[inline(always)]
fn gate(ctx: &SockAddrContext, dest: impl FnOnce() -> DestKey) -> i32 {
    let sa = ctx.sock_addr;
    let (sock_type, protocol) = (
        ctx_read!(&raw const (*sa).type_),
        ctx_read!(&raw const (*sa).protocol),
    );
    if sock_type != SOCK_STREAM || protocol != IPPROTO_TCP {
        counters::bump(GlobalCounter::OtherConnects);
        return ALLOW;
    }
    counters::bump(GlobalCounter::TcpConnects);
    if counters::paused() {
        counters::bump(GlobalCounter::Paused);
        return ALLOW;
    }
    // Tracking can only fail open; the verdict is the same either way.
    let _untracked: Result<(), Untracked> = track(ctx, dest());
    ALLOW
}

/// Why an admitted connect is not tracked (already counted).
struct Untracked;

#[inline(always)]
fn track(ctx: &SockAddrContext, dest: DestKey) -> Result<(), Untracked> {
    let state = dest_state(&dest)?;
    // SAFETY: `ctx` is a connect context, whose `sk` is a full socket.
    let info = unsafe { SOCKS.get_or_insert_ptr_mut(ctx, None) };
    if info.is_null() {
        counters::bump(GlobalCounter::SockStorageFailed);
        return Err(Untracked);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // A socket may connect again after a failed attempt: the entry starts over.
    // SAFETY: non-null storage of this socket, valid for the program's run.
    unsafe {
        *info = SockInfo {
            dest,
            _pad: 0,
            flags: flags::TRACKED,
            start_ns: now,
        };
        aya_ebpf::helpers::generated::bpf_spin_lock((&raw mut (*state).lock).cast());
        (*state).counters.attempts += 1;
        aya_ebpf::helpers::generated::bpf_spin_unlock((&raw mut (*state).lock).cast());
        (*state).last_attempt_ns = now;
    }
    Ok(())
}

/// The destination's state, created on first sight.
#[inline(always)]
fn dest_state(dest: &DestKey) -> Result<*mut DestState, Untracked> {
    if let Some(state) = DESTS.get_ptr_mut(dest) {
        return Ok(state);
    }
    // Another CPU may insert the same key between lookup and insert: NOEXIST makes
    // that a harmless EEXIST, and the lookup below finds the winner's entry.
    let _ = DESTS.insert(dest, DestState::default(), BPF_NOEXIST.into());
    DESTS.get_ptr_mut(dest).ok_or_else(|| {
        counters::bump(GlobalCounter::DestMapFull);
        Untracked
    })
}

//! `chaos_connect4` and `chaos_connect6` (`cgroup/connect*`, attached before
//! the gate), and the chaos faults' other paths ([`enforcer_common::chaos`]):
//! which armed fault affects a connect, and whether egress drops a SYN of a
//! connect a fault marked.
//!
//! A program of its own, not a step of the gate: its loop over the faults is
//! verified once, not once per path through the breaker's admission. With
//! no fault armed it costs a run that reads one field of the configuration;
//! egress pays one socket-storage lookup per SYN, and nothing for other
//! packets.
//!
//! | case                                        | verdict            | accounting              |
//! |---------------------------------------------|--------------------|-------------------------|
//! | no fault armed, paused, not TCP, the daemon | allow              | —                       |
//! | a refusal affects it                        | errno of the fault | the fault's `affected`  |
//! | a fault that drops SYNs affects it          | allow, marked      | the fault's `affected`  |
//! | the chance or the cap spares it             | allow              | the fault's `spared`    |

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_prandom_u32},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    chaos::{self, Fault, Mark},
    class::Priority,
    dest::DestKey,
};

use crate::{
    atomic, classes,
    maps::{CHAOS, CHAOS_SOCKS, CONFIG},
    sockaddr::{self, ALLOW, reject},
};

#[cgroup_sock_addr(connect4)]
pub fn chaos_connect4(ctx: SockAddrContext) -> i32 {
    faults(&ctx, sockaddr::dest4)
}

#[cgroup_sock_addr(connect6)]
pub fn chaos_connect6(ctx: SockAddrContext) -> i32 {
    faults(&ctx, sockaddr::dest6)
}

#[inline(always)]
fn faults(ctx: &SockAddrContext, dest: impl FnOnce(&SockAddrContext) -> DestKey) -> i32 {
    let Some(config) = CONFIG.get(0) else {
        return ALLOW;
    };
    let armed = config.chaos_armed;
    // The daemon's own connects (its HTTP checks, healing probes) see the
    // destinations as they are.
    let daemon =
        config.bypass_tgid != 0 && (bpf_get_current_pid_tgid() >> 32) as u32 == config.bypass_tgid;
    if armed == 0 || config.is_paused() || daemon || !sockaddr::is_tcp(ctx) {
        return ALLOW;
    }
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    match at_connect(ctx, armed, &dest(ctx), now) {
        Some(errno) => reject(errno),
        None => ALLOW,
    }
}

/// What the first armed, live fault that affects a connect to `key` (in any
/// namespace) by the current task at `now` does (counted): `Some(errno)` to
/// refuse it; a fault that drops SYNs marks the connect and lets it through
/// (`None`), as does no fault.
#[inline(always)]
fn at_connect(ctx: &SockAddrContext, armed: u32, key: &DestKey, now: u64) -> Option<u32> {
    first_armed(armed, |slot, fault| {
        if affects(fault, key, now) == 0 || taken(fault) == 0 {
            return None;
        }
        // SAFETY: a value of CHAOS, valid for the program's run.
        let f = unsafe { &*fault };
        if chaos::refuses(f.kind) {
            return Some(Some(f.errno));
        }
        mark(ctx, Mark::of(f, slot));
        Some(None)
    })
    .flatten()
}

/// The first answer `decide` gives for an armed fault (its slot and its
/// value in CHAOS), slot by slot from the lowest; `None` if none answers.
#[inline(always)]
pub fn first_armed<R>(
    armed: u32,
    mut decide: impl FnMut(u32, *mut Fault) -> Option<R>,
) -> Option<R> {
    // The bits still to look at, the next one lowest. Testing bits of one
    // value that stays live would teach the verifier another set of known
    // bits on every path, and it would walk each set.
    let mut rest = armed;
    for slot in 0..chaos::SLOTS {
        let on = rest & 1;
        rest >>= 1;
        if on == 0 {
            continue;
        }
        let Some(fault) = CHAOS.get_ptr_mut(slot) else {
            continue;
        };
        if let Some(answer) = decide(slot, fault) {
            return Some(answer);
        }
    }
    None
}

/// 1 if the fault is live at `now` and a connect to `key` by the current
/// task is one of its candidates, else 0. The caller's class is looked up
/// last, and only for a fault that names classes: no other connect pays
/// for the walk up its cgroups.
///
/// This and [`taken`] are functions of their own (BPF-to-BPF calls) that
/// answer in one register: their paths join at their return, so the
/// verifier walks the rest of the loop once per answer, not once per path
/// (inlined, the compiler threads each path on through the loop).
#[inline(never)]
fn affects(fault: *const Fault, key: &DestKey, now: u64) -> u32 {
    // SAFETY: a value of CHAOS, valid for the program's run.
    let f = unsafe { &*fault };
    u32::from(f.live(now) && f.targets(key) && current_in(f) && f.of_class(current_class))
}

/// The current task's priority class, as the gate finds it (`Default` when
/// classes are off).
#[inline(always)]
fn current_class() -> Priority {
    classes::current().map_or(Priority::Default, |c| c.class)
}

/// 1 if a candidate of the fault is affected: its chance drawn and one of
/// its cap taken; counted as affected, or as spared (0).
#[inline(never)]
fn taken(fault: *mut Fault) -> u32 {
    // SAFETY: a value of CHAOS, valid for the program's run; only fields'
    // addresses are taken for the counts.
    let (f, affected, spared) = unsafe {
        (
            &*fault,
            &raw mut (*fault).affected,
            &raw mut (*fault).spared,
        )
    };
    // SAFETY: plain helper call, no argument.
    let draw = unsafe { bpf_get_prandom_u32() };
    let taken = f.drawn(draw)
        && if f.cap == 0 {
            atomic::add(affected, 1);
            true
        } else {
            atomic::add_below(affected, f.cap)
        };
    if !taken {
        atomic::add(spared, 1);
    }
    u32::from(taken)
}

/// Puts `mark` on the connecting socket. Fails open: without storage the
/// connect goes through unharmed (and was counted: a rare miscount).
#[inline(always)]
fn mark(ctx: &SockAddrContext, mark: Mark) {
    // SAFETY: `ctx` is a connect context, whose `sk` is a full socket.
    let storage = unsafe { CHAOS_SOCKS.get_or_insert_ptr_mut(ctx, None) };
    // SAFETY: this socket's storage, which only this connect writes now.
    if let Some(storage) = unsafe { storage.as_mut() } {
        *storage = mark;
    }
}

/// The breaker refused a connect a fault marked: it never sends a SYN, so
/// the fault counts it as refused (see [`Fault::refused`]).
#[inline(always)]
pub fn refused(ctx: &SockAddrContext) {
    // SAFETY: `ctx` is a connect context, whose `sk` is a full socket; lookup only.
    let storage = unsafe { CHAOS_SOCKS.get_ptr_mut(ctx) };
    // SAFETY: this socket's storage, which only this connect writes now.
    let Some(m) = (unsafe { storage.as_mut() }) else {
        return;
    };
    if let Some(fault) = m.slot().and_then(|s| CHAOS.get_ptr_mut(s)) {
        // SAFETY: `fault` points into CHAOS; only a field's address is taken.
        atomic::add(unsafe { &raw mut (*fault).refused }, 1);
    }
    *m = Mark::default();
}

/// Whether the current task is in one of the fault's cgroups. Every slot is
/// compared without a branch (unused ones repeat the first; a fault for any
/// task names the root cgroup).
#[inline(always)]
fn current_in(f: &Fault) -> bool {
    let mut hits = 0;
    let mut i = 0;
    while i < chaos::MAX_CGROUPS {
        let scope = f.cgroups[i];
        // SAFETY: the helper takes a level (an integer, checked by the
        // kernel) and reads the current task's cgroup: no pointer.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(scope.level as i32) };
        hits |= chaos::is_zero(id ^ scope.id);
        i += 1;
    }
    hits != 0
}

/// Whether to drop a SYN leaving the full socket `sk` (in SYN_SENT) at
/// `now`: while its connect is marked by a fault still armed and live, with
/// SYNs left to drop. A fault that ended (or was disarmed) lets the SYN go
/// and the mark is cleared.
#[inline(always)]
pub fn drops_syn(sk: *mut bpf_sock, now: u64) -> bool {
    let map = core::ptr::from_ref(&CHAOS_SOCKS).cast_mut().cast();
    // SAFETY: a full socket the kernel handed over; flags 0 = lookup only.
    let storage = unsafe {
        aya_ebpf::helpers::generated::bpf_sk_storage_get(map, sk.cast(), core::ptr::null_mut(), 0)
    };
    // SAFETY: non-null socket storage, valid for the program's run; SYNs of
    // one socket leave under its lock, one at a time.
    let Some(m) = (unsafe { storage.cast::<Mark>().as_mut() }) else {
        return false;
    };
    let Some(slot) = m.slot() else {
        return false;
    };
    let armed = CONFIG.get(0).map_or(0, |c| c.chaos_armed);
    let fault = CHAOS
        .get_ptr_mut(slot)
        // SAFETY: a value of CHAOS, valid for the program's run.
        .filter(|f| armed & chaos::bit(slot) != 0 && unsafe { &**f }.live(now))
        // SAFETY: as above.
        .filter(|f| m.made_by(unsafe { &**f }));
    let (Some(fault), Some(left)) = (fault, chaos::drop_syn(m.syns)) else {
        *m = Mark::default();
        return false;
    };
    m.syns = left;
    // SAFETY: `fault` points into CHAOS; only a field's address is taken.
    atomic::add(unsafe { &raw mut (*fault).syns_dropped }, 1);
    true
}

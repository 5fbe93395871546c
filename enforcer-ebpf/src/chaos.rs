//! The chaos faults at the socket plane ([`enforcer_common::chaos`]): which
//! armed fault affects a connect (the gate's first step, before the breaker:
//! [`at_connect`]), and whether egress drops a SYN of a connect a fault
//! marked ([`drops_syn`]).
//!
//! The gate asks only while a fault is armed (one field of the
//! configuration it reads anyway), through a function of its own: the loop
//! over the faults is verified once, not once per path through the
//! breaker's admission. Egress (attached only while a fault that drops SYNs
//! is armed) pays one socket-storage lookup per SYN, nothing for other
//! packets.
//!
//! | case                                        | verdict            | accounting              |
//! |---------------------------------------------|--------------------|-------------------------|
//! | a refusal affects it                        | errno of the fault | the fault's `affected`  |
//! | a fault that drops SYNs affects it          | allow, marked      | the fault's `affected`  |
//! | the chance or the cap spares it             | allow              | the fault's `spared`    |
//! | no armed fault affects it                   | allow              | —                       |

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_prandom_u32},
    },
    programs::SockAddrContext,
};
use enforcer_common::{
    chaos::{self, Fault, Mark},
    class::Priority,
    dest::DestKey,
    workload::fault_scope,
};

use crate::{
    atomic, classes, counters,
    maps::{CHAOS, CHAOS_SOCKS},
    workloads,
};

/// The armed faults' bits, read from the configuration in place.
#[inline(always)]
pub fn armed() -> u32 {
    counters::config_field(|c| {
        // SAFETY: the place of a field of the Config `c` points at; nothing
        // is read here.
        unsafe { &raw const (*c).chaos_armed }
    })
}

/// What the first of the `armed` faults that is live and affects this TCP
/// connect (the context `sock_addr`) to `key` (in any namespace) by the
/// current task does, counted: the errno to refuse it with, or 0 to let it
/// through (marked, for a fault that drops its SYNs). One register back, so
/// the gate's paths after it join into one.
#[inline(never)]
pub fn at_connect(sock_addr: *mut bpf_sock_addr, armed: u32, key: &DestKey) -> u32 {
    let ctx = SockAddrContext::new(sock_addr);
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    first_armed(armed, |slot, fault| {
        if affects(fault, slot, key, now) == 0 || taken(fault) == 0 {
            return None;
        }
        // SAFETY: a value of CHAOS, valid for the program's run.
        let f = unsafe { &*fault };
        if chaos::refuses(f.kind) {
            return Some(f.errno);
        }
        mark(&ctx, Mark::of(f, slot));
        Some(0)
    })
    .unwrap_or(0)
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
fn affects(fault: *const Fault, slot: u32, key: &DestKey, now: u64) -> u32 {
    // SAFETY: a value of CHAOS, valid for the program's run.
    let f = unsafe { &*fault };
    u32::from(f.live(now) && f.targets(key) && callers_in(f, slot) && f.of_class(current_class))
}

/// Whether the current task is one of the callers of the fault in `slot`:
/// in one of its cgroups, or one its workload selectors match.
#[inline(always)]
fn callers_in(f: &Fault, slot: u32) -> bool {
    if f.workloads != 0 {
        workloads::selects(fault_scope(slot))
    } else {
        current_in(f)
    }
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
/// `now`, with the faults `armed` ([`armed`]; asked only while one is):
/// while its connect is marked by a fault still armed and live, with SYNs
/// left to drop. A SYN whose fault ended (or was disarmed) goes, and clears
/// the mark; one sent while no fault is armed goes without looking, and a
/// later arming cannot match its mark (`Mark::made_by`).
#[inline(always)]
pub fn drops_syn(sk: *mut bpf_sock, armed: u32, now: u64) -> bool {
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

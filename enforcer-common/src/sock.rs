//! The record of an admitted connect: a socket's in [`crate::maps::CONNS`],
//! by its cookie, and a packet-plane flow's in its flow entry.

use crate::{dest::DestKey, impl_pod};

/// Flags in [`SockInfo::flags`]. Changed only with the destination's lock held, so
/// what a socket holds is given back exactly once.
pub mod flags {
    /// The outcome (success, failure, abandoned) has been recorded.
    pub const OUTCOME_RECORDED: u64 = 1 << 1;
    /// The connection holds a bulkhead slot (`active`).
    pub const HOLDS_SLOT: u64 = 1 << 2;
    /// The connection is counted in `pending` (SYN_SENT).
    pub const PENDING: u64 = 1 << 3;
    /// Admitted as a half-open probe (in episode [`super::SockInfo::probe_epoch`]).
    pub const PROBE: u64 = 1 << 4;
    /// The handshake completed and the close has not been recorded yet: a
    /// close measures the connection's lifetime once.
    pub const ESTABLISHED: u64 = 1 << 5;
    /// The slot is counted in its class's `active` ([`super::SockInfo::class`]).
    pub const CLASS_SLOT: u64 = 1 << 6;
}

/// Marks in [`SockInfo::marks`]: set with an atomic fetch-or from paths that do
/// not take the destination's lock (timers, callbacks).
pub mod marks {
    /// The retransmission timer gave up on the SYN (retries or the user timeout
    /// exhausted): the connect timed out.
    pub const SYN_TIMED_OUT: u64 = 1 << 0;
    /// The SYN was retransmitted: the destination stayed silent for at least
    /// one retransmission timeout.
    pub const SYN_RETRANSMITTED: u64 = 1 << 1;
    /// The gate's policy set `TCP_USER_TIMEOUT` for the handshake; it is cleared
    /// again once established, so the connection itself keeps the kernel's
    /// retransmission behaviour.
    pub const USER_TIMEOUT_SET: u64 = 1 << 2;
    /// `TCP_CONNECT_CB` ran and enabled the state callbacks: a later close is
    /// reported by `STATE_CB`. Without it (a deferred TCP Fast Open connect
    /// whose SYN has not left) `sock_release` records the end; a connect whose
    /// callbacks were refused is ended at once, abandoned, and goes on
    /// untracked.
    pub const CALLBACKS_ON: u64 = 1 << 3;
    /// The caller lowered its socket's IPv4 TTL or IPv6 hop limit below the
    /// system's default:
    /// silence or ICMP errors about its SYN are of its own making.
    pub const HOP_LIMITED: u64 = 1 << 4;
    /// The socket carried an error from an earlier connect when this one sent
    /// its SYN: the socket error at close cannot tell what ended this one.
    pub const STALE_ERROR: u64 = 1 << 5;
    /// The caller sent its first byte, at [`super::SockInfo::sent_ns`]: the
    /// next byte that arrives is the answer.
    pub const REQUEST_SENT: u64 = 1 << 6;
    /// The response latency was measured, or will not be (the policy learns
    /// from another signal): the packet hooks leave the socket alone.
    pub const RESPONSE_DONE: u64 = 1 << 7;
}

/// The value of [`crate::maps::CONNS`] for one socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    /// The socket's cookie, its key in [`crate::maps::CONNS`] (0 for a flow's
    /// record). First, so that an entry being written for another socket
    /// changes it before anything else: a hook still holding the entry after
    /// it was removed tells by it that the record is no longer its socket's.
    pub cookie: u64,
    /// Where the admitted `connect()` was going.
    pub dest: DestKey,
    /// [`flags`].
    pub flags: u64,
    /// [`marks`]. 64 bits because the BPF target (cpu v1/v2) has no 32-bit atomic
    /// fetch-or.
    pub marks: u64,
    /// `bpf_ktime_get_ns` when the gate admitted the connect.
    pub start_ns: u64,
    /// The half-open episode a probe belongs to.
    pub probe_epoch: u64,
    /// [`crate::dest::DestState::generation`] of the entry that admitted it.
    pub generation: u64,
    /// The destination's policy (index into the policies array).
    pub policy_id: u32,
    /// Segments the socket had received when it sent its SYN (a socket that
    /// connects again keeps counting).
    pub segs_in_at_connect: u32,
    /// `bpf_ktime_get_ns` when the caller sent its first byte
    /// ([`marks::REQUEST_SENT`]).
    pub sent_ns: u64,
    /// The caller's class (a [`crate::class::Priority`]).
    pub class: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<SockInfo>() == 104);
impl_pod!(SockInfo);

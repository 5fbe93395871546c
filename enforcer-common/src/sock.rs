//! Per-socket storage (`sk_storage`) of admitted sockets.

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
}

/// Marks in [`SockInfo::marks`]: set with an atomic fetch-or from paths that do
/// not take the destination's lock (timers, release).
pub mod marks {
    /// The retransmission timer gave up on the SYN (retries or the user timeout
    /// exhausted): the connect timed out.
    pub const SYN_TIMED_OUT: u64 = 1 << 0;
    /// The application released the socket while it was still in SYN_SENT.
    pub const RELEASED_CONNECTING: u64 = 1 << 1;
    /// The gate's policy set `TCP_USER_TIMEOUT` for the handshake; it is cleared
    /// again once established, so the connection itself keeps the kernel's
    /// retransmission behaviour.
    pub const USER_TIMEOUT_SET: u64 = 1 << 2;
}

/// The value of [`crate::maps::SOCKS`] for one socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    /// Where the admitted `connect()` was going.
    pub dest: DestKey,
    /// The destination's policy (index into the policies array).
    pub policy_id: u32,
    /// [`flags`].
    pub flags: u64,
    /// [`marks`]. 64 bits because the BPF target (cpu v1/v2) has no 32-bit atomic
    /// fetch-or.
    pub marks: u64,
    /// `bpf_ktime_get_ns` when the gate admitted the connect.
    pub start_ns: u64,
    /// The half-open episode a probe belongs to.
    pub probe_epoch: u64,
}
const _: () = assert!(size_of::<SockInfo>() == 56);
impl_pod!(SockInfo);

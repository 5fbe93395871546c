//! Per-socket storage (`sk_storage`) of admitted sockets.

use crate::{dest::DestKey, impl_pod};

/// Flags in [`SockInfo::flags`].
pub mod flags {
    /// The gate admitted this connect and created the entry; set for the entry's life.
    pub const TRACKED: u64 = 1 << 0;
    /// The outcome (success, failure, abandoned) has been recorded. Set with an atomic
    /// fetch-or so each connect is counted exactly once, whichever path sees it first.
    pub const OUTCOME_RECORDED: u64 = 1 << 1;
    /// The retransmission timer fired while connecting: the SYN went unanswered.
    pub const SYN_RETRANSMITTED: u64 = 1 << 2;
    /// The application released the socket while it was still in SYN_SENT.
    pub const RELEASED_CONNECTING: u64 = 1 << 3;
}

/// The value of [`crate::maps::SOCKS`] for one socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    /// Where the admitted `connect()` was going.
    pub dest: DestKey,
    pub _pad: u32,
    /// [`flags`]. 64 bits because the BPF target (cpu v1/v2) has no 32-bit atomic
    /// fetch-or.
    pub flags: u64,
    /// `bpf_ktime_get_ns` when the gate admitted the connect.
    pub start_ns: u64,
}
const _: () = assert!(size_of::<SockInfo>() == 40);
impl_pod!(SockInfo);

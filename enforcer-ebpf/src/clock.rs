//! The time a decision is made at.
//!
//! `bpf_ktime_get_ns` reads the clock source (on these VMs a third of an OPEN
//! circuit's rejection); `bpf_ktime_get_coarse_ns` reads the time of the last
//! tick, the same clock at most a tick behind. A deadline set in
//! milliseconds or more (an open circuit's, an override's) is decided by the
//! coarse time; what is measured from the time (a handshake's latency) or
//! must tell two moments apart (a destination's generation) takes the precise
//! one.

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_ktime_get_coarse_ns};

/// When a decision is made.
pub trait Clock {
    /// The time to within a tick, never after [`precise`](Self::precise).
    fn coarse(&self) -> u64;
    /// The time, as precise as the kernel keeps it.
    fn precise(self) -> u64;
}

/// The kernel's clocks, read when asked.
pub struct Ktime;

impl Clock for Ktime {
    #[inline(always)]
    fn coarse(&self) -> u64 {
        // SAFETY: a helper that takes no argument and reads only the clock.
        unsafe { bpf_ktime_get_coarse_ns() }
    }

    #[inline(always)]
    fn precise(self) -> u64 {
        // SAFETY: as above.
        unsafe { bpf_ktime_get_ns() }
    }
}

/// The coarse time, read already; the precise one read when asked.
pub struct Ticked(pub u64);

impl Clock for Ticked {
    #[inline(always)]
    fn coarse(&self) -> u64 {
        self.0
    }

    #[inline(always)]
    fn precise(self) -> u64 {
        Ktime.precise()
    }
}

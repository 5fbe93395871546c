//! Commands the daemon runs in the kernel, under a destination's lock, through
//! the `control` program (`BPF_PROG_TEST_RUN`): the only way to change a
//! destination's breaker from userspace without racing the hooks that update it.

use crate::{dest::DestKey, impl_pod};

/// [`Command::kind`] values.
pub mod kind {
    /// Back to CLOSED, as new: trip level, window and probes cleared (counters
    /// stay: they are monotonic).
    pub const RESET: u32 = 1;
    /// A healing probe from the daemon reached the destination: an OPEN circuit
    /// goes HALF_OPEN at once, and the probe counts as one probe success.
    pub const HEAL_PROBE_OK: u32 = 2;
    /// A healing probe failed while HALF_OPEN: reopen for the next step.
    pub const HEAL_PROBE_FAILED: u32 = 3;
    /// Garbage collection: forget the destination if it is CLOSED and holds no
    /// slot (the daemon has checked that it is idle), and take it off its
    /// policy's tracked count.
    pub const FORGET: u32 = 4;
}

/// What the control program returns (as an XDP action code, the only values the
/// verifier lets an XDP program return).
pub mod result {
    /// The command's input was malformed.
    pub const INVALID: u32 = 0;
    /// No such destination.
    pub const NOT_FOUND: u32 = 1;
    /// Applied.
    pub const APPLIED: u32 = 2;
    /// The destination's state made the command moot (e.g. healing a CLOSED one).
    pub const NOT_APPLICABLE: u32 = 3;
}

/// The control program's input, passed as the test packet's bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// [`kind`].
    pub kind: u32,
    pub _pad: u32,
    pub dest: DestKey,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<Command>() == 32);
impl_pod!(Command);

impl Command {
    pub const fn new(kind: u32, dest: DestKey) -> Self {
        Self {
            kind,
            _pad: 0,
            dest,
            _pad2: 0,
        }
    }

    /// The command as the bytes of a test packet.
    pub fn to_bytes(&self) -> [u8; size_of::<Self>()] {
        let mut out = [0u8; size_of::<Self>()];
        out[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        for (i, word) in self.dest.addr.iter().enumerate() {
            out[8 + 4 * i..12 + 4 * i].copy_from_slice(&word.to_ne_bytes());
        }
        out[24..26].copy_from_slice(&self.dest.port.to_ne_bytes());
        out
    }
}

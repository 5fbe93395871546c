//! Commands the daemon runs in the kernel, under a destination's lock, through
//! the `control` program (`BPF_PROG_TEST_RUN`): the only way to change a
//! destination's breaker from userspace without racing the hooks that update it.

use crate::{dest::DestKey, flow::FlowKey, impl_pod};

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
    /// Packet plane: end a flow that the daemon's sweep found past its SYN or
    /// idle timeout (checked again in the kernel against the flow as it is
    /// then), recording the timeout and giving its slot back.
    pub const FLOW_EXPIRE: u32 = 5;
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
    /// The flow of a flow command; destination commands use `flow.dest` only.
    pub flow: FlowKey,
}
const _: () = assert!(size_of::<Command>() == 64);
impl_pod!(Command);

impl Command {
    /// A command on one destination.
    pub const fn new(kind: u32, dest: DestKey) -> Self {
        Self::on_flow(
            kind,
            FlowKey {
                dest,
                client: [0; 4],
                client_port: 0,
                _pad: [0; 3],
            },
        )
    }

    /// A command on one flow.
    pub const fn on_flow(kind: u32, flow: FlowKey) -> Self {
        Self {
            kind,
            _pad: 0,
            flow,
        }
    }

    /// The command as the bytes of a test packet.
    pub fn to_bytes(&self) -> [u8; size_of::<Self>()] {
        // SAFETY: `repr(C)`, integer fields only and no implicit padding (the
        // size assertion above): every byte is initialised.
        unsafe { core::mem::transmute::<Self, [u8; size_of::<Self>()]>(*self) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_the_struct_layout() {
        let flow = FlowKey {
            dest: DestKey::from_ipv6_raw([1, 2, 3, 4], 0x1234).in_netns(0x0102_0304_0506_0708),
            client: [5, 6, 7, 8],
            client_port: 0x5678,
            _pad: [0; 3],
        };
        let bytes = Command::on_flow(kind::FLOW_EXPIRE, flow).to_bytes();
        assert_eq!(bytes[0..4], kind::FLOW_EXPIRE.to_ne_bytes());
        assert_eq!(bytes[8..16], 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(bytes[16..20], 1u32.to_ne_bytes());
        assert_eq!(bytes[32..34], 0x1234u16.to_ne_bytes());
        assert_eq!(bytes[40..44], 5u32.to_ne_bytes());
        assert_eq!(bytes[56..58], 0x5678u16.to_ne_bytes());
    }
}

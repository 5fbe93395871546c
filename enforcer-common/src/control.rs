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
const _: () = assert!(size_of::<Command>() == 48);
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
                _pad: 0,
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
        let mut out = [0u8; size_of::<Self>()];
        out[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        let words = self.flow.dest.addr.iter().chain(&self.flow.client);
        let at = [8, 12, 16, 20, 28, 32, 36, 40];
        for (word, at) in words.zip(at) {
            out[at..at + 4].copy_from_slice(&word.to_ne_bytes());
        }
        out[24..26].copy_from_slice(&self.flow.dest.port.to_ne_bytes());
        out[44..46].copy_from_slice(&self.flow.client_port.to_ne_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_the_struct_layout() {
        let flow = FlowKey {
            dest: DestKey::from_ipv6_raw([1, 2, 3, 4], 0x1234),
            client: [5, 6, 7, 8],
            client_port: 0x5678,
            _pad: 0,
        };
        let command = Command::on_flow(kind::FLOW_EXPIRE, flow);
        let bytes = command.to_bytes();
        // SAFETY: `Command` is repr(C) with integer fields only and no implicit padding.
        let raw: [u8; size_of::<Command>()] = unsafe { core::mem::transmute(command) };
        assert_eq!(bytes, raw);
    }
}

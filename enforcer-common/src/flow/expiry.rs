//! When a flow ends without a packet saying so, and what the packet plane's
//! blind spots (a paused switch) do to its judgement.
//!
//! The kernel sees packets, not time passing: the daemon's sweep asks the
//! kernel to expire flows, and both decide with [`Flow::expiry`].
//!
//! | flow                                        | past its SYN or idle timeout     |
//! |---------------------------------------------|----------------------------------|
//! | answered                                    | idle only: closed (slot back)    |
//! | answered, lived through a pause, no packet since | idle for [`Timeouts::lost_ns`]: closed |
//! | unanswered, lived through a pause           | abandoned                        |
//! | unanswered, the guest sent its SYN again    | timeout                          |
//! | unanswered, SYN seen once, < [`SYN_RETRANSMIT_WAIT_NS`] old, not idle | wait |
//! | unanswered, SYN seen once                   | abandoned                        |
//!
//! Silence counts against a destination only when the guest kept asking: a
//! guest that sends one SYN and never again (a flood, a forged source, a
//! program that gave up) tells nothing about the destination.
//!
//! A connection that closed while paused left no FIN to see: rather than hold
//! its slot for the whole idle timeout (refusing others meanwhile), a flow
//! that lived through a pause and shows no packet after it is given up much
//! sooner. A live but quiet connection may lose its slot that way: the error
//! is on the side of letting connections through.

use super::Flow;
use crate::{
    config::Config,
    outcome::{End, Outcome},
};

/// How long an unanswered flow whose SYN was seen once waits for the guest to
/// send it again before it is abandoned (when its SYN timeout is shorter): a
/// stack retransmits after its initial RTO, 1 s (RFC 6298: Linux, BSD,
/// Windows) or 3 s (RFC 1122).
pub const SYN_RETRANSMIT_WAIT_NS: u64 = 3_000_000_000;

/// A flow's SYN and idle timeouts in ns (0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub syn_ns: u64,
    pub idle_ns: u64,
}

impl Timeouts {
    /// The SYN timeout is the flow's policy's connect timeout
    /// (`policy_connect_timeout_ms`, 0 = unset), else the packet plane's
    /// default. The kernel and the daemon's sweep decide alike.
    pub const fn of(config: &Config, policy_connect_timeout_ms: u32) -> Self {
        const MS: u64 = 1_000_000;
        let syn_ms = if policy_connect_timeout_ms != 0 {
            policy_connect_timeout_ms
        } else {
            config.flow_syn_timeout_ms
        };
        Self {
            syn_ns: syn_ms as u64 * MS,
            idle_ns: config.flow_idle_timeout_ms as u64 * MS,
        }
    }

    /// How long an answered flow that lost track of its connection (it lived
    /// through a pause and has shown no packet since) may stay idle: its SYN
    /// timeout, but never less than [`SYN_RETRANSMIT_WAIT_NS`], well above
    /// the granularity at which packets refresh a flow's `last_seen_ns`.
    pub const fn lost_ns(&self) -> u64 {
        if self.syn_ns > SYN_RETRANSMIT_WAIT_NS {
            self.syn_ns
        } else {
            SYN_RETRANSMIT_WAIT_NS
        }
    }
}

/// What the packet plane saw: everything, except while the global switch was
/// off, when the hooks pass every packet without looking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    pub paused: bool,
    /// When the switch was last turned back on (0: never off).
    pub resumed_ns: u64,
}

impl Watch {
    pub const fn of(config: &Config) -> Self {
        Self {
            paused: config.is_paused(),
            resumed_ns: config.resumed_ns,
        }
    }

    /// Whether every packet of `flow` crossed a watching hook: no flow is
    /// opened while paused, so one that started before the last resume (or
    /// lives in a pause now) missed some.
    pub const fn saw_all_of(&self, flow: &Flow) -> bool {
        !self.paused && flow.sock.start_ns >= self.resumed_ns
    }

    /// Whether `flow` missed packets and has shown none since: it may have
    /// ended unseen.
    pub const fn lost_track_of(&self, flow: &Flow) -> bool {
        !self.saw_all_of(flow) && (self.paused || flow.last_seen_ns < self.resumed_ns)
    }

    /// `end` for `flow`, unless the flow missed packets: then an answer it
    /// sees now may be a stale one (a RST ending the connection a SYN-ACK
    /// nobody saw opened looks like a refusal; a SYN-ACK may come a pause
    /// late), so an unanswered flow can only be abandoned.
    pub const fn judge(&self, flow: &Flow, end: End) -> End {
        match end {
            End::Established | End::Failed(_) if !self.saw_all_of(flow) => {
                End::Failed(Outcome::Abandoned)
            }
            other => other,
        }
    }
}

impl Flow {
    /// Whether the flow has expired at `now`, and how it ends (see the module's
    /// table).
    pub const fn expiry(&self, now: u64, timeouts: Timeouts, watch: Watch) -> Option<End> {
        let idle = now.saturating_sub(self.last_seen_ns);
        let idle_expired = timeouts.idle_ns != 0 && idle >= timeouts.idle_ns;
        if self.has_outcome() {
            let lost = watch.lost_track_of(self) && idle >= timeouts.lost_ns();
            return if idle_expired || lost {
                Some(End::Closed)
            } else {
                None
            };
        }
        let waited = now.saturating_sub(self.sock.start_ns);
        let syn_expired = timeouts.syn_ns != 0 && waited >= timeouts.syn_ns;
        if !syn_expired && !idle_expired {
            return None;
        }
        if !watch.saw_all_of(self) {
            return Some(End::Failed(Outcome::Abandoned));
        }
        if self.seq.syn_again() {
            return Some(End::Failed(Outcome::Timeout));
        }
        if !idle_expired && waited < SYN_RETRANSMIT_WAIT_NS {
            return None;
        }
        Some(End::Failed(Outcome::Abandoned))
    }
}

//! The single-entry configuration map shared by every program.

use crate::impl_pod;

/// The value of [`crate::maps::CONFIG`] at index 0.
///
/// A zeroed entry (what the kernel creates before the daemon writes anything) means
/// "active", so a freshly loaded object counts from its first connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Non-zero: the global switch is off and every program passes every
    /// connection untouched (no accounting, no rejection).
    pub paused: u32,
    /// Non-zero when the overrides map may hold entries: the gate skips the
    /// lookup otherwise.
    pub overrides: u32,
    /// Bumped by the daemon on every config write, so a reader can tell which
    /// configuration the kernel is running.
    pub generation: u64,
    /// Id (inode) of the cgroup the programs are attached to, so a restarted
    /// daemon can tell whether the pinned programs are where it wants them.
    pub cgroup_id: u64,
    /// Thread-group id of the daemon: its own connects (healing probes) pass the
    /// gate untouched. 0 = none.
    pub bypass_tgid: u32,
    /// Packet plane: how long a flow may stay in SYN_SENT before it counts as
    /// a timeout, when its policy sets no connect timeout (ms; 0 = never).
    pub flow_syn_timeout_ms: u32,
    /// Packet plane: how long a flow may go without a packet before it is
    /// forgotten and its slot released (ms; 0 = never).
    pub flow_idle_timeout_ms: u32,
    /// The bank of policy maps the programs read
    /// ([`crate::bank::Bank::active`]): the daemon writes a new policy set
    /// into the other bank and flips this, so that the programs see one set
    /// or the other, never a mix.
    pub policy_bank: u32,
    /// Packet plane: the network namespace (cookie) of the watched interfaces,
    /// i.e. the daemon's: forwarded connections are routed there, so that is
    /// where their destinations live.
    pub netns_cookie: u64,
    /// `CLOCK_MONOTONIC` ns when the global switch was last turned back on
    /// (0: never paused). The packet plane saw none of a flow's packets while
    /// paused, so a flow older than this is judged by what it missed: never
    /// as a failure (`enforcer_common::flow::Watch`).
    pub resumed_ns: u64,
    /// Non-zero: the programs log their rare paths (a full map, socket
    /// storage that cannot be created, unexpected states) through aya-log
    /// (`daemon.kernel_log`). Zero skips every log call.
    pub kernel_log: u32,
    /// The armed chaos faults, one bit per slot of [`crate::maps::CHAOS`]
    /// ([`crate::chaos::bit`]). Zero (no experiment) costs the programs this
    /// one test; clearing bits ends those faults at once.
    pub chaos_armed: u32,
}
const _: () = assert!(size_of::<Config>() == 64);
impl_pod!(Config);

impl Config {
    pub const fn is_paused(&self) -> bool {
        self.paused != 0
    }

    pub const fn kernel_log(&self) -> bool {
        self.kernel_log != 0
    }
}

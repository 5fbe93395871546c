//! Commands the daemon runs in the kernel, under a destination's lock, through
//! the `control` program (`BPF_PROG_TEST_RUN`): the only way to change a
//! destination's breaker from userspace without racing the hooks that update it.
//!
//! What the daemon decides from a read of the map is decided again here, on the
//! destination as it is under its lock: the daemon's read may be a scan old.

use crate::{
    baseline::Baseline,
    breaker::State,
    dest::{DestKey, DestState},
    flow::FlowKey,
    impl_pod, raw_enum,
};

raw_enum! {
    /// What a [`Command`] does ([`Command::kind`]).
    pub enum Kind {
        /// Back to CLOSED, as new: trip level, window and probes cleared (counters
        /// stay: they are monotonic). With [`when::STALE_POLICY`], only when the
        /// destination's policy epoch no longer matches its policy's.
        Reset = 1,
        /// A healing probe from the daemon reached the destination: an OPEN circuit
        /// goes HALF_OPEN at once, and the probe counts as one probe success.
        HealProbeOk = 2,
        /// A healing probe failed while HALF_OPEN: reopen for the next step.
        HealProbeFailed = 3,
        /// Forget the destination when [`may_forget`] says so (no slot held, no
        /// connect since [`Command::idle_since_ns`], in a state the [`when`] flags
        /// allow), and take it off its policy's counts: off `open` (if it was not
        /// CLOSED) and off `tracked`, each once.
        Forget = 4,
        /// Packet plane: end a flow that the daemon's sweep found past its SYN or
        /// idle timeout (checked again in the kernel against the flow as it is
        /// then), recording the timeout and giving its slot back.
        FlowExpire = 5,
        /// Add signed deltas ([`Command::deltas`]) to the `tracked` and `open`
        /// counts of policy [`Command::policy_id`], atomically, each stopping at
        /// 0: the daemon's correction of a drift it counted in the destination
        /// map.
        AdjustPolicyStats = 6,
        /// The slots held now belong to admissions nobody can give back: the
        /// socket records of the programs that admitted them are gone (a new
        /// install over the maps an interrupted one left). Give them back and
        /// start a new generation, so that no record of an earlier admission
        /// releases into this one (see [`crate::dest::DestState::orphan_slots`]).
        ReleaseOrphaned = 7,
        /// Set the destination's learned cap ([`Command::limit`]), when it
        /// still belongs to policy [`Command::policy_id`] under that policy's
        /// current epoch: a limit learned under one policy never caps a
        /// destination that has moved to another.
        SetLimit = 8,
        /// Eject the destination as an outlier among its policy's peers: a
        /// CLOSED destination still of policy [`Command::policy_id`] under
        /// its current epoch opens for [`Command::duration_ns`] (when the
        /// group guard allows), and comes back through the half-open probes.
        Eject = 9,
        /// Set the destination's learned [`crate::baseline::Baseline`]
        /// ([`Command::baseline`]), on the same terms as `SET_LIMIT`.
        SetBaseline = 10,
    }
}

/// Conditions of destination commands ([`Command::when`]), as bits.
pub mod when {
    /// FORGET: OPEN and HALF_OPEN destinations may go too (without it only
    /// CLOSED ones do). They come back CLOSED at their next connect.
    pub const OPEN_TOO: u64 = 1;
    /// FORGET: an OPEN destination only once its open period has ended (idle
    /// collection must not cut an open period short; eviction may).
    pub const OPEN_ENDED: u64 = 2;
    /// FORGET, RESET: only when the destination's policy epoch is not its
    /// policy's (the policy was removed, or its id went to another policy).
    pub const STALE_POLICY: u64 = 4;
}

raw_enum! {
    /// What the control program returns (as an XDP action code, the only values
    /// the verifier lets an XDP program return).
    pub enum Reply {
        /// The command's input was malformed.
        Invalid = 0,
        /// No such destination (or policy).
        NotFound = 1,
        /// Applied.
        Applied = 2,
        /// The destination's state made the command moot (e.g. healing a CLOSED
        /// one, forgetting one that took a connect since the daemon looked).
        NotApplicable = 3,
    }
}

/// The control program's input, passed as the test packet's bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// A [`Kind`].
    pub kind: u32,
    /// Policy commands: the policy's id.
    pub policy_id: u32,
    /// The flow of a flow command; destination commands use `flow.dest` only.
    pub flow: FlowKey,
    /// Arguments, per kind: FORGET `[idle_since_ns, when]`, RESET `[0, when]`,
    /// ADJUST_POLICY_STATS `[tracked delta, open delta]` (two's complement),
    /// SET_LIMIT `[limit, 0]`, SET_BASELINE `[share | spread << 32, p99 |
    /// windows << 32]`.
    pub args: [u64; 2],
}
const _: () = assert!(size_of::<Command>() == 80);
impl_pod!(Command);

impl Command {
    /// A command on one destination.
    pub const fn new(kind: Kind, dest: DestKey) -> Self {
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
    pub const fn on_flow(kind: Kind, flow: FlowKey) -> Self {
        Self {
            kind: kind as u32,
            policy_id: 0,
            flow,
            args: [0; 2],
        }
    }

    /// FORGET `dest` if it saw no connect after `idle_since_ns`
    /// (`bpf_ktime_get_ns` clock) and its state passes `when`.
    pub const fn forget(dest: DestKey, idle_since_ns: u64, when: u64) -> Self {
        let mut command = Self::new(Kind::Forget, dest);
        command.args = [idle_since_ns, when];
        command
    }

    /// RESET `dest` only if its policy epoch is stale.
    pub const fn reset_stale(dest: DestKey) -> Self {
        let mut command = Self::new(Kind::Reset, dest);
        command.args = [0, when::STALE_POLICY];
        command
    }

    /// ADJUST_POLICY_STATS of policy `policy_id` by these deltas.
    pub const fn adjust_policy_stats(policy_id: u32, tracked: i64, open: i64) -> Self {
        let mut command = Self::new(Kind::AdjustPolicyStats, DestKey::from_ipv6_raw([0; 4], 0));
        command.policy_id = policy_id;
        command.args = [tracked as u64, open as u64];
        command
    }

    /// SET_LIMIT of `dest`, learned under policy `policy_id`, to `limit`.
    pub const fn set_limit(dest: DestKey, policy_id: u32, limit: u32) -> Self {
        let mut command = Self::new(Kind::SetLimit, dest);
        command.policy_id = policy_id;
        command.args = [limit as u64, 0];
        command
    }

    /// EJECT `dest`, judged an outlier under policy `policy_id`, for
    /// `duration_ns`.
    pub const fn eject(dest: DestKey, policy_id: u32, duration_ns: u64) -> Self {
        let mut command = Self::new(Kind::Eject, dest);
        command.policy_id = policy_id;
        command.args = [duration_ns, 0];
        command
    }

    /// SET_BASELINE of `dest`, learned under policy `policy_id`.
    pub const fn set_baseline(dest: DestKey, policy_id: u32, b: &Baseline) -> Self {
        let mut command = Self::new(Kind::SetBaseline, dest);
        command.policy_id = policy_id;
        command.args = [
            b.share_ppm as u64 | (b.spread_ppm as u64) << 32,
            b.p99_us as u64 | (b.windows as u64) << 32,
        ];
        command
    }

    /// SET_BASELINE: the baseline learned.
    pub const fn baseline(&self) -> Baseline {
        Baseline {
            share_ppm: self.args[0] as u32,
            spread_ppm: (self.args[0] >> 32) as u32,
            p99_us: self.args[1] as u32,
            windows: (self.args[1] >> 32) as u32,
        }
    }

    /// EJECT: how long the destination stays open.
    pub const fn duration_ns(&self) -> u64 {
        self.args[0]
    }

    /// SET_LIMIT: the learned cap.
    pub const fn limit(&self) -> u32 {
        self.args[0] as u32
    }

    /// FORGET: the last connect the destination may have seen.
    pub const fn idle_since_ns(&self) -> u64 {
        self.args[0]
    }

    /// FORGET, RESET: [`when`] bits.
    pub const fn when(&self) -> u64 {
        self.args[1]
    }

    /// ADJUST_POLICY_STATS: the (tracked, open) deltas.
    pub const fn deltas(&self) -> (i64, i64) {
        (self.args[0] as i64, self.args[1] as i64)
    }

    /// The command as the bytes of a test packet.
    pub fn to_bytes(&self) -> [u8; size_of::<Self>()] {
        // SAFETY: `repr(C)`, integer fields only and no implicit padding (the
        // size assertion above): every byte is initialised.
        unsafe { core::mem::transmute::<Self, [u8; size_of::<Self>()]>(*self) }
    }
}

/// Whether the destination joined its policy under another epoch than the
/// policy's current one (`policy_epoch`, 0 for an id no policy holds): the
/// policy it counted for is gone.
#[inline(always)]
pub const fn stale_policy(d: &DestState, policy_epoch: u32) -> bool {
    d.policy_epoch != policy_epoch
}

/// Whether the destination, as it is under its lock, still belongs to
/// `policy_id` under that policy's current epoch `policy_epoch`: what the
/// daemon learned or judged under one policy (a limit, a baseline, an
/// ejection) never lands on a destination that has moved to another.
#[inline(always)]
pub const fn of_policy(d: &DestState, policy_id: u32, policy_epoch: u32) -> bool {
    d.policy_id == policy_id && !stale_policy(d, policy_epoch)
}

/// SET_LIMIT on a destination as it is under its lock ([`of_policy`]).
#[inline(always)]
pub const fn set_limit(d: &mut DestState, policy_id: u32, policy_epoch: u32, limit: u32) -> bool {
    if !of_policy(d, policy_id, policy_epoch) {
        return false;
    }
    d.breaker.limit = limit;
    true
}

/// SET_BASELINE on a destination as it is under its lock ([`of_policy`]).
#[inline(always)]
pub const fn set_baseline(
    d: &mut DestState,
    policy_id: u32,
    policy_epoch: u32,
    b: Baseline,
) -> bool {
    if !of_policy(d, policy_id, policy_epoch) {
        return false;
    }
    d.baseline = b;
    true
}

/// FORGET's decision on a destination as it is under its lock at `now`, its
/// policy's current epoch being `policy_epoch`.
///
/// Never a destination holding a slot: a new entry of its key would start with
/// its bulkhead empty while those connections live on. Never one that took a
/// connect after `idle_since_ns`: the daemon's reason to forget it is gone.
#[inline(always)]
pub const fn may_forget(
    d: &DestState,
    idle_since_ns: u64,
    when: u64,
    policy_epoch: u32,
    now: u64,
) -> bool {
    let b = &d.breaker;
    if b.active != 0 || b.pending != 0 || d.last_attempt_ns > idle_since_ns {
        return false;
    }
    if when & when::STALE_POLICY != 0 && !stale_policy(d, policy_epoch) {
        return false;
    }
    // The field is raw (see the crate's documentation): constant patterns.
    const CLOSED: u32 = State::Closed as u32;
    const OPEN: u32 = State::Open as u32;
    match b.state {
        CLOSED => true,
        _ if when & when::OPEN_TOO == 0 => false,
        OPEN if when & when::OPEN_ENDED != 0 => now >= b.open_until_ns,
        _ => true,
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
        let bytes = Command::on_flow(Kind::FlowExpire, flow).to_bytes();
        assert_eq!(bytes[0..4], (Kind::FlowExpire as u32).to_ne_bytes());
        assert_eq!(bytes[8..16], 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(bytes[16..20], 1u32.to_ne_bytes());
        assert_eq!(bytes[32..34], 0x1234u16.to_ne_bytes());
        assert_eq!(bytes[40..44], 5u32.to_ne_bytes());
        assert_eq!(bytes[56..58], 0x5678u16.to_ne_bytes());
        let bytes = Command::adjust_policy_stats(7, -2, 3).to_bytes();
        assert_eq!(bytes[4..8], 7u32.to_ne_bytes());
        assert_eq!(bytes[64..72], (-2i64).to_ne_bytes());
        assert_eq!(bytes[72..80], 3u64.to_ne_bytes());
    }

    #[test]
    fn raw_values_decode_to_their_variant_and_others_to_none() {
        for kind in [
            Kind::Reset,
            Kind::Forget,
            Kind::ReleaseOrphaned,
            Kind::SetLimit,
            Kind::Eject,
            Kind::SetBaseline,
        ] {
            assert_eq!(Kind::from_raw(kind as u32), Some(kind));
        }
        assert_eq!(Kind::from_raw(0), None);
        assert_eq!(Kind::from_raw(11), None);
        assert_eq!(Reply::from_raw(0), Some(Reply::Invalid));
        assert_eq!(Reply::from_raw(u32::MAX), None);
    }

    #[test]
    fn a_baseline_travels_whole_and_lands_only_under_its_policy_and_epoch() {
        let b = Baseline {
            share_ppm: 30_000,
            spread_ppm: u32::MAX,
            p99_us: 1,
            windows: 77,
        };
        let key = DestKey::from_ipv4_raw(1, 2);
        assert_eq!(Command::set_baseline(key, 3, &b).baseline(), b);
        let mut d = DestState {
            policy_id: 3,
            policy_epoch: 9,
            ..DestState::default()
        };
        assert!(!set_baseline(&mut d, 4, 9, b), "another policy's");
        assert!(!set_baseline(&mut d, 3, 8, b), "a stale epoch's");
        assert_eq!(d.baseline, Baseline::default());
        assert!(set_baseline(&mut d, 3, 9, b));
        assert_eq!(d.baseline, b);
    }

    #[test]
    fn a_limit_is_set_only_under_the_policy_and_epoch_it_was_learned_for() {
        let mut d = DestState::new(3, 1);
        d.policy_epoch = 77;
        assert!(!set_limit(&mut d, 4, 77, 9), "another policy");
        assert!(!set_limit(&mut d, 3, 78, 9), "a stale epoch");
        assert_eq!(d.breaker.limit, 0);
        assert!(set_limit(&mut d, 3, 77, 9));
        assert_eq!(d.breaker.limit, 9);
        let command = Command::set_limit(DestKey::from_ipv6_raw([0; 4], 80), 3, 9);
        assert_eq!((command.policy_id, command.limit()), (3, 9));
        assert_eq!(Kind::from_raw(command.kind), Some(Kind::SetLimit));
    }

    #[test]
    fn adjust_deltas_round_trip_negative_values() {
        let c = Command::adjust_policy_stats(1, -5, i64::MIN);
        assert_eq!(c.deltas(), (-5, i64::MIN));
        let c = Command::forget(DestKey::default(), 42, when::OPEN_TOO);
        assert_eq!((c.idle_since_ns(), c.when()), (42, when::OPEN_TOO));
    }

    const EPOCH: u32 = 77;
    const SEC: u64 = 1_000_000_000;

    /// A destination last connected to at 10 s, in `state`, under EPOCH.
    fn dest(state: State) -> DestState {
        let mut d = DestState::new(1, 10 * SEC);
        d.policy_epoch = EPOCH;
        d.breaker.state = state as u32;
        d
    }

    #[test]
    fn closed_idle_destinations_without_slots_go() {
        let d = dest(State::Closed);
        assert!(may_forget(&d, 10 * SEC, 0, EPOCH, 20 * SEC));
        assert!(
            !may_forget(&d, 9 * SEC, 0, EPOCH, 20 * SEC),
            "connected since"
        );
        let mut busy = d;
        busy.breaker.active = 1;
        assert!(
            !may_forget(&busy, 10 * SEC, 0, EPOCH, 20 * SEC),
            "holds a slot"
        );
        let mut pending = d;
        pending.breaker.pending = 1;
        assert!(!may_forget(&pending, 10 * SEC, 0, EPOCH, 20 * SEC));
    }

    #[test]
    fn open_destinations_go_only_when_asked_and_idle_ones_after_their_period() {
        let mut d = dest(State::Open);
        d.breaker.open_until_ns = 30 * SEC;
        assert!(!may_forget(&d, 10 * SEC, 0, EPOCH, 20 * SEC), "CLOSED only");
        assert!(may_forget(&d, 10 * SEC, when::OPEN_TOO, EPOCH, 20 * SEC));
        let idle = when::OPEN_TOO | when::OPEN_ENDED;
        assert!(
            !may_forget(&d, 10 * SEC, idle, EPOCH, 20 * SEC),
            "still open"
        );
        assert!(may_forget(&d, 10 * SEC, idle, EPOCH, 30 * SEC));
        let half = dest(State::HalfOpen);
        assert!(may_forget(&half, 10 * SEC, idle, EPOCH, 20 * SEC));
        assert!(!may_forget(&half, 10 * SEC, 0, EPOCH, 20 * SEC));
    }

    #[test]
    fn stale_only_forgets_destinations_of_another_epoch() {
        let d = dest(State::Open);
        let stale = when::OPEN_TOO | when::STALE_POLICY;
        assert!(!may_forget(&d, 10 * SEC, stale, EPOCH, 20 * SEC));
        assert!(may_forget(&d, 10 * SEC, stale, EPOCH + 1, 20 * SEC));
        assert!(may_forget(&d, 10 * SEC, stale, 0, 20 * SEC), "id freed");
        assert!(stale_policy(&d, 0) && !stale_policy(&d, EPOCH));
    }
}

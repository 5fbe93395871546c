//! Policies: what the kernel does for the destinations a rule maps to them.

use crate::{impl_pod, raw_enum};

raw_enum! {
    /// What a policy does ([`Policy::mode`]).
    pub enum Mode {
        /// Nothing: destinations of this policy pass untouched and untracked.
        Off = 0,
        /// Shadow: full accounting and state machine, never rejects; counts
        /// "would reject".
        Observe = 1,
        /// Full enforcement.
        Enforce = 2,
    }
}

raw_enum! {
    /// What an adaptive policy learns its limits from ([`Policy::signal`]):
    /// a per-connection latency the kernel measures for unmodified programs,
    /// summed into [`crate::dest::DestState::signal`].
    pub enum Signal {
        /// Admission to the completed handshake (no per-packet work).
        Handshake = 0,
        /// The first byte the caller sends to the first byte of the answer
        /// (cgroup_skb programs look at the socket's packets until then).
        Response = 1,
        /// Admission to the close of an established connection (no
        /// per-packet work; for one-request-per-connection callers).
        Lifetime = 2,
    }
}

/// Open durations per policy: `steps_ns[k]` is the open period after the
/// `k+1`-th consecutive trip. Written by the daemon (jittered exponential steps).
pub const BACKOFF_STEPS: usize = 16;

/// A policy, in the [`crate::maps::POLICIES`] array at its id in each bank
/// ([`crate::bank::Bank::slot`]). A zeroed entry is an `OFF` policy, so an id
/// no rule points to does nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// A [`Mode`].
    pub mode: u32,
    /// Consecutive failures that trip the breaker; 0 = this trigger is off.
    pub failure_threshold: u32,
    /// Failure share (‰ of the window's completed connects) that trips the
    /// breaker once the window holds `min_attempts`; 0 = this trigger is off.
    pub failure_rate_permille: u32,
    /// Completed connects the window must hold before the rate counts.
    pub min_attempts: u32,
    /// Length of the failure-rate window, split in [`crate::breaker::WINDOW_BUCKETS`].
    pub window_ns: u64,
    /// A handshake slower than this counts as a failure; 0 = off.
    pub slow_connect_ns: u64,
    /// Applied with `bpf_setsockopt(TCP_USER_TIMEOUT)` at connect time; 0 = the
    /// kernel's SYN retry schedule.
    pub connect_timeout_ms: u32,
    /// K: at most this many probe connects in flight while HALF_OPEN (≥ 1).
    pub half_open_probes: u32,
    /// M: probe successes that close the circuit (≥ 1).
    pub close_after: u32,
    /// Cap on connections holding a slot (admitted, not yet closed); 0 = none.
    pub max_connections: u32,
    /// Cap on connections in SYN_SENT; 0 = none.
    pub max_pending: u32,
    /// errno a rejected `connect()` fails with (positive, e.g. 111 ECONNREFUSED).
    pub errno: u32,
    /// At most this share (%) of the policy's tracked destinations may be open at
    /// once (at least one always may); 100 = no guard.
    pub max_open_percent: u32,
    /// Valid entries in this policy's backoff row (1..=BACKOFF_STEPS).
    pub backoff_steps: u32,
    /// After staying healthy (CLOSED, no failure) this long, the trip level drops
    /// by one, so the next open period is shorter again; 0 = never.
    pub trip_decay_ns: u64,
    /// When non-zero, the policy applies only to processes in this cgroup (id =
    /// the directory's inode) or below it; others pass untouched.
    pub cgroup_id: u64,
    /// Depth of that cgroup below the root (root = 0), for
    /// `bpf_get_current_ancestor_cgroup_id`.
    pub cgroup_level: u32,
    /// Tells the policies that held this id apart (a hash of the policy's
    /// name, never 0): a destination that joined the id under another epoch
    /// starts over CLOSED instead of staying OPEN under rules not its own.
    pub epoch: u32,
    /// A half-open probe still unanswered after this long is reclaimed: the
    /// destination reopens for the next backoff step (the connect timeout when
    /// set, else a bound of the daemon's); 0 = never.
    pub probe_timeout_ns: u64,
    /// Non-zero: `max_connections` is only where each destination starts;
    /// the daemon learns each one's own cap from its latency
    /// ([`crate::breaker::Breaker::limit`]).
    pub adaptive: u32,
    /// A [`Signal`]: what [`crate::dest::DestState::signal`] sums.
    pub signal: u32,
    /// [`crate::baseline::learn`] bits: the trip rate and the slow bound
    /// follow each destination's learned [`crate::baseline::Baseline`]
    /// (`failure_rate_permille` is then the highest rate, and the rate
    /// before a baseline is learned).
    pub learn: u32,
    /// Learned trip rate: spreads above the baseline share, in thousandths.
    pub sensitivity_milli: u32,
    /// Learned trip rate: the lowest it may be, ‰.
    pub rate_min_permille: u32,
    /// Learned slow bound: the baseline's p99 times this, in thousandths.
    pub slow_factor_milli: u32,
    /// Each open period is spread by up to ± this share (‰) of its backoff
    /// step, per destination and trip ([`spread_ns`]): destinations tripped
    /// together do not come back together.
    pub jitter_permille: u32,
    /// Non-zero: the policy applies only to processes in (or below) a cgroup
    /// its workload selectors match now ([`crate::workload`], its scope
    /// being the policy's id); `cgroup_id` is then 0.
    pub workloads: u32,
}
const _: () = assert!(size_of::<Policy>() == 128);
impl_pod!(Policy);

impl Policy {
    /// Whether the policy applies to some processes only (a cgroup or
    /// workload selectors): never to forwarded packets, which belong to no
    /// cgroup.
    #[inline(always)]
    pub const fn is_scoped(&self) -> bool {
        self.cgroup_id != 0 || self.workloads != 0
    }

    /// The cap on a destination's connections whose learned limit is `limit`:
    /// that limit under an adaptive policy once learned, else
    /// `max_connections`; 0 = none.
    #[inline(always)]
    pub const fn cap(&self, limit: u32) -> u32 {
        if self.adaptive != 0 && limit != 0 {
            limit
        } else {
            self.max_connections
        }
    }
}

/// The value of [`crate::maps::BACKOFF`] for one policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffRow {
    pub steps_ns: [u64; BACKOFF_STEPS],
}
const _: () = assert!(size_of::<BackoffRow>() == 8 * BACKOFF_STEPS);
impl_pod!(BackoffRow);

impl BackoffRow {
    /// Plain exponential steps `base · 2^k`, capped at `max`.
    pub fn exponential(base_ns: u64, max_ns: u64) -> Self {
        let mut steps_ns = [0; BACKOFF_STEPS];
        for (k, step) in steps_ns.iter_mut().enumerate() {
            *step = base_ns.saturating_mul(1 << k).min(max_ns);
        }
        Self { steps_ns }
    }

    /// Open duration at trip level `trips` (≥ 1), the last valid step beyond.
    #[inline(always)]
    pub fn open_ns(&self, trips: u32, valid_steps: u32) -> u64 {
        let last = (valid_steps.clamp(1, BACKOFF_STEPS as u32) - 1) as usize;
        let k = (trips.saturating_sub(1) as usize).min(last);
        // `k <= last < BACKOFF_STEPS`: the bound check below never fails, and it
        // keeps the verifier certain of it too.
        match self.steps_ns.get(k) {
            Some(ns) => *ns,
            None => 0,
        }
    }
}

/// A backoff step of `step_ns` spread by up to ± `jitter_permille` ‰ of it,
/// by `seed` (any bits; [`mix`] makes them uniform).
#[inline(always)]
pub const fn spread_ns(step_ns: u64, jitter_permille: u32, seed: u64) -> u64 {
    let jitter = if jitter_permille > 1000 {
        1000
    } else {
        jitter_permille
    };
    let reach = step_ns / 1000 * jitter as u64;
    // 16 random bits: `2 × reach × u16` stays far from overflow for any
    // step below 2^47 ns (39 hours).
    let u = mix(seed) & 0xffff;
    step_ns - reach + ((2 * reach * u) >> 16)
}

/// SplitMix64's finaliser: every input bit moves every output bit, so
/// clocks a few nanoseconds apart give unrelated spreads.
#[inline(always)]
pub const fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Per-policy shared counters (the group guard), in [`crate::maps::POLICY_STATS`].
/// Updated with atomics: they span destinations, so no one destination lock
/// covers them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Destinations of this policy in the destination map.
    pub tracked: u64,
    /// Of those, not CLOSED (OPEN or HALF_OPEN).
    pub open: u64,
    /// Trips refused by the group guard.
    pub guard_refusals: u64,
}
const _: () = assert!(size_of::<PolicyStats>() == 24);
impl_pod!(PolicyStats);

/// Whether one more destination may open: `open_after` destinations would be
/// open out of `tracked`, the guard allows `max_open_percent`%, and at least one
/// destination may always be open (as Envoy's `max_ejection_percent`).
pub const fn guard_allows(open_after: u64, tracked: u64, max_open_percent: u32) -> bool {
    if max_open_percent >= 100 {
        return true;
    }
    let allowed = tracked * max_open_percent as u64 / 100;
    open_after <= if allowed == 0 { 1 } else { allowed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_steps_are_capped() {
        let row = BackoffRow::exponential(100, 1000);
        assert_eq!(&row.steps_ns[..6], &[100, 200, 400, 800, 1000, 1000]);
        assert_eq!(row.open_ns(1, 16), 100);
        assert_eq!(row.open_ns(3, 16), 400);
        assert_eq!(row.open_ns(40, 16), 1000);
        // Beyond the valid steps, the last valid one.
        assert_eq!(row.open_ns(5, 2), 200);
        assert_eq!(row.open_ns(0, 0), 100);
    }

    #[test]
    fn spread_stays_within_the_jitter_and_covers_it() {
        let step = 10_000_000_000;
        let (mut low, mut high, mut tenths) = (u64::MAX, 0, [0u32; 10]);
        // Consecutive clocks, as destinations tripped together read them.
        for t in 0..10_000u64 {
            let s = spread_ns(step, 200, 1_000_000_000 + t);
            assert!((8_000_000_000..=12_000_000_000).contains(&s), "{s}");
            (low, high) = (low.min(s), high.max(s));
            tenths[((s - 8_000_000_000) / 400_000_001) as usize] += 1;
        }
        // They spread over the whole range, evenly: each tenth of it gets
        // its share.
        assert!(
            low < 8_050_000_000 && high > 11_950_000_000,
            "{low}..{high}"
        );
        assert!(tenths.iter().all(|n| (800..1200).contains(n)), "{tenths:?}");
        assert_eq!(spread_ns(step, 0, 12345), step);
        assert_eq!(spread_ns(0, 500, 12345), 0);
    }

    #[test]
    fn guard_always_allows_one_open_destination() {
        assert!(guard_allows(1, 1, 10));
        assert!(!guard_allows(2, 10, 10));
        assert!(guard_allows(5, 10, 50));
        assert!(!guard_allows(6, 10, 50));
        assert!(guard_allows(10, 10, 100));
    }
}

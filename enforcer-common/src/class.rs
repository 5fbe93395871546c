//! Priority classes sharing a destination's cap, as pure code.
//!
//! A process belongs to the class of the nearest ancestor of its cgroup that
//! the operator listed ([`crate::maps::CLASS_CGROUPS`]), [`Priority::Default`]
//! when none is. Against a destination's cap `C` (static or learnt):
//!
//! - each class reserves `r = ⌊C · share⌋`: a connect of a class holding fewer
//!   than its reservation is admitted at once, whoever else is connected —
//!   reserved capacity is never lent to another class;
//! - the unreserved rest `U = C − Σ r` is shared: a class at or above its
//!   reservation borrows while the borrowed total is below `U`;
//!
//! so the cap holds exactly across classes and each class gets its share
//! without waiting for anyone to close.
//!
//! When a destination degrades — the failure share of its window rising
//! towards the policy's `failure_rate` (once the window holds `min_attempts`)
//! — lower classes stop borrowing, then are refused outright, before the
//! breaker trips for everyone; critical callers see only the trip itself
//! ([`Priority::stops_borrowing_at`], [`Priority::shed_at`], in ‰ of the trip
//! point). The window empties as time passes, so a class refused this way is
//! admitted again once the failures age out of it. A falling cap shrinks the
//! unreserved rest first in effect: classes without a share borrow it, and
//! nobody borrows while it is overdrawn.

use crate::{breaker::Totals, impl_pod, raw_enum};

/// How many classes there are: one per priority.
pub const CLASSES: usize = 4;

raw_enum! {
    /// A class's priority, highest first; also its index in a destination's
    /// per-class counts.
    pub enum Priority {
        Critical = 0,
        High = 1,
        Default = 2,
        Sheddable = 3,
    }
}

impl Priority {
    pub const ALL: [Self; CLASSES] = [Self::Critical, Self::High, Self::Default, Self::Sheddable];

    /// The priority's bit in a set of priorities (a chaos fault's classes).
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Default => "default",
            Self::Sheddable => "sheddable",
        }
    }

    /// Degradation (‰ of the trip point) from which the class no longer
    /// borrows beyond its reservation.
    #[inline(always)]
    pub const fn stops_borrowing_at(self) -> u32 {
        self.shed_at() / 2
    }

    /// Degradation (‰ of the trip point) from which the class is refused as
    /// if the circuit were open for it; critical callers only by the trip.
    #[inline(always)]
    pub const fn shed_at(self) -> u32 {
        match self {
            Self::Critical => u32::MAX,
            Self::High => 750,
            Self::Default => 500,
            Self::Sheddable => 250,
        }
    }
}

/// The value of [`crate::maps::CLASS_TABLE`] at index 0: the classes'
/// guaranteed shares, written by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassTable {
    /// Each priority's guaranteed share of a capped destination's limit, ‰
    /// (their sum at most 1000).
    pub share_permille: [u32; CLASSES],
    /// Non-zero when classes are configured: the gate finds the caller's
    /// class and applies the rules above. Zero: every caller is `default`
    /// and nothing here applies.
    pub enabled: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<ClassTable>() == 24);
impl_pod!(ClassTable);

impl ClassTable {
    #[inline(always)]
    pub const fn is_enabled(&self) -> bool {
        self.enabled != 0
    }
}

/// One class's counts at a destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Connections of the class holding a slot.
    pub active: u32,
    pub _pad: u32,
    /// Connects of the class admitted.
    pub admitted: u64,
    /// Connects of the class refused by the class rules (its share used and
    /// nothing left to borrow, or shed while the destination degrades).
    pub shed: u64,
}
const _: () = assert!(size_of::<ClassCounts>() == 24);
impl_pod!(ClassCounts);

/// A caller's class as the gate found it, with the table it applies.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub table: &'a ClassTable,
    pub class: Priority,
}

/// How degraded a destination is: its window's failure share in ‰ of its
/// trip rate `trip_permille` (1000 = the trip point); 0 while the window
/// holds fewer than `min_attempts` or the rate trigger is off.
#[inline(always)]
pub const fn degradation(totals: Totals, min_attempts: u32, trip_permille: u32) -> u32 {
    if totals.attempts < min_attempts {
        return 0;
    }
    // `checked_div`: no division the compiler must guard with a panic (the
    // BPF target cannot have one).
    let Some(share) = (totals.failures as u64 * 1000).checked_div(totals.attempts as u64) else {
        return 0;
    };
    let Some(of_trip) = (share * 1000).checked_div(trip_permille as u64) else {
        return 0;
    };
    if of_trip > u32::MAX as u64 {
        u32::MAX
    } else {
        of_trip as u32
    }
}

/// What the class rules say of one connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassVerdict {
    Admit,
    /// Its reservation is used and nothing is left to borrow.
    Full,
    /// Shed while the destination degrades.
    Shed,
}

/// The class rules for a connect of `class` to a destination capped at `cap`
/// (0: none) whose classes hold `counts`, degraded to `degradation`.
#[inline(always)]
pub fn decide(
    cap: u32,
    table: &ClassTable,
    counts: &[ClassCounts; CLASSES],
    class: Priority,
    degradation: u32,
) -> ClassVerdict {
    if degradation >= class.shed_at() {
        return ClassVerdict::Shed;
    }
    if cap == 0 {
        return ClassVerdict::Admit;
    }
    let mut reserved_total = 0u64;
    let mut borrowed = 0u64;
    let mut own_reserved = 0u64;
    let mut own_active = 0u64;
    for (i, (share, c)) in table.share_permille.iter().zip(counts).enumerate() {
        let reserved = cap as u64 * (*share).min(1000) as u64 / 1000;
        reserved_total += reserved;
        borrowed += (c.active as u64).saturating_sub(reserved);
        if i == class as usize {
            own_reserved = reserved;
            own_active = c.active as u64;
        }
    }
    if own_active < own_reserved {
        return ClassVerdict::Admit;
    }
    let pool = (cap as u64).saturating_sub(reserved_total);
    if degradation < class.stops_borrowing_at() && borrowed < pool {
        ClassVerdict::Admit
    } else {
        ClassVerdict::Full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(shares: [u32; CLASSES]) -> ClassTable {
        ClassTable {
            share_permille: shares,
            enabled: 1,
            _pad: 0,
        }
    }

    /// Admits `class` as long as the rules allow, counting it; how many.
    fn fill(
        cap: u32,
        t: &ClassTable,
        counts: &mut [ClassCounts; CLASSES],
        class: Priority,
        want: u32,
    ) -> u32 {
        let mut got = 0;
        for _ in 0..want {
            let total: u32 = counts.iter().map(|c| c.active).sum();
            if total >= cap || decide(cap, t, counts, class, 0) != ClassVerdict::Admit {
                continue;
            }
            counts[class as usize].active += 1;
            got += 1;
        }
        got
    }

    #[test]
    fn a_share_is_reserved_and_the_rest_is_shared() {
        // Cap 10, critical guaranteed half.
        let t = table([500, 0, 0, 0]);
        let mut counts = [ClassCounts::default(); CLASSES];
        // A sheddable flood gets the unreserved half, exactly.
        assert_eq!(fill(10, &t, &mut counts, Priority::Sheddable, 20), 5);
        // Critical callers arriving during the flood all get in at once.
        assert_eq!(fill(10, &t, &mut counts, Priority::Critical, 5), 5);
        assert_eq!(counts.iter().map(|c| c.active).sum::<u32>(), 10);
        // Nothing more for anyone.
        for class in Priority::ALL {
            assert_eq!(decide(10, &t, &counts, class, 0), ClassVerdict::Full);
        }
        // A sheddable one leaves: its slot is borrowable again, by anyone.
        counts[Priority::Sheddable as usize].active -= 1;
        assert_eq!(
            decide(10, &t, &counts, Priority::High, 0),
            ClassVerdict::Admit
        );
    }

    #[test]
    fn critical_borrows_the_rest_too_when_it_is_free() {
        let t = table([500, 0, 0, 0]);
        let mut counts = [ClassCounts::default(); CLASSES];
        assert_eq!(fill(10, &t, &mut counts, Priority::Critical, 20), 10);
        assert_eq!(fill(10, &t, &mut counts, Priority::Sheddable, 5), 0);
    }

    #[test]
    fn without_shares_the_cap_is_first_come() {
        let t = table([0; CLASSES]);
        let mut counts = [ClassCounts::default(); CLASSES];
        assert_eq!(fill(4, &t, &mut counts, Priority::Default, 3), 3);
        assert_eq!(fill(4, &t, &mut counts, Priority::Critical, 3), 1);
    }

    #[test]
    fn degradation_sheds_the_lowest_first_and_critical_never() {
        let t = table([500, 0, 0, 0]);
        let counts = [ClassCounts::default(); CLASSES];
        let verdicts = |d: u32| Priority::ALL.map(|c| decide(10, &t, &counts, c, d));
        use ClassVerdict::{Admit, Full, Shed};
        assert_eq!(verdicts(0), [Admit; 4]);
        // Sheddable stops borrowing (it has no share: it is refused)...
        assert_eq!(verdicts(130), [Admit, Admit, Admit, Full]);
        // ...then is shed, then default stops borrowing...
        assert_eq!(verdicts(260), [Admit, Admit, Full, Shed]);
        assert_eq!(verdicts(500), [Admit, Full, Shed, Shed]);
        assert_eq!(verdicts(760), [Admit, Shed, Shed, Shed]);
        // ...and critical goes on until the breaker trips.
        assert_eq!(verdicts(1000), [Admit, Shed, Shed, Shed]);
        // A class with a share keeps its reservation until it is shed.
        let t = table([0, 0, 300, 0]);
        assert_eq!(
            decide(10, &t, &counts, Priority::Default, 300),
            ClassVerdict::Admit
        );
    }

    #[test]
    fn degradation_is_the_failure_share_against_the_trip_point() {
        let t = |attempts, failures| Totals { attempts, failures };
        assert_eq!(degradation(t(9, 9), 10, 500), 0, "fewer than min_attempts");
        assert_eq!(degradation(t(20, 5), 10, 500), 500);
        assert_eq!(degradation(t(20, 10), 10, 500), 1000);
        assert_eq!(degradation(t(20, 20), 10, 500), 2000);
        // A learned trip rate of 10 %: 5 failures of 20 are 2.5 times it.
        assert_eq!(degradation(t(20, 5), 10, 100), 2500);
        assert_eq!(degradation(t(20, 20), 10, 0), 0, "the rate trigger off");
    }
}

//! The two banks of policy maps. A policy set is the policies, their backoff
//! tables and the rules, and it must change as a whole: a program that saw the
//! new rules next to the old policies (or half of the new rules) would judge a
//! connect by a configuration nobody wrote. So the kernel holds two: the
//! programs read the bank the configuration's selector names
//! ([`crate::config::Config::policy_bank`]), read once per program run; the
//! daemon writes a whole new set into the other bank, then flips the selector
//! with one write.
//!
//! The policy and backoff arrays hold both banks ([`POLICY_SLOTS`] entries:
//! bank 1's policy `id` at `MAX_POLICIES + id`); each bank has its own rule
//! trie ([`crate::maps::POLICY_RULES`]). Per-policy counts
//! ([`crate::maps::POLICY_STATS`]) are not banked: they count destinations,
//! they are not configuration, and a policy keeps its id across sets.

use crate::{config::Config, rules::MAX_POLICIES};

/// Entries of the banked policy and backoff arrays.
pub const POLICY_SLOTS: u32 = 2 * MAX_POLICIES;

/// One of the two banks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bank(u32);

impl Bank {
    pub const BOTH: [Self; 2] = [Self(0), Self(1)];

    /// The bank the programs read. A zeroed configuration (a map the daemon
    /// has not written yet) names bank 0; any other value than 0 or 1, which
    /// no daemon writes, bank 1 rather than an index past both.
    #[inline(always)]
    pub const fn active(config: &Config) -> Self {
        Self((config.policy_bank != 0) as u32)
    }

    /// The bank the programs do not read: where the next set is written.
    #[inline(always)]
    pub const fn other(self) -> Self {
        Self(1 - self.0)
    }

    /// The value of [`Config::policy_bank`] that makes this bank the active one.
    #[inline(always)]
    pub const fn selector(self) -> u32 {
        self.0
    }

    /// 0 or 1: which of [`crate::maps::POLICY_RULES`] is this bank's.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The index of policy `id` of this bank in the policy and backoff
    /// arrays; `None` for an id out of range, which must not read the other
    /// bank's policy.
    #[inline(always)]
    pub const fn slot(self, id: u32) -> Option<u32> {
        if id < MAX_POLICIES {
            Some(self.0 * MAX_POLICIES + id)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy_bank: u32) -> Config {
        Config {
            policy_bank,
            ..Config::default()
        }
    }

    #[test]
    fn a_fresh_configuration_reads_bank_0_and_writes_bank_1() {
        let active = Bank::active(&Config::default());
        assert_eq!(active, Bank::BOTH[0]);
        assert_eq!(active.other(), Bank::BOTH[1]);
        assert_eq!(
            Bank::active(&config(active.other().selector())),
            Bank::BOTH[1]
        );
        assert_eq!(Bank::BOTH[1].other(), Bank::BOTH[0]);
    }

    #[test]
    fn a_selector_no_daemon_writes_still_names_a_bank() {
        for raw in [2, 7, u32::MAX] {
            assert_eq!(Bank::active(&config(raw)), Bank::BOTH[1], "{raw}");
        }
    }

    #[test]
    fn each_bank_has_its_own_slots_and_ids_out_of_range_have_none() {
        let [a, b] = Bank::BOTH;
        assert_eq!(a.slot(0), Some(0));
        assert_eq!(a.slot(MAX_POLICIES - 1), Some(MAX_POLICIES - 1));
        assert_eq!(b.slot(0), Some(MAX_POLICIES));
        assert_eq!(b.slot(MAX_POLICIES - 1), Some(POLICY_SLOTS - 1));
        for id in [MAX_POLICIES, MAX_POLICIES + 1, u32::MAX] {
            assert_eq!((a.slot(id), b.slot(id)), (None, None), "{id}");
        }
        // Every slot belongs to exactly one (bank, id).
        let mut seen = [false; POLICY_SLOTS as usize];
        for bank in Bank::BOTH {
            for id in 0..MAX_POLICIES {
                let slot = bank.slot(id).unwrap() as usize;
                assert!(!seen[slot], "slot {slot} twice");
                seen[slot] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!([a.index(), b.index()], [0, 1]);
    }
}

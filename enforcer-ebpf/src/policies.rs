//! The policy set one program run reads: the active bank of the policy maps
//! (`enforcer_common::bank`), chosen once per run so that every lookup of the
//! run reads the same set, whatever the daemon flips meanwhile.

use aya_ebpf::btf_maps::lpm_trie::Key;
use enforcer_common::{
    bank::Bank,
    config::Config,
    dest::DestKey,
    policy::{BackoffRow, Policy},
    rules::{FULL_PREFIX, RuleData},
};

use crate::maps::{BACKOFF, CONFIG, POLICIES, POLICY_RULES_0, POLICY_RULES_1, RULE_FILTER, Rules};

/// The active bank, as a run saw it when it started.
#[derive(Clone, Copy)]
pub struct Policies(Bank);

impl Policies {
    /// The bank `config` (the run's one read of it) names.
    #[inline(always)]
    pub fn of(config: &Config) -> Self {
        Self(Bank::active(config))
    }

    /// For hooks that need nothing else of the configuration: one field read
    /// in place, not a copy of it. A missing entry cannot happen for an
    /// array; should it, bank 0 (a zeroed configuration's).
    #[inline(always)]
    pub fn active() -> Self {
        Self(CONFIG.get(0).map_or(Bank::BOTH[0], Bank::active))
    }

    /// Policy `id`; `None` out of range.
    #[inline(always)]
    pub fn policy(self, id: u32) -> Option<&'static Policy> {
        POLICIES.get(self.0.slot(id)?)
    }

    /// Policy `id`'s open durations; `None` out of range.
    #[inline(always)]
    pub fn backoff(self, id: u32) -> Option<&'static BackoffRow> {
        BACKOFF.get(self.0.slot(id)?)
    }

    /// The policy of the most specific rule for the destination: its port
    /// first, then any port. A trie is looked up only where the bank's
    /// filter says a rule may match.
    #[inline(always)]
    pub fn rule(self, key: &DestKey) -> Option<u32> {
        let filter = RULE_FILTER.get(self.0.index() as u32)?;
        if !filter.may_cover(key) {
            return None;
        }
        let rules: &Rules = if self.0.index() == 0 {
            &POLICY_RULES_0
        } else {
            &POLICY_RULES_1
        };
        let mut lookup = Key::new(FULL_PREFIX, RuleData::new(key.port, &key.addr));
        if filter.has_port(key.port)
            && let Some(id) = rules.get(&lookup)
        {
            return Some(*id);
        }
        if !filter.has_port(0) {
            return None;
        }
        lookup.data.port = [0, 0];
        rules.get(&lookup).copied()
    }
}

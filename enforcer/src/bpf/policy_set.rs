//! The policy set in the kernel, replaced whole (`enforcer_common::bank`): the
//! new set is written into the bank the programs do not read, then one write
//! of the configuration flips them to it. A failure before the flip leaves
//! them reading the set they read before; the other bank may then hold part
//! of the new set, which nothing reads and the next replacement overwrites.

use aya::maps::{Array, IterableMap as _, LpmTrie, MapData, lpm_trie::Key};
use enforcer_common::{
    bank::Bank,
    config::Config,
    maps as names,
    policy::{BackoffRow, Policy},
    rules::{MAX_POLICIES, RuleData, RuleFilter},
};

use super::{BpfError, config::ConfigMap, maps::map_err};
use crate::rule::Rule;

/// A whole policy set as the kernel holds it.
#[derive(Clone, Debug, Default)]
pub struct KernelPolicies {
    /// Each policy's id, what the kernel reads of it, and its open durations.
    /// Every other id is off.
    pub policies: Vec<(u32, Policy, BackoffRow)>,
    /// Each rule with the id of its policy.
    pub rules: Vec<(Rule, u32)>,
}

/// The maps of both banks: `POLICIES` and `BACKOFF` hold both (by
/// [`Bank::slot`]), each bank has its own rule trie. Which bank the programs
/// read is in the configuration, so every operation takes it.
pub struct PolicyBanks {
    pub(super) policies: Array<MapData, Policy>,
    pub(super) backoff: Array<MapData, BackoffRow>,
    /// By [`Bank::index`].
    pub(super) rules: [LpmTrie<MapData, RuleData, u32>; 2],
    /// What each bank's rules could match, by [`Bank::index`].
    pub(super) filter: Array<MapData, RuleFilter>,
}

impl PolicyBanks {
    /// Makes `set` the policy set the programs read, whole: they read the
    /// previous set until the flip and `set` from then on, never a mix. An
    /// error leaves them on the previous set, and so does a crash at any
    /// point before the flip.
    pub fn replace(
        &mut self,
        config: &mut ConfigMap,
        set: &KernelPolicies,
    ) -> Result<(), BpfError> {
        let next = active_bank(config)?.other();
        self.write_bank(next, set)?;
        crate::crash::point("apply.bank-written");
        let current = config.get()?;
        config.set(Config {
            policy_bank: next.selector(),
            ..current
        })?;
        crate::crash::point("apply.flipped");
        Ok(())
    }

    /// Writes `set` over everything `bank` held. Checked first: nothing is
    /// written for a set that cannot fit.
    fn write_bank(&mut self, bank: Bank, set: &KernelPolicies) -> Result<(), BpfError> {
        let name = names::POLICY_RULES[bank.index()];
        let trie = &mut self.rules[bank.index()];
        // As the kernel created it (a pinned trie keeps its capacity).
        let capacity = trie.map().info().map_err(map_err(name))?.max_entries();
        if set.rules.len() > capacity as usize {
            return Err(BpfError::RulesCapacity {
                rules: set.rules.len(),
                capacity,
            });
        }
        let ids = set.policies.iter().map(|(id, ..)| id);
        for id in ids.chain(set.rules.iter().map(|(_, id)| id)) {
            check_policy_id(*id)?;
        }
        for id in 0..MAX_POLICIES {
            let (policy, backoff) = set
                .policies
                .iter()
                .find(|(i, ..)| *i == id)
                .map(|(_, p, b)| (*p, *b))
                .unwrap_or_default();
            let slot = slot(bank, id)?;
            self.backoff
                .set(slot, backoff, 0)
                .map_err(map_err(names::BACKOFF))?;
            self.policies
                .set(slot, policy, 0)
                .map_err(map_err(names::POLICIES))?;
        }
        // Empties the trie: every key removed as the kernel holds it.
        let keys: Vec<Key<RuleData>> = trie
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(name))?;
        for key in &keys {
            trie.remove(key).map_err(map_err(name))?;
        }
        let mut filter = RuleFilter::default();
        for (rule, id) in &set.rules {
            trie.insert(&rule.key(), *id, 0).map_err(map_err(name))?;
            rule.note(&mut filter);
        }
        self.filter
            .set(bank.index() as u32, filter, 0)
            .map_err(map_err(names::RULE_FILTER))
    }

    /// Writes only the backoff table of policy `id` in the set the programs
    /// read (re-jittering: a table in place of another of the same policy).
    pub fn set_backoff(
        &mut self,
        config: &ConfigMap,
        id: u32,
        backoff: &BackoffRow,
    ) -> Result<(), BpfError> {
        check_policy_id(id)?;
        let slot = slot(active_bank(config)?, id)?;
        self.backoff
            .set(slot, backoff, 0)
            .map_err(map_err(names::BACKOFF))
    }

    /// Policy `id` as the programs read it.
    pub fn policy(&self, config: &ConfigMap, id: u32) -> Result<Policy, BpfError> {
        check_policy_id(id)?;
        let slot = slot(active_bank(config)?, id)?;
        self.policies
            .get(&slot, 0)
            .map_err(map_err(names::POLICIES))
    }

    /// Every rule the programs read, decoded, with its policy id.
    pub fn rules(&self, config: &ConfigMap) -> Result<Vec<(Rule, u32)>, BpfError> {
        let bank = active_bank(config)?;
        let name = names::POLICY_RULES[bank.index()];
        let mut out = Vec::new();
        for item in self.rules[bank.index()].iter() {
            let (key, id) = item.map_err(map_err(name))?;
            out.push((Rule::from_key(&key), id));
        }
        Ok(out)
    }
}

/// The bank the programs read now.
fn active_bank(config: &ConfigMap) -> Result<Bank, BpfError> {
    Ok(Bank::active(&config.get()?))
}

/// Policy ids are 1..MAX_POLICIES: 0 marks a destination not yet assigned.
fn check_policy_id(id: u32) -> Result<(), BpfError> {
    if id == 0 || id >= MAX_POLICIES {
        return Err(BpfError::PolicyId {
            id,
            max: MAX_POLICIES - 1,
        });
    }
    Ok(())
}

fn slot(bank: Bank, id: u32) -> Result<u32, BpfError> {
    bank.slot(id).ok_or(BpfError::PolicyId {
        id,
        max: MAX_POLICIES - 1,
    })
}

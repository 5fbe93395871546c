//! The policy set in the kernel, replaced whole (`enforcer_common::bank`): the
//! new set is written into the bank the programs do not read, then one write
//! of the configuration flips them to it. A failure before the flip leaves
//! them reading the set they read before; the other bank may then hold part
//! of the new set, which nothing reads and the next replacement overwrites.

use enforcer_common::{
    bank::Bank,
    config::Config,
    policy::{BackoffRow, Policy},
    rules::MAX_POLICIES,
};

use super::{BpfError, Enforcer, check_policy_id, maps};
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

impl Enforcer {
    /// The bank the programs read now.
    pub fn active_bank(&self) -> Result<Bank, BpfError> {
        Ok(Bank::active(&self.config()?))
    }

    /// Makes `set` the policy set the programs read, whole: they read the
    /// previous set until the flip and `set` from then on, never a mix. An
    /// error leaves them on the previous set, and so does a crash at any
    /// point before the flip.
    pub fn replace_policies(&mut self, set: &KernelPolicies) -> Result<(), BpfError> {
        let next = self.active_bank()?.other();
        self.write_bank(next, set)?;
        crate::crash::point("apply.bank-written");
        let config = self.config()?;
        self.set_config(Config {
            policy_bank: next.selector(),
            ..config
        })?;
        crate::crash::point("apply.flipped");
        Ok(())
    }

    /// Writes `set` over everything `bank` held. Checked first: nothing is
    /// written for a set that cannot fit.
    fn write_bank(&mut self, bank: Bank, set: &KernelPolicies) -> Result<(), BpfError> {
        let capacity = maps::rules_capacity(&self.maps, bank)?;
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
            maps::set_backoff(&mut self.maps, slot, backoff)?;
            maps::set_policy(&mut self.maps, slot, policy)?;
        }
        maps::clear_rules(&mut self.maps, bank)?;
        for (rule, id) in &set.rules {
            maps::insert_rule(&mut self.maps, bank, rule.key(), *id)?;
        }
        Ok(())
    }

    /// Writes only the backoff table of policy `id` in the set the programs
    /// read (re-jittering: a table in place of another of the same policy).
    pub fn set_backoff(&mut self, id: u32, backoff: &BackoffRow) -> Result<(), BpfError> {
        check_policy_id(id)?;
        let slot = slot(self.active_bank()?, id)?;
        maps::set_backoff(&mut self.maps, slot, *backoff)
    }

    /// Policy `id` as the programs read it.
    pub fn policy(&self, id: u32) -> Result<Policy, BpfError> {
        check_policy_id(id)?;
        maps::policy(&self.maps, slot(self.active_bank()?, id)?)
    }

    /// Every rule the programs read, with its policy id.
    pub fn rules(&self) -> Result<Vec<(Rule, u32)>, BpfError> {
        maps::rules(&self.maps, self.active_bank()?)
    }
}

fn slot(bank: Bank, id: u32) -> Result<u32, BpfError> {
    bank.slot(id).ok_or(BpfError::PolicyId {
        id,
        max: MAX_POLICIES - 1,
    })
}

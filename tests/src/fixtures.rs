//! Loading the programs and installing policies the way the daemon does.

use enforcer::{
    bpf::{Enforcer, KernelPolicies, LoadOptions, SkbHooks},
    rule::Rule,
};
use enforcer_common::policy::{BackoffRow, Mode, Policy, Signal};

use crate::cgroup::ScratchCgroup;

/// The policy id tests install their policy under.
pub const POLICY_ID: u32 = 1;

/// ECONNREFUSED, the default errno of a rejection.
pub const ECONNREFUSED: u32 = 111;

/// Loads the programs and attaches them to `cgroup`.
pub fn attached(cgroup: &ScratchCgroup) -> Enforcer {
    attached_with(cgroup, &LoadOptions::default())
}

pub fn attached_with(cgroup: &ScratchCgroup, options: &LoadOptions) -> Enforcer {
    let mut enforcer = Enforcer::load(options).expect("loading the programs");
    enforcer
        .attach(cgroup.path())
        .expect("attaching to the scratch cgroup");
    enforcer
}

/// An enforcing policy that never trips and has no caps: tests change what they
/// exercise.
pub fn base_policy() -> Policy {
    Policy {
        mode: Mode::Enforce as u32,
        half_open_probes: 1,
        close_after: 1,
        errno: ECONNREFUSED,
        max_open_percent: 100,
        backoff_steps: 16,
        window_ns: 10_000_000_000,
        ..Policy::default()
    }
}

/// Installs `policy` under [`POLICY_ID`] with the given open durations, and maps
/// every rule (e.g. `127.0.0.1:*`) to it: the whole policy set.
pub fn apply(enforcer: &mut Enforcer, rules: &[&str], policy: Policy, backoff: BackoffRow) {
    let rules: Vec<_> = rules.iter().map(|r| (*r, POLICY_ID)).collect();
    install(enforcer, &[(POLICY_ID, policy, backoff)], &rules);
}

/// Replaces the policy set the programs read with `policies` (id, policy,
/// open durations) and `rules` (each with its policy's id), as the daemon
/// does.
pub fn install(
    enforcer: &mut Enforcer,
    policies: &[(u32, Policy, BackoffRow)],
    rules: &[(&str, u32)],
) {
    let rules = rules
        .iter()
        .map(|(rule, id)| (rule.parse::<Rule>().unwrap_or_else(|e| panic!("{e}")), *id))
        .collect();
    let set = KernelPolicies {
        policies: policies.to_vec(),
        rules,
    };
    let maps = enforcer.maps_mut();
    maps.policies
        .replace(&mut maps.config, &set)
        .expect("writing the policy set");
    // The packet programs run only while a policy learns from responses.
    let response = policies
        .iter()
        .any(|(_, p, _)| p.signal == Signal::Response as u32);
    enforcer
        .set_skb_hooks(SkbHooks::wanted(response, false))
        .expect("attaching the packet programs");
}

/// Installs `policy` (under [`POLICY_ID`]) for the one destination `addr`.
pub fn apply_one(
    enforcer: &mut Enforcer,
    addr: std::net::SocketAddr,
    policy: Policy,
    backoff: BackoffRow,
) {
    apply(enforcer, &[&addr.to_string()], policy, backoff);
}

/// Open periods of a minute: longer than any test waits.
pub fn minute_open() -> BackoffRow {
    BackoffRow::exponential(60_000_000_000, 60_000_000_000)
}

/// Counts every TCP destination (IPv4 and IPv6) without ever rejecting.
pub fn count_everything(enforcer: &mut Enforcer) {
    let policy = Policy {
        mode: Mode::Observe as u32,
        ..base_policy()
    };
    apply(
        enforcer,
        &["0.0.0.0/0:*", "[::/0]:*"],
        policy,
        BackoffRow::exponential(1_000_000_000, 60_000_000_000),
    );
}

/// Forces `dest` open (as `enforcer trip` does) until `until_ns` on the
/// monotonic clock, 0 for until it is removed.
pub fn force_open(enforcer: &mut Enforcer, dest: std::net::SocketAddr, until_ns: u64) {
    let forced = enforcer_common::overrides::Override {
        kind: enforcer_common::overrides::Kind::ForcedOpen as u32,
        until_ns,
        ..Default::default()
    };
    let maps = enforcer.maps_mut();
    maps.overrides
        .set(&mut maps.config, dest, forced)
        .expect("forcing open");
}

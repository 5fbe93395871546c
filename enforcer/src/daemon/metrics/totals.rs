//! The daemon-wide families: kernel counters, per-policy counts, the scans',
//! the healers' and the programs' figures.

use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::Snapshot;

/// Every daemon-wide family of `snap`.
pub fn encode(snap: &Snapshot, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let totals = &snap.totals;
    gauge(
        enc,
        "enforcer_tracked_destinations",
        "destinations in the map",
        snap.tracked as i64,
    )?;
    gauge(
        enc,
        "enforcer_tracked_connections",
        "admitted connects not ended yet, every destination's: the connection table's records",
        snap.connections as i64,
    )?;
    gauge(
        enc,
        "enforcer_tracked_flows",
        "flows in the packet plane's table at its last sweep",
        totals.flows as i64,
    )?;
    gauge_family(
        enc,
        "enforcer_table_capacity",
        "entries a kernel table holds at most: dests (destinations), conns (connection records), flows (the packet plane's)",
        "table",
        totals
            .capacities
            .iter()
            .map(|(table, n)| (*table, i64::from(*n))),
    )?;
    gauge(
        enc,
        "enforcer_paused",
        "1 while the global switch passes everything",
        i64::from(totals.paused),
    )?;
    for (counter, v) in &totals.globals {
        let name = format!("enforcer_kernel_{}", counter.name());
        enc.encode_descriptor(&name, "kernel hot-path counter", None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    counter_family(
        enc,
        "enforcer_events",
        "kernel transition events read",
        "kind",
        totals.events.iter().map(|(kind, n)| (kind.as_str(), *n)),
    )?;
    let policies = &totals.policies;
    gauge_family(
        enc,
        "enforcer_policy_tracked_destinations",
        "destinations per policy",
        "policy",
        policies.iter().map(|p| (p.name.as_str(), p.tracked as i64)),
    )?;
    gauge_family(
        enc,
        "enforcer_policy_open_destinations",
        "destinations not CLOSED per policy",
        "policy",
        policies.iter().map(|p| (p.name.as_str(), p.open as i64)),
    )?;
    counter_family(
        enc,
        "enforcer_policy_guard_refusals",
        "trips refused by max_open_percent",
        "policy",
        policies.iter().map(|p| (p.name.as_str(), p.guard_refusals)),
    )?;
    counter_family(
        enc,
        "enforcer_dests_evicted",
        "destinations forgotten by the daemon's scans, by reason",
        "reason",
        snap.evicted.iter().copied(),
    )?;
    counter_family(
        enc,
        "enforcer_policy_count_corrections",
        "policy tracked/open counts corrected to the destination map",
        "policy",
        snap.corrections.iter().map(|(name, n)| (name.as_str(), *n)),
    )?;
    let mut ejections = enc.encode_descriptor(
        "enforcer_ejections",
        "outliers ejected, by policy and reason",
        None,
        MetricType::Counter,
    )?;
    for (policy, reason, n) in &totals.ejections {
        ejections
            .encode_family(&vec![("policy", policy.as_str()), ("reason", *reason)])?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    for (name, help, label, figures) in [
        (
            "enforcer_policy_workload_cgroups",
            "cgroups a policy's workload pattern matches now (0: none, yet)",
            "policy",
            &totals.policy_workloads,
        ),
        (
            "enforcer_class_workload_cgroups",
            "cgroups a class's workload pattern matches now (0: none, yet)",
            "class",
            &totals.class_workloads,
        ),
    ] {
        // Only with selectors: a family of no series would say they exist.
        if figures.is_empty() {
            continue;
        }
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (owner, w) in figures {
            m.encode_family(&vec![
                (label, owner.as_str()),
                ("pattern", w.pattern.as_str()),
            ])?
            .encode_gauge(&(w.cgroups as i64))?;
        }
    }
    gauge(
        enc,
        "enforcer_chaos_experiments_running",
        "chaos experiments running",
        totals.chaos.running as i64,
    )?;
    counter_family(
        enc,
        "enforcer_chaos_affected_connects",
        "connects the chaos faults affected, by fault kind",
        "kind",
        totals.chaos.affected.iter().map(|(k, n)| (k.as_str(), *n)),
    )?;
    counter_family(
        enc,
        "enforcer_chaos_affected_packets",
        "guests' packets the chaos guest faults affected, by fault kind",
        "kind",
        totals
            .chaos
            .affected_packets
            .iter()
            .map(|(k, n)| (k.as_str(), *n)),
    )?;
    counter_family(
        enc,
        "enforcer_chaos_aborts",
        "chaos experiments aborted, by reason",
        "reason",
        totals.chaos.aborts.iter().map(|(r, n)| (r.as_str(), *n)),
    )?;
    gauge(
        enc,
        "enforcer_healers",
        "destinations being probed by healing",
        totals.healers as i64,
    )?;
    counter_family(
        enc,
        "enforcer_healing_probes",
        "healing probes made, by result",
        "result",
        totals.healing_probes,
    )?;
    counter_family(
        enc,
        "enforcer_healing_skipped",
        "open destinations of healing policies passed over, by reason (counted when a destination's reason changes, not every tick)",
        "reason",
        totals.healing_skipped.iter().copied(),
    )?;
    // Without `daemon.bpf_run_stats` there are no figures: no series rather
    // than zeros.
    if totals.programs.is_empty() {
        return Ok(());
    }
    counter_family(
        enc,
        "enforcer_bpf_program_runs",
        "program runs (BPF_ENABLE_STATS, daemon.bpf_run_stats)",
        "program",
        totals.programs.iter().map(|p| (p.name, p.run_count)),
    )?;
    let mut time = enc.encode_descriptor(
        "enforcer_bpf_program_run_seconds",
        "time spent in the program",
        None,
        MetricType::Counter,
    )?;
    for p in &totals.programs {
        time.encode_family(&vec![("program", p.name)])?
            .encode_counter::<NoLabelSet, _, f64>(&p.run_time.as_secs_f64(), None)?;
    }
    Ok(())
}

/// One gauge without labels.
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// One gauge per label value, under one descriptor.
fn gauge_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, v) in values {
        m.encode_family(&vec![(label, value)])?.encode_gauge(&v)?;
    }
    Ok(())
}

/// One counter per label value, under one descriptor.
fn counter_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        m.encode_family(&vec![(label, value)])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

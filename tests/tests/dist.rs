//! What `enforcer/dist` ships for operators, against a running daemon: every
//! metric the Grafana dashboard and the Prometheus rules read is one the
//! exporter emits (scraped from the real daemon, with the features those
//! metrics come from turned on).

use std::collections::BTreeSet;

use enforcer_tests::{
    bpffs::PinDir, cgroup::ScratchCgroup, daemon::Daemon, exec::Place, net::AcceptingServer, wait,
};

const DASHBOARD: &str = include_str!("../../enforcer/dist/grafana/enforcer-dashboard.json");
const RULES: &str = include_str!("../../enforcer/dist/prometheus/enforcer-rules.yaml");

/// Series Prometheus itself makes, not the exporter.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

#[test]
fn every_metric_the_dashboard_and_the_alerts_read_is_exported() {
    let wanted = used_by_dashboard()
        .union(&used_by_rules())
        .cloned()
        .collect::<BTreeSet<_>>();
    assert!(
        wanted.len() >= 20,
        "the dashboard and the rules name only {wanted:?}"
    );
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let (capped, learning) = (
        AcceptingServer::bind("127.0.0.1:0"),
        AcceptingServer::bind("127.0.0.1:0"),
    );
    // A cap (its remaining slots), a learnt one (its limit) and the
    // programs' run-time statistics: the series the dashboard shows that
    // only exist with them.
    // And workload selectors (a policy's, a class's), matching nothing.
    let pods = format!("{}/kubepods.slice/*", cgroup.path().display());
    let policies = format!(
        "[[policy]]\nname = \"capped\"\nmatch = [\"{}\"]\nmax_connections = 8\n\n\
         [[policy]]\nname = \"learning\"\nmatch = [\"{}\"]\nmax_connections = \"auto\"\n\
         [policy.adaptive]\ninterval = \"250ms\"\n\n\
         [[policy]]\nname = \"pods\"\nmatch = [\"127.0.0.1:1\"]\nworkloads = [\"{pods}\"]\n\n\
         [[class]]\nname = \"batch\"\npriority = \"sheddable\"\nworkloads = [\"{pods}\"]\n",
        capped.addr, learning.addr
    );
    let d = Daemon::start_with(&cgroup, &pins, &policies, "bpf_run_stats = true", false);
    let place = Place::cgroup(&cgroup);
    wait::until("every metric the dashboard and the rules read", || {
        // Traffic for the series to have something to count; whether the
        // cap refuses some of it does not matter here.
        for addr in [capped.addr, learning.addr] {
            place.connects(addr, 5);
        }
        let metrics = d.metrics();
        let exported = metrics.names();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|name| !exported.contains(name.as_str()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not exported: {missing:?}"))
        }
    });
}

/// The metric names in the dashboard's queries (and template variables).
fn used_by_dashboard() -> BTreeSet<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(
        queries.len() >= 10,
        "the dashboard has only {} queries",
        queries.len()
    );
    queries.iter().flat_map(|q| metric_names(q)).collect()
}

/// Every `expr` of a panel's targets and every template variable's query.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// The metric names in the rules' expressions.
fn used_by_rules() -> BTreeSet<String> {
    let exprs: Vec<String> = expressions(RULES);
    assert!(
        exprs.len() >= 7,
        "the rules have {} expressions",
        exprs.len()
    );
    exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|n| !PROMETHEUS_OWN.contains(&n.as_str()))
        .collect()
}

/// Each rule's `expr`, folded (`>-`) or on one line.
fn expressions(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != ">-" {
            out.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut folded = String::new();
        while let Some(next) = lines.next_if(|l| l.len() - l.trim_start().len() > indent) {
            folded.push_str(next.trim());
            folded.push(' ');
        }
        out.push(folded);
    }
    out
}

/// The metric names a PromQL query reads: `enforcer_…` identifiers, and `up`.
fn metric_names(query: &str) -> Vec<String> {
    // Strings (label values, regular expressions) name no metric.
    let unquoted: Vec<&str> = query.split('"').step_by(2).collect();
    unquoted
        .join(" ")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("enforcer_") || PROMETHEUS_OWN.contains(w))
        .map(str::to_owned)
        .collect()
}

//! `enforcer-bench`: the benchmarks of issue 5 (scenarios 1-8:
//! connect overhead, fail-fast, trip latency, recovery, scale, against a proxy,
//! connection cap, daemon footprint), the packet plane's per-packet cost
//! (scenario 9), adaptive concurrency limits under overload (scenario 10,
//! issue 13) and outlier detection and learned thresholds (scenario 11,
//! issue 14). Run it with `cargo xtask bench [--quick]` as root.
//!
//! Every comparison is measured side by side in the same run, in interleaved
//! blocks, and reported as medians, p99 and ratios against the baseline of the
//! same run. Nothing here asserts a timing: the goals are reported as met or not.
//! What is asserted is the setup (each variant exercised what it claims, read back
//! from the kernel's maps): figures from a broken setup would be worthless.
//!
//! Comparisons an issue asks for without a goal are printed as such, with no
//! verdict.
//!
//! Prints a markdown table per scenario and writes the same figures as JSON.

mod adaptive;
mod bpf_stats;
mod client;
mod clock;
mod compare;
mod conn_cap;
mod fail_fast;
mod flow_floor;
mod footprint;
mod interleave;
mod map_floor;
mod map_memory;
mod minimal_prog;
mod outliers;
mod overhead;
mod packet_cost;
mod populate;
mod proc_usage;
mod proxy;
mod raw_map;
mod raw_prog;
mod recovery;
mod report;
mod scale;
mod server;
mod stats;
mod syn_timeout;
mod trip;
mod verifier;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

const USAGE: &str = "usage: enforcer-bench [--quick] [--json PATH]

  --quick      every scenario briefly (seconds, not minutes): figures are rough
  --json PATH  where to write the figures (default target/bench/results.json)
  --only LIST  only these scenarios, e.g. `--only 4,5` (default: all)

Needs root: it loads BPF programs and creates scratch cgroups and a network
namespace, all removed before it exits.";

struct Args {
    quick: bool,
    json: PathBuf,
    /// Only these scenarios (all when `None`).
    only: Option<Vec<u32>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        json: PathBuf::from("target/bench/results.json"),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = it.next().ok_or("--json needs a path")?.into(),
            "--only" => {
                let list = it.next().ok_or("--only needs scenario numbers")?;
                let only = list
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .map_err(|_| format!("--only: `{n}` is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
                args.only = Some(only);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

#[derive(Serialize)]
struct Run {
    command: String,
    mode: &'static str,
    machine: report::Machine,
    unix_time: u64,
    duration_s: f64,
    connect_overhead: Option<overhead::Results>,
    fail_fast: Option<fail_fast::Results>,
    trip_latency: Option<trip::Results>,
    recovery: Option<recovery::Results>,
    scale: Option<scale::Results>,
    against_proxy: Option<proxy::Results>,
    connection_cap: Option<conn_cap::Results>,
    footprint: Option<footprint::Results>,
    packet_cost: Option<packet_cost::Results>,
    verifier: Option<verifier::Results>,
    adaptive_limits: Option<adaptive::Results>,
    outlier_detection: Option<outliers::Results>,
    goals: Vec<report::Goal>,
    comparisons: Vec<report::Comparison>,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("enforcer-bench: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "enforcer-bench: needs root (BPF programs, cgroups, network namespaces): \
             run `cargo xtask bench` as root"
        );
        return ExitCode::from(2);
    }

    let started = Instant::now();
    let quick = args.quick;
    let wanted = |n: u32| args.only.as_ref().is_none_or(|only| only.contains(&n));
    let connect_overhead =
        wanted(1).then(|| overhead::run(pick(quick, overhead::FULL, overhead::QUICK)));
    let fail_fast =
        wanted(2).then(|| fail_fast::run(pick(quick, fail_fast::FULL, fail_fast::QUICK)));
    let trip_latency = wanted(3).then(|| trip::run(pick(quick, trip::FULL, trip::QUICK)));
    let recovery = wanted(4).then(|| recovery::run(pick(quick, recovery::FULL, recovery::QUICK)));
    let scale = wanted(5).then(|| scale::run(pick(quick, scale::FULL, scale::QUICK)));
    let proxy = wanted(6).then(|| proxy::run(pick(quick, proxy::FULL, proxy::QUICK)));
    let conn_cap = wanted(7).then(|| conn_cap::run(pick(quick, conn_cap::FULL, conn_cap::QUICK)));
    let footprint =
        wanted(8).then(|| footprint::run(pick(quick, footprint::FULL, footprint::QUICK)));
    let packet_cost =
        wanted(9).then(|| packet_cost::run(pick(quick, packet_cost::FULL, packet_cost::QUICK)));
    let adaptive_limits =
        wanted(10).then(|| adaptive::run(pick(quick, adaptive::FULL, adaptive::QUICK)));
    let outlier_detection =
        wanted(11).then(|| outliers::run(pick(quick, outliers::FULL, outliers::QUICK)));

    // The hot path's programs (scenarios 1 and 9): how hard each is to verify.
    let verifier = (wanted(1) || wanted(9)).then(verifier::run);

    let mut goals: Vec<report::Goal> = Vec::new();
    let mut comparisons: Vec<report::Comparison> = Vec::new();
    let mut tables: Vec<report::Table> = Vec::new();
    let mut checks_ok = true;
    if let Some(r) = &verifier {
        goals.extend(r.goals());
        tables.extend(r.tables());
    }
    if let Some(r) = &connect_overhead {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &fail_fast {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.check.ok;
    }
    if let Some(r) = &trip_latency {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &recovery {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &scale {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &proxy {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &conn_cap {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &footprint {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.check.ok;
    }
    if let Some(r) = &packet_cost {
        goals.extend(r.goals());
        tables.extend(r.tables());
        checks_ok &= r.check.ok;
    }
    if let Some(r) = &adaptive_limits {
        tables.extend(r.tables());
        comparisons.extend(r.comparisons());
        checks_ok &= r.checks().all(|c| c.ok);
    }
    if let Some(r) = &outlier_detection {
        tables.extend(r.tables());
        comparisons.extend(r.comparisons());
        checks_ok &= r.check.ok;
    }
    let run = Run {
        command: format!(
            "cargo xtask bench{}{}",
            if quick { " --quick" } else { "" },
            args.only.as_ref().map_or_else(String::new, |o| format!(
                " --only {}",
                o.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ))
        ),
        mode: if quick { "quick" } else { "full" },
        machine: report::Machine::detect(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_s: started.elapsed().as_secs_f64(),
        connect_overhead,
        fail_fast,
        trip_latency,
        recovery,
        scale,
        against_proxy: proxy,
        connection_cap: conn_cap,
        footprint,
        packet_cost,
        verifier,
        adaptive_limits,
        outlier_detection,
        goals,
        comparisons,
    };

    let m = &run.machine;
    println!(
        "## enforcer benchmarks ({} mode)\n\n`{}` on {} ({} CPUs), Linux {}, in {:.0} s\n",
        run.mode, run.command, m.cpu, m.cpus, m.kernel, run.duration_s
    );
    for table in &tables {
        println!("{}", table.markdown());
    }
    if !run.goals.is_empty() {
        println!("### Goals (issue 5)\n");
        for goal in &run.goals {
            println!("{}", goal.line());
        }
    }
    if !run.comparisons.is_empty() {
        println!("\n### Comparisons (no goal set: figures side by side)\n");
        for comparison in &run.comparisons {
            println!("{}", comparison.line());
        }
    }

    if let Err(e) = write_json(&args.json, &run) {
        eprintln!("enforcer-bench: writing {}: {e}", args.json.display());
        return ExitCode::FAILURE;
    }
    eprintln!("enforcer-bench: figures written to {}", args.json.display());
    if !checks_ok {
        eprintln!("enforcer-bench: a setup check failed (see **CHECK FAILED** above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// A scenario's size for this mode.
fn pick<T>(quick: bool, full: T, brief: T) -> T {
    if quick { brief } else { full }
}

fn write_json(path: &std::path::Path, run: &Run) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(run).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

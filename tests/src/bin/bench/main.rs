//! `enforcer-bench`: the benchmarks of issue 5 that need no daemon (scenarios 1-3:
//! connect overhead, fail-fast, trip latency). Run it with `cargo xtask bench
//! [--quick]` as root.
//!
//! Every comparison is measured side by side in the same run, in interleaved
//! blocks, and reported as medians, p99 and ratios against the baseline of the
//! same run. Nothing here asserts a timing: the goals are reported as met or not.
//! What is asserted is the setup (each variant exercised what it claims, read back
//! from the kernel's maps): figures from a broken setup would be worthless.
//!
//! Prints a markdown table per scenario and writes the same figures as JSON.

mod bpf_stats;
mod client;
mod compare;
mod fail_fast;
mod interleave;
mod minimal_prog;
mod overhead;
mod report;
mod server;
mod stats;
mod syn_timeout;
mod trip;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

const USAGE: &str = "usage: enforcer-bench [--quick] [--json PATH]

  --quick      every scenario briefly (seconds, not minutes): figures are rough
  --json PATH  where to write the figures (default target/bench/results.json)

Needs root: it loads BPF programs and creates scratch cgroups and a network
namespace, all removed before it exits.";

struct Args {
    quick: bool,
    json: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        json: PathBuf::from("target/bench/results.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = it.next().ok_or("--json needs a path")?.into(),
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
    connect_overhead: overhead::Results,
    fail_fast: fail_fast::Results,
    trip_latency: trip::Results,
    goals: Vec<report::Goal>,
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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "enforcer-bench: needs root (BPF programs, cgroups, network namespaces): \
             run `cargo xtask bench` as root"
        );
        return ExitCode::from(2);
    }

    let started = Instant::now();
    let (s1, s2, s3) = if args.quick {
        (overhead::QUICK, fail_fast::QUICK, trip::QUICK)
    } else {
        (overhead::FULL, fail_fast::FULL, trip::FULL)
    };
    let connect_overhead = overhead::run(s1);
    let fail_fast = fail_fast::run(s2);
    let trip_latency = trip::run(s3);

    let goals: Vec<report::Goal> = [
        connect_overhead.goals(),
        fail_fast.goals(),
        trip_latency.goals(),
    ]
    .concat();
    let tables: Vec<report::Table> = [
        connect_overhead.tables(),
        fail_fast.tables(),
        trip_latency.tables(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let checks_ok = connect_overhead
        .checks()
        .chain([&fail_fast.check])
        .chain(trip_latency.checks())
        .all(|c| c.ok);
    let run = Run {
        command: if args.quick {
            "cargo xtask bench --quick".to_owned()
        } else {
            "cargo xtask bench".to_owned()
        },
        mode: if args.quick { "quick" } else { "full" },
        machine: report::Machine::detect(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_s: started.elapsed().as_secs_f64(),
        connect_overhead,
        fail_fast,
        trip_latency,
        goals,
    };

    let m = &run.machine;
    println!(
        "## enforcer benchmarks ({} mode)\n\n`{}` on {} ({} CPUs), Linux {}, in {:.0} s\n",
        run.mode, run.command, m.cpu, m.cpus, m.kernel, run.duration_s
    );
    for table in &tables {
        println!("{}", table.markdown());
    }
    println!("### Goals (issue 5)\n");
    for goal in &run.goals {
        println!("{}", goal.line());
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

fn write_json(path: &std::path::Path, run: &Run) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(run).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

//! `enforcer chaos run|start|list|status|abort|check`

use std::{path::PathBuf, time::Duration};

use axum::http::Method;
use bytes::Bytes;

use super::{
    Failure,
    client::{self, Output},
};
use crate::{
    api::{ExperimentView, Stage},
    chaos::experiment::Experiment,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run an experiment in the foreground: its progress on stderr, its
    /// report at the end. Ctrl-C aborts it. Exits 0 when it completed and its
    /// hypothesis held (or it has no steady-state checks), 1 otherwise.
    Run {
        /// The experiment (TOML).
        file: PathBuf,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Start an experiment and return; follow it with `status`.
    Start {
        file: PathBuf,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Experiments: running ones first, then the past, newest first.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        client: client::Connection,
    },
    /// One experiment: where it is and its report so far.
    Status {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Abort an experiment: its faults end at once. `--all` is the kill
    /// switch: every fault off in one write, every experiment stopped.
    Abort {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Validate an experiment file without running anything.
    Check { file: PathBuf },
}

pub fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run {
            file,
            output,
            client,
        } => run(&file, output, &client),
        Command::Start { file, client } => {
            let (_, text) = read(&file)?;
            let view: ExperimentView =
                client.call(Method::POST, "/v1/chaos", Some(Bytes::from(text)))?;
            println!("experiment `{}` started", view.name);
            Ok(())
        }
        Command::List { output, client } => {
            let list: Vec<ExperimentView> = client.call(Method::GET, "/v1/chaos", None)?;
            match output {
                Output::Json => client::print_json(&list),
                Output::Table if list.is_empty() => println!("no experiments"),
                Output::Table => println!("{}", list_table(&list)),
            }
            Ok(())
        }
        Command::Status {
            name,
            output,
            client,
        } => {
            let view: ExperimentView = client.call(Method::GET, &target(&name), None)?;
            print(&view, output);
            Ok(())
        }
        Command::Abort { name, all, client } => {
            let path = match (&name, all) {
                (Some(n), false) => format!("{}/abort", target(n)),
                _ => "/v1/chaos/abort".to_owned(),
            };
            let stopped: Vec<ExperimentView> = client.call(Method::POST, &path, None)?;
            if stopped.is_empty() {
                println!("no experiment was running; every fault is off");
            }
            for v in &stopped {
                println!("experiment `{}` aborted: its faults are off", v.name);
            }
            Ok(())
        }
        Command::Check { file } => {
            let (e, _) = read(&file)?;
            println!(
                "{}: ok ({} fault(s) for {}, {} steady-state check(s), {} abort condition(s))",
                file.display(),
                e.faults.len(),
                e.duration,
                e.steady_state.len(),
                e.abort.len()
            );
            Ok(())
        }
    }
}

/// The experiment in `file`, validated here first (exit 2 naming the field),
/// and its text for the daemon (which validates it again, against the host).
fn read(file: &PathBuf) -> Result<(Experiment, String), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("reading {}: {e}", file.display())))?;
    let e = Experiment::parse(&text)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{}: {e}", file.display())))?;
    Ok((e, text))
}

fn target(name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    format!("/v1/chaos/{}", utf8_percent_encode(name, NON_ALPHANUMERIC))
}

/// Starts the experiment and follows it to its end; Ctrl-C aborts it.
fn run(file: &PathBuf, output: Output, connection: &client::Connection) -> Result<(), Failure> {
    let (experiment, text) = read(file)?;
    let client = connection.client();
    let view = client::block_on(async {
        let started: ExperimentView = client
            .json(Method::POST, "/v1/chaos", Some(Bytes::from(text)))
            .await?;
        eprintln!(
            "experiment `{}`: baseline {}, then {} fault(s) for {}, recovery up to {}",
            started.name,
            experiment.baseline,
            experiment.faults.len(),
            experiment.duration,
            experiment.recovery
        );
        let path = target(&started.name);
        let mut stage = started.stage;
        let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
        loop {
            tokio::select! {
                _ = &mut interrupted => {
                    eprintln!("interrupted: aborting `{}`", started.name);
                    let _: Vec<ExperimentView> = client
                        .json(Method::POST, &format!("{path}/abort"), None)
                        .await?;
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let view: ExperimentView = client.json(Method::GET, &path, None).await?;
            if view.stage != stage {
                stage = view.stage;
                eprintln!(
                    "{:>8.1}s  {}{}",
                    view.elapsed_ms as f64 / 1000.0,
                    stage.name(),
                    view.abort
                        .as_ref()
                        .map(|a| format!(" ({})", a.condition))
                        .unwrap_or_default()
                );
            }
            if !view.stage.running() {
                return Ok::<_, crate::http::client::ClientError>(view);
            }
        }
    })??;
    print(&view, output);
    if view.stage == Stage::Completed && view.hypothesis_held != Some(false) {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "experiment `{}` {}{}",
            view.name,
            view.stage.name(),
            if view.hypothesis_held == Some(false) {
                ": the hypothesis did not hold"
            } else {
                ""
            }
        )))
    }
}

fn print(view: &ExperimentView, output: Output) {
    match output {
        Output::Json => client::print_json(view),
        Output::Table => print!("{}", report(view)),
    }
}

fn list_table(list: &[ExperimentView]) -> comfy_table::Table {
    let mut table = client::table(&[
        "EXPERIMENT",
        "STAGE",
        "ELAPSED",
        "FAULTS",
        "AFFECTED",
        "HYPOTHESIS",
    ]);
    for v in list {
        table.add_row([
            v.name.clone(),
            v.stage.name().to_owned(),
            seconds(v.elapsed_ms),
            v.faults
                .iter()
                .map(|f| f.kind.as_str())
                .collect::<Vec<_>>()
                .join(","),
            v.faults.iter().map(|f| f.affected).sum::<u64>().to_string(),
            held(v.hypothesis_held).to_owned(),
        ]);
    }
    table
}

fn held(h: Option<bool>) -> &'static str {
    match h {
        Some(true) => "held",
        Some(false) => "did not hold",
        None => "-",
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn figure(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// The report as text: a summary, the checks and the faults.
fn report(v: &ExperimentView) -> String {
    let mut out = format!(
        "experiment {}: {} after {}",
        v.name,
        v.stage.name(),
        seconds(v.elapsed_ms)
    );
    if let Some(i) = v.injected_ms {
        out += &format!(", faults on for {}", seconds(i));
    }
    match v.recovery_ms {
        Some(r) => out += &format!(", recovered in {}", seconds(r)),
        None if !v.checks.is_empty() && !v.stage.running() && v.injected_ms.is_some() => {
            out += ", did not recover within its recovery time"
        }
        None => {}
    }
    out += &format!("\nhypothesis: {}\n", held(v.hypothesis_held));
    if let Some(a) = &v.abort {
        out += &format!("aborted at {}: {}", seconds(a.at_ms), a.condition);
        if let (Some(f), Some(b)) = (a.figure, a.bound) {
            out += &format!(" ({f:.3} against {b})");
        }
        if let Some(d) = &a.dest {
            out += &format!(" ({d})");
        }
        out += "\n";
    }
    if !v.checks.is_empty() {
        let mut t = client::table(&[
            "CHECK",
            "TOLERANCE",
            "BASELINE",
            "DURING",
            "WORST",
            "AFTER",
            "HELD",
        ]);
        for c in &v.checks {
            t.add_row([
                c.name.clone(),
                c.tolerance.to_string(),
                figure(c.baseline),
                figure(c.during),
                figure(c.worst),
                figure(c.after),
                c.held
                    .map_or("-", |h| if h { "yes" } else { "no" })
                    .to_owned(),
            ]);
        }
        out += &format!("\n{t}\n");
    }
    let mut t = client::table(&["FAULT", "AFFECTED", "SPARED", "SYNS DROPPED"]);
    for f in &v.faults {
        t.add_row([
            f.kind.clone(),
            f.affected.to_string(),
            f.spared.to_string(),
            f.syns_dropped.to_string(),
        ]);
    }
    out + &format!("\n{t}\n")
}

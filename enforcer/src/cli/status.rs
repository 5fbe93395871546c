//! `enforcer status [DEST] [--netns NS] [--policy NAME] [--class NAME] [-o json]`

use axum::http::Method;

use super::{
    Failure,
    client::{self, Output},
};
use crate::{
    api::{Dest, Destination, Status, StatusQuery},
    netns::Selector,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this destination (`10.0.0.5:5432`, `[fd00::1]:443`), in every
    /// network namespace unless `--netns` narrows it.
    dest: Option<Dest>,
    /// Only destinations in this network namespace: its inode (as `ip netns
    /// identify` or `lsns -t net` print it) or its name under /run/netns.
    #[arg(long)]
    netns: Option<Selector>,
    /// Only the destinations of this policy.
    #[arg(long)]
    policy: Option<String>,
    /// Each destination's counts of this priority class: its connections
    /// holding a slot, admitted and shed.
    #[arg(long)]
    class: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    client: client::Connection,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    let query = StatusQuery {
        dest: args.dest,
        netns: args.netns,
        policy: args.policy,
        class: args.class.clone(),
    };
    let status: Status =
        args.client
            .call(Method::GET, &client::target("/v1/status", &query)?, None)?;
    match args.output {
        Output::Json => client::print_json(&status),
        Output::Table => print_table(&status, args.class.as_deref()),
    }
    Ok(())
}

/// The table; with `class`, that class's counts in place of the failures,
/// rejections and times.
fn print_table(status: &Status, class: Option<&str>) {
    if status.paused {
        println!("PAUSED: every connection passes untouched");
    }
    let Some(class) = class else {
        print_destinations(status);
        return;
    };
    let mut table = client::table(&columns(&["CLASS", "CLASS ACTIVE", "ADMITTED", "SHED"]));
    for d in &status.destinations {
        let counts = d
            .classes
            .as_ref()
            .and_then(|c| c.get(class))
            .copied()
            .unwrap_or_default();
        table.add_row(row(
            d,
            [
                class.to_owned(),
                counts.active.to_string(),
                counts.admitted.to_string(),
                counts.shed.to_string(),
            ],
        ));
    }
    println!("{table}");
}

fn print_destinations(status: &Status) {
    let mut table = client::table(&columns(&[
        "FAILURES",
        "REJECTIONS",
        "OPEN FOR",
        "OVERRIDE",
        "CHAOS",
    ]));
    for d in &status.destinations {
        let open_for = d
            .open_for_ms
            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        table.add_row(row(
            d,
            [
                d.failures.total().to_string(),
                d.rejections.total().to_string(),
                open_for,
                d.override_kind.map_or("-", |o| o.as_str()).to_owned(),
                if d.chaos.is_empty() {
                    "-".to_owned()
                } else {
                    d.chaos.join(",")
                },
            ],
        ));
    }
    println!("{table}");
}

/// The columns every status table starts with, then `more`.
fn columns<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["DESTINATION", "NETNS", "POLICY", "STATE", "ACTIVE/CAP"];
    all.extend_from_slice(more);
    all
}

/// A destination's row: the cells of [`columns`], then `more`.
fn row<const N: usize>(d: &Destination, more: [String; N]) -> Vec<String> {
    let mut cells = vec![
        d.dest.to_string(),
        netns_cell(d),
        d.policy.clone(),
        d.state.as_str().to_owned(),
        format!("{}/{}", d.active, cap_cell(d)),
    ];
    cells.extend(more);
    cells
}

/// A destination's cap: fixed, learnt (`auto`) or none (`-`).
fn cap_cell(d: &Destination) -> String {
    match (d.limit, d.max_connections) {
        (Some(limit), _) => format!("{limit} (auto)"),
        (None, Some(cap)) => cap.to_string(),
        (None, None) => "-".to_owned(),
    }
}

/// A destination's namespace: its inode, then its name or what it is
/// (`host`, `gone`); `?` while unknown.
fn netns_cell(d: &Destination) -> String {
    let Some(inode) = d.netns else {
        return "?".to_owned();
    };
    match (&d.netns_name, d.netns_status.as_str()) {
        (Some(name), "gone") => format!("{inode} ({name}, gone)"),
        (Some(name), _) => format!("{inode} ({name})"),
        (None, status @ ("host" | "gone")) => format!("{inode} ({status})"),
        (None, _) => inode.to_string(),
    }
}

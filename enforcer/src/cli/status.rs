//! `enforcer status [DEST] [--netns NS] [--policy NAME] [-o json]`

use serde_json::Value;

use super::{
    Failure,
    client::{self, Output},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this destination (`10.0.0.5:5432`, `[fd00::1]:443`), in every
    /// network namespace unless `--netns` narrows it.
    dest: Option<String>,
    /// Only destinations in this network namespace: its inode (as `ip netns
    /// identify` or `lsns -t net` print it) or its name under /run/netns.
    #[arg(long)]
    netns: Option<String>,
    /// Only the destinations of this policy.
    #[arg(long)]
    policy: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    client: client::Connection,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    let mut query = Vec::new();
    if let Some(dest) = &args.dest {
        client::check_dest(dest)?;
        query.push(client::param("dest", dest));
    }
    if let Some(netns) = &args.netns {
        client::check_netns(netns)?;
        query.push(client::param("netns", netns));
    }
    if let Some(policy) = &args.policy {
        query.push(client::param("policy", policy));
    }
    let target = format!("/v1/status?{}", query.join("&"));
    let status = client::call(&args.client, "GET", &target, None)?;
    match args.output {
        Output::Json => client::print_json(&status),
        Output::Table => print_table(&status),
    }
    Ok(())
}

fn print_table(status: &Value) {
    if status["paused"].as_bool() == Some(true) {
        println!("PAUSED: every connection passes untouched");
    }
    let header = [
        "DESTINATION",
        "NETNS",
        "POLICY",
        "STATE",
        "ACTIVE/CAP",
        "FAILURES",
        "REJECTIONS",
        "OPEN FOR",
        "OVERRIDE",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for d in status["destinations"].as_array().into_iter().flatten() {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let failures = n(&d["failures"]["refused"])
            + n(&d["failures"]["timeout"])
            + n(&d["failures"]["unreachable"]);
        let rejections = n(&d["rejections"]["circuit"]) + n(&d["rejections"]["bulkhead"]);
        let cap = d["max_connections"]
            .as_u64()
            .map_or("-".to_owned(), |c| c.to_string());
        let open_for = d["open_for_ms"]
            .as_u64()
            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        rows.push(vec![
            d["dest"].as_str().unwrap_or("?").to_owned(),
            netns_cell(d),
            d["policy"].as_str().unwrap_or("?").to_owned(),
            d["state"].as_str().unwrap_or("?").to_owned(),
            format!("{}/{cap}", n(&d["active"])),
            failures.to_string(),
            rejections.to_string(),
            open_for,
            d["override"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    print_rows(&rows);
}

/// A destination's namespace: its inode, then its name or what it is
/// (`host`, `gone`); `?` while unknown.
fn netns_cell(d: &Value) -> String {
    let Some(inode) = d["netns"].as_u64() else {
        return "?".to_owned();
    };
    let status = d["netns_status"].as_str().unwrap_or_default();
    match (d["netns_name"].as_str(), status) {
        (Some(name), "gone") => format!("{inode} ({name}, gone)"),
        (Some(name), _) => format!("{inode} ({name})"),
        (None, "host" | "gone") => format!("{inode} ({status})"),
        (None, _) => inode.to_string(),
    }
}

/// Prints rows as aligned columns.
pub fn print_rows(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

//! `enforcer policy list|show|set|rm|apply`

use std::path::PathBuf;

use anyhow::anyhow;
use axum::http::Method;

use super::{
    Failure,
    client::{self, Output},
};
use crate::api::{Applied, PolicyView};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The running policies.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        client: client::Connection,
    },
    /// One policy with every setting (JSON).
    Show {
        name: String,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Add or replace a policy: `enforcer policy set db match=10.0.0.5:5432
    /// failure_threshold=3 open=10s`. Unset keys take the configuration's
    /// [defaults]; `match` takes a comma-separated list; the keys of
    /// [policy.adaptive] are written `adaptive.KEY` (`max_connections=auto
    /// adaptive.algorithm=vegas adaptive.max=500`), those of [policy.outlier]
    /// `outlier.KEY` (`outlier.failure_percentage=85`), which turns outlier
    /// detection on (`outlier={}`: on, every key from [defaults.outlier]).
    Set {
        name: String,
        /// KEY=VALUE settings, as in a [[policy]] table.
        #[arg(required = true)]
        settings: Vec<String>,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Remove a policy.
    Rm {
        name: String,
        #[command(flatten)]
        client: client::Connection,
    },
    /// Replace every policy with the [[policy]] tables of FILE.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        client: client::Connection,
    },
}

pub fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::List { output, client } => {
            let list: Vec<PolicyView> = client.call(Method::GET, "/v1/policies", None)?;
            match output {
                Output::Json => client::print_json(&list),
                Output::Table => {
                    let mut table =
                        client::table(&["POLICY", "MODE", "MATCH", "CALLERS", "TRACKED", "OPEN"]);
                    for p in &list {
                        table.add_row([
                            p.settings.name.clone(),
                            p.settings.mode.to_string(),
                            p.settings.rules.join(","),
                            callers_cell(p),
                            p.tracked.to_string(),
                            p.open_destinations.to_string(),
                        ]);
                    }
                    println!("{table}");
                }
            }
        }
        Command::Show { name, client } => {
            let policy: PolicyView =
                client.call(Method::GET, &client::policy_target(&name), None)?;
            client::print_json(&policy);
        }
        Command::Set {
            name,
            settings,
            client,
        } => {
            let body = settings_to_toml(&settings)?;
            let _: Applied = client.call(
                Method::PUT,
                &client::policy_target(&name),
                Some(body.into()),
            )?;
            println!("policy {name}: applied");
        }
        Command::Rm { name, client } => {
            let _: Applied = client.call(Method::DELETE, &client::policy_target(&name), None)?;
            println!("policy {name}: removed");
        }
        Command::Apply { file, client } => {
            let text = std::fs::read(&file)
                .map_err(|e| Failure::Usage(anyhow!("reading {}: {e}", file.display())))?;
            let applied: Applied = client.call(Method::POST, "/v1/policies", Some(text.into()))?;
            println!("{}: {} policies applied", file.display(), applied.policies);
        }
    }
    Ok(())
}

/// `key=value` arguments as the lines of a TOML table. Values that are TOML
/// (numbers, booleans, quoted strings) stay as they are; anything else is a
/// string; `match` is a list. A dotted key (`adaptive.min`) sets a key of a
/// sub-table.
fn settings_to_toml(settings: &[String]) -> Result<String, Failure> {
    let mut lines = Vec::new();
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| Failure::Usage(anyhow!("`{setting}`: expected KEY=VALUE")))?;
        let key = key.trim();
        let bare = |part: &str| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !key.split('.').all(bare) {
            return Err(Failure::Usage(anyhow!("`{setting}`: bad key `{key}`")));
        }
        let value = if key == "match" {
            let list: Vec<toml::Value> = value
                .split(',')
                .map(|v| toml::Value::String(v.trim().to_owned()))
                .collect();
            toml::Value::Array(list).to_string()
        } else {
            match format!("v = {value}").parse::<toml::Table>() {
                Ok(table) => table["v"].to_string(),
                Err(_) => toml::Value::String(value.to_owned()).to_string(),
            }
        };
        lines.push(format!("{key} = {value}"));
    }
    Ok(lines.join("\n"))
}

/// Whom a policy applies to: every process, those of a cgroup, or those its
/// workload patterns match (each with its matches now, one per line).
fn callers_cell(p: &PolicyView) -> String {
    if let Some(cgroup) = &p.settings.cgroup {
        return cgroup.clone();
    }
    if p.selected.is_empty() {
        return "all".to_owned();
    }
    client::workloads_lines(&p.selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_toml() {
        let s = |v: &[&str]| {
            settings_to_toml(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|_| ())
        };
        assert_eq!(
            s(&[
                "match=10.0.0.5:5432,[fd00::1]:443",
                "failure_threshold=3",
                "open=10s",
                "heal=true"
            ])
            .unwrap(),
            "match = [\"10.0.0.5:5432\", \"[fd00::1]:443\"]\nfailure_threshold = 3\nopen = \"10s\"\nheal = true"
        );
        assert_eq!(
            s(&[
                "max_connections=auto",
                "adaptive.algorithm=vegas",
                "adaptive.max=500",
                "adaptive.interval=500ms",
                "adaptive.smoothing=0.5"
            ])
            .unwrap(),
            "max_connections = \"auto\"\nadaptive.algorithm = \"vegas\"\nadaptive.max = 500\nadaptive.interval = \"500ms\"\nadaptive.smoothing = 0.5"
        );
        assert_eq!(
            s(&[
                "outlier.failure_percentage=85",
                "outlier.latency_factor=2.5",
                "outlier.base_ejection=10s"
            ])
            .unwrap(),
            "outlier.failure_percentage = 85\noutlier.latency_factor = 2.5\noutlier.base_ejection = \"10s\""
        );
        assert_eq!(s(&["outlier={}"]).unwrap(), "outlier = {}");
        assert!(s(&["nonsense"]).is_err());
        assert!(s(&["bad key=1"]).is_err());
        assert!(s(&["adaptive.=1"]).is_err());
        assert!(s(&[".min=1"]).is_err());
    }
}

//! Talking to the daemon's control socket: typed requests, typed answers.

use std::path::PathBuf;

use axum::http::Method;
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::Failure;
use crate::http::client::{Client, ClientError};

/// Options every client subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The daemon's control socket.
    #[arg(
        long,
        env = "ENFORCER_SOCKET",
        default_value = "/run/enforcer/enforcer.sock"
    )]
    pub socket: PathBuf,
}

/// Output format of subcommands that print a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// A one-shot runtime for a request.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    Ok(runtime.block_on(f))
}

impl From<ClientError> for Failure {
    /// The daemon's refusals are bad input (exit 2, nothing changed);
    /// anything else is a failure.
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused { .. } => Failure::Usage(e.into()),
            e => Failure::Runtime(e.into()),
        }
    }
}

impl Connection {
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Sends a request and reads the answer as `T`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<T, Failure> {
        Ok(block_on(self.client().json(method, target, body))??)
    }

    /// The answer's text (metrics).
    pub fn text(&self, target: &str) -> Result<Bytes, Failure> {
        Ok(block_on(self.client().bytes(Method::GET, target, None))??)
    }
}

/// `path?query` with the query encoded from `query`'s fields.
pub fn target(path: &str, query: &impl Serialize) -> Result<String, Failure> {
    let query =
        serde_urlencoded::to_string(query).map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    Ok(if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    })
}

/// `/v1/policies/NAME`, the name percent-encoded as one path segment.
pub fn policy_target(name: &str) -> String {
    named_target("/v1/policies", name)
}

/// `/v1/classes/NAME`, the name percent-encoded as one path segment.
pub fn class_target(name: &str) -> String {
    named_target("/v1/classes", name)
}

fn named_target(collection: &str, name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    format!(
        "{collection}/{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// Prints pretty JSON.
pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A table in the CLI's style: no borders, columns aligned, a header row.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header.iter().copied());
    table
}

/// Workload patterns with their matches now, one per line (`PATTERN (2
/// cgroups)`; a pattern matching nothing says so).
pub fn workloads_lines(selected: &[crate::api::WorkloadMatch]) -> String {
    selected
        .iter()
        .map(|w| match w.cgroups {
            0 => format!("{} (no cgroup)", w.pattern),
            1 => format!("{} (1 cgroup)", w.pattern),
            n => format!("{} ({n} cgroups)", w.pattern),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

//! Talking to the daemon's control socket.

use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::Value;

use super::Failure;
use crate::{config, http};

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

impl Connection {
    /// The failure of not reaching the daemon.
    pub fn unreachable(&self, e: std::io::Error) -> Failure {
        Failure::Runtime(anyhow!(
            "cannot reach the daemon at {}: {e} (is `enforcer run` running?)",
            self.socket.display()
        ))
    }
}

/// A non-JSON answer (metrics, events) that is not a 200.
pub fn check_status(status: u16) -> Result<(), Failure> {
    if status == 200 {
        return Ok(());
    }
    Err(Failure::Runtime(anyhow!("the daemon answered {status}")))
}

/// Sends a request; the JSON answer, or the daemon's error as a failure (its
/// 4xx answers are bad input: exit code 2).
pub fn call(
    args: &Connection,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> Result<Value, Failure> {
    let (status, body) =
        block_on(http::request(&args.socket, method, target, body))?.map_err(|e| {
            Failure::Runtime(anyhow!(
                "cannot reach the daemon at {}: {e} (is `enforcer run` running?)",
                args.socket.display()
            ))
        })?;
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let message = || {
        value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    match status {
        200 => Ok(value),
        400..=499 => Err(Failure::Usage(anyhow!(message()))),
        _ => Err(Failure::Runtime(anyhow!(
            "the daemon failed: {}",
            message()
        ))),
    }
}

/// A query parameter, encoded.
pub fn param(key: &str, value: &str) -> String {
    format!("{key}={}", http::percent_encode(value))
}

/// Checks a destination on the client side, so a typo fails with exit code 2
/// without a round trip.
pub fn check_dest(text: &str) -> Result<(), Failure> {
    crate::daemon::api::parse_dest(text)
        .map(drop)
        .map_err(|e| Failure::Usage(anyhow!(e)))
}

/// Checks a `--netns` value on the client side: an inode or a name.
pub fn check_netns(text: &str) -> Result<(), Failure> {
    text.parse::<crate::netns::Selector>()
        .map(drop)
        .map_err(|e| Failure::Usage(e.into()))
}

/// Checks a duration on the client side.
pub fn check_duration(field: &str, text: &str) -> Result<(), Failure> {
    config::parse_duration(text)
        .map(drop)
        .map_err(|e| Failure::Usage(anyhow!("{field}: {e}")))
}

/// Prints pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

//! `enforcer metrics`: the Prometheus text, through the control socket.

use std::io::Write as _;

use super::{Failure, client};

pub fn execute(args: client::Connection) -> Result<(), Failure> {
    let text = args.text("/v1/metrics")?;
    std::io::stdout()
        .write_all(&text)
        .map_err(|e| Failure::Runtime(e.into()))
}

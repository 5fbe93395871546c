//! `enforcer metrics`: the Prometheus text, through the control socket.

use anyhow::anyhow;

use super::{Failure, client};
use crate::http;

pub fn execute(args: client::Connection) -> Result<(), Failure> {
    let (status, body) = client::block_on(http::request(&args.socket, "GET", "/v1/metrics", None))?
        .map_err(|e| {
            Failure::Runtime(anyhow!(
                "cannot reach the daemon at {}: {e}",
                args.socket.display()
            ))
        })?;
    if status != 200 {
        return Err(Failure::Runtime(anyhow!("the daemon answered {status}")));
    }
    print!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

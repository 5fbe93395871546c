//! `enforcer metrics`: the Prometheus text, through the control socket.

use super::{Failure, client};
use crate::http;

pub fn execute(args: client::Connection) -> Result<(), Failure> {
    let (status, body) = client::block_on(http::request(&args.socket, "GET", "/v1/metrics", None))?
        .map_err(|e| args.unreachable(e))?;
    client::check_status(status)?;
    print!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

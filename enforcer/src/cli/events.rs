//! `enforcer events`: follows the daemon's event stream until interrupted.

use tokio::io::AsyncBufReadExt;

use super::{Failure, client};
use crate::http;

pub fn execute(args: client::Connection) -> Result<(), Failure> {
    client::block_on(async {
        let (status, mut reader) = http::request_stream(&args.socket, "/v1/events")
            .await
            .map_err(|e| args.unreachable(e))?;
        client::check_status(status)?;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) => return Ok(()),
                Ok(_) => print!("{line}"),
                Err(e) => return Err(Failure::Runtime(e.into())),
            }
        }
    })?
}

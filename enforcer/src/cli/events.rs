//! `enforcer events`: follows the daemon's event stream until interrupted.

use std::io::Write as _;

use axum::http::Method;
use http_body_util::BodyExt;

use super::{Failure, client};

pub fn execute(args: client::Connection) -> Result<(), Failure> {
    client::block_on(async {
        let response = args.client().send(Method::GET, "/v1/events", None).await?;
        let mut body = response.into_body();
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Runtime(e.into()))?;
            if let Some(data) = frame.data_ref() {
                // Lines arrive whole (the daemon sends one per frame); a
                // closed stdout ends the command.
                if out.write_all(data).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    })?
}

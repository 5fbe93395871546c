//! `enforcer pause|resume`

use axum::http::Method;

use super::{Failure, client};
use crate::api::Switch;

pub fn execute(args: client::Connection, pause: bool) -> Result<(), Failure> {
    let endpoint = if pause { "/v1/pause" } else { "/v1/resume" };
    let _: Switch = args.call(Method::POST, endpoint, None)?;
    println!(
        "{}",
        if pause {
            "paused: every connection passes untouched"
        } else {
            "resumed"
        }
    );
    Ok(())
}

//! `enforcer pause|resume`

use super::{Failure, client};

pub fn execute(args: client::Connection, pause: bool) -> Result<(), Failure> {
    let endpoint = if pause { "/v1/pause" } else { "/v1/resume" };
    client::call(&args, "POST", endpoint, None)?;
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

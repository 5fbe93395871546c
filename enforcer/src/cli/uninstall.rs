//! `enforcer uninstall`: detach and unpin. Through the daemon when it runs (it
//! then exits); directly on the pin directory when it does not.

use std::path::PathBuf;

use anyhow::anyhow;
use axum::http::Method;

use super::{Failure, client};
use crate::{
    api::Uninstalling,
    bpf::pins::PinDir,
    config::{self, Config, DaemonOverrides},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (for the pin directory when no daemon runs).
    #[arg(long, env = "ENFORCER_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Pin directory (overrides the configuration's `daemon.pin_dir`).
    #[arg(long, env = "ENFORCER_PIN_DIR")]
    pin_dir: Option<PathBuf>,
    #[command(flatten)]
    client: client::Connection,
}

pub fn execute(args: Args) -> Result<(), Failure> {
    let overrides = DaemonOverrides {
        pin_dir: args.pin_dir.clone(),
        ..Default::default()
    };
    let config = Config::load(&args.config, &overrides).map_err(|e| Failure::Usage(e.into()))?;
    let pins = PinDir::new(&config.daemon.pin_dir);
    if args.client.socket.exists()
        && args
            .client
            .call::<Uninstalling>(Method::POST, "/v1/uninstall", None)
            .is_ok()
    {
        // The daemon detaches on its way out; wait until its pins are gone.
        for _ in 0..100 {
            if !pins.has_any() {
                println!("uninstalled (the daemon detached and exited)");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        return Err(Failure::Runtime(anyhow!(
            "the daemon did not remove {}",
            pins.root().display()
        )));
    }
    let _lock = pins.lock().map_err(|e| Failure::Runtime(e.into()))?;
    let removed = pins.remove_all().map_err(|e| Failure::Runtime(e.into()))?;
    println!(
        "uninstalled: {} pins removed from {}",
        removed.len(),
        pins.root().display()
    );
    Ok(())
}

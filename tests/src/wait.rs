//! Waiting for what the kernel or the daemon does asynchronously (a socket
//! finishing its close, a scan, a callback): polled until a deadline far
//! beyond what a shared, noisy machine needs, never asserted to happen within
//! a short time.

use std::{
    thread,
    time::{Duration, Instant},
};

/// How long anything a test waits for may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it gives a value; after [`DEADLINE`] fails with `what`
/// and what `check` said last.
pub fn until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => assert!(
                start.elapsed() < DEADLINE,
                "{what}: not after {DEADLINE:?}: {last}"
            ),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until `holds` does; after [`DEADLINE`] fails with `what`.
pub fn until_true(what: &str, mut holds: impl FnMut() -> bool) {
    until(what, || holds().then_some(()).ok_or_else(String::new));
}

//! Kernel logs for the rare paths (a full map, socket storage that cannot be
//! created, a state that should not happen), through aya-log's ring buffer,
//! which the daemon reads into its own log when `daemon.kernel_log` is on.
//!
//! Never on a hot path: every site is next to the counter that counts the
//! same case, and the counter stays the measure. Off unless the operator
//! turned it on: [`rare!`] reads the flag only once its path is taken, so
//! runs that take no rare path pay nothing at all, and with the flag off a
//! rare path pays one array lookup and skips the log call entirely.

use enforcer_common::config::Config;

use crate::maps::CONFIG;

/// Whether the operator turned kernel logs on (`Config::kernel_log`).
#[inline(always)]
pub fn on() -> bool {
    CONFIG.get(0).is_some_and(Config::kernel_log)
}

/// Logs at `$level` (`warn` or `error`) when kernel logs are on; skipped
/// entirely otherwise.
macro_rules! rare {
    ($level:ident, $($arg:tt)+) => {
        if $crate::klog::on() {
            // aya-log's macros take a context they do not use.
            aya_log_ebpf::$level!(&(), $($arg)+);
        }
    };
}
pub(crate) use rare;

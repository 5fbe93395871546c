//! The programs' kernel logs (`daemon.kernel_log`): aya-log's ring buffer,
//! read into the daemon's own log. Each line is a `log` record (target
//! `enforcer_ebpf::<module>`), which `tracing` collects like its own.

use std::time::Duration;

use tokio::io::{Interest, unix::AsyncFd};

use crate::bpf::KernelLogger;

/// The ring buffer is drained when it signals, and at least this often: a
/// wake-up that comes between a drain and clearing the readiness is lost,
/// and the kernel sends the next one only once the reader caught up.
const POLL: Duration = Duration::from_millis(500);

/// Writes every line the programs log, until the task is aborted.
pub async fn run(logger: KernelLogger) {
    // SAFETY: the logger owns its ring buffer's descriptor, open and the
    // same for as long as the logger lives, which the AsyncFd owns.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(
                "daemon.kernel_log: kernel logs unavailable (epoll: {})",
                e.into_parts().1
            );
            return;
        }
    };
    loop {
        if let Ok(Ok(mut guard)) = tokio::time::timeout(POLL, logger.readable_mut()).await {
            guard.clear_ready();
        }
        logger.get_mut().flush();
    }
}

//! How long `connect()` to a blackholed destination waits when nothing shortens
//! it: computed from the sysctls, not waited for (it is minutes).

use serde::Serialize;

/// `TCP_TIMEOUT_INIT`: the RTO of the first SYN.
const INITIAL_RTO_MS: u64 = 1_000;
/// `TCP_RTO_MAX`.
const MAX_RTO_MS: u64 = 120_000;

/// The kernel's SYN schedule on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SynTimeout {
    /// `net.ipv4.tcp_syn_retries`.
    pub syn_retries: u32,
    /// `net.ipv4.tcp_syn_linear_timeouts` (0 on kernels without it).
    pub linear_timeouts: u32,
    /// From the first SYN to `connect()` failing with ETIMEDOUT.
    pub total_ms: u64,
}

impl SynTimeout {
    pub fn of_this_host() -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let syn_retries = read("tcp_syn_retries").unwrap_or(6);
        // Absent before the kernel learnt linear SYN backoff: plain doubling.
        let linear_timeouts = read("tcp_syn_linear_timeouts").unwrap_or(0);
        Self {
            syn_retries,
            linear_timeouts,
            total_ms: total_ms(syn_retries, linear_timeouts),
        }
    }

    pub fn total_ns(&self) -> u64 {
        self.total_ms * 1_000_000
    }
}

/// The SYN is retransmitted `syn_retries + linear_timeouts` times (the linear
/// ones come on top: `tcp_write_timeout()` adds them to the retry limit in
/// SYN_SENT) and `connect()` fails when the timer fires once more after the last.
/// The first `linear_timeouts + 1` waits are one initial RTO each; after that each
/// wait doubles (`tcp_retransmit_timer()`), capped at `TCP_RTO_MAX`. With no linear
/// timeouts this is the classic `2^(retries+1) - 1` seconds: 127 s for 6 retries.
pub fn total_ms(syn_retries: u32, linear_timeouts: u32) -> u64 {
    let waits = syn_retries + linear_timeouts + 1;
    let (mut rto, mut total) = (INITIAL_RTO_MS, 0);
    for fired in 1..=waits {
        total += rto;
        if fired > linear_timeouts {
            rto = (rto * 2).min(MAX_RTO_MS);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::total_ms;

    #[test]
    fn classic_doubling_gives_127_s_for_6_retries() {
        assert_eq!(total_ms(6, 0), 127_000);
        assert_eq!(total_ms(0, 0), 1_000);
    }

    #[test]
    fn linear_timeouts_add_one_rto_waits_first() {
        // 1 1 1 1 1 2 4 8 16 32 64: the schedule packet captures show on 6.x.
        assert_eq!(total_ms(6, 4), 131_000);
    }

    #[test]
    fn waits_are_capped_at_rto_max() {
        // 1 2 4 … 64 then 120 120 …
        assert_eq!(total_ms(8, 0), 127_000 + 120_000 + 120_000);
    }
}

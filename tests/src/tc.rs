//! The TC programs on an interface, through whichever interface the running
//! kernel attaches them with (tcx links, or netlink filters before 6.6).

use std::process::Command;

use aya::programs::{SchedClassifier, tc::TcAttachType};
use enforcer::bpf::TcApi;

/// How many TC programs are attached to `interface` (in the calling thread's
/// network namespace) in `direction`.
pub fn programs_on(interface: &str, direction: TcAttachType) -> usize {
    match TcApi::of_running_kernel() {
        // A failed query must not read as "nothing attached".
        TcApi::Tcx => SchedClassifier::query_tcx(interface, direction)
            .map(|(_, programs)| programs.len())
            .unwrap_or_else(|e| panic!("tcx query on {interface}: {e}")),
        TcApi::Netlink => {
            let direction = match direction {
                TcAttachType::Ingress => "ingress",
                _ => "egress",
            };
            // Spawned from this thread, so in its network namespace.
            let out = Command::new("tc")
                .args(["filter", "show", "dev", interface, direction])
                .output()
                .expect("tc");
            assert!(
                out.status.success(),
                "tc filter show dev {interface}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Per filter, a line for its priority and one for the filter
            // itself, with its handle and program.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(" bpf ") && l.contains(" handle "))
                .count()
        }
    }
}

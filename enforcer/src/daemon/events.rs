//! The event reader: kernel transitions from the ring buffer become log lines,
//! JSON lines for `enforcer events`, and per-kind counts for the metrics.

use std::time::Duration;

use enforcer_common::event::{Event, kind, kind_name};
use serde_json::json;

use super::{Shared, lock};
use crate::clock::monotonic_ns;

/// How often the ring buffer is drained. Transitions are rare; a tenth of a
/// second keeps `enforcer events` live without spinning.
const POLL: Duration = Duration::from_millis(100);

pub async fn run(shared: Shared) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let mut d = lock(&shared);
        let events = match d.enforcer.drain_events() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("enforcer: reading events: {e}");
                continue;
            }
        };
        for event in events {
            *d.event_counts.entry(kind_name(event.kind)).or_default() += 1;
            if event.kind == kind::CLOSED {
                d.open.remove(&event.dest);
            } else {
                d.open.insert(event.dest);
            }
            let line = kernel_event(&event, d.policy_name(event.policy_id));
            d.publish(line);
        }
    }
}

/// A kernel transition as a JSON line.
pub fn kernel_event(e: &Event, policy: &str) -> String {
    let open_for_ms = (e.open_until_ns > e.at_ns).then(|| (e.open_until_ns - e.at_ns) / 1_000_000);
    json!({
        "kind": kind_name(e.kind),
        "dest": e.dest.socket_addr().to_string(),
        "policy": policy,
        "trip_level": e.trips,
        "open_for_ms": open_for_ms,
        "age_ms": monotonic_ns().saturating_sub(e.at_ns) / 1_000_000,
    })
    .to_string()
}

/// Something the daemon did (an override, a reset, a policy change).
pub fn daemon_event(kind: &str, dest: Option<&str>, detail: &str) -> String {
    json!({ "kind": kind, "dest": dest, "detail": detail }).to_string()
}

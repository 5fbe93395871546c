//! The event reader: kernel transitions from the ring buffer become typed
//! events (logged, streamed to `enforcer events`, counted for the metrics).
//!
//! Every event about a destination names its network namespace next to the
//! address (`netns`: the inode, `netns_name`, `netns_status`: `host`,
//! `present`, `gone` or `unknown`); events about overrides carry none: an
//! override applies to the address in every namespace.

use std::time::Duration;

use enforcer_common::{
    class::Priority,
    event::{Event, Kind},
};

use super::{Shared, lock};
use crate::{clock::monotonic_ns, netns::Label};

/// The ring buffer is drained when it signals (epoll on its descriptor), and at
/// least this often in case a wake-up is missed.
const POLL: Duration = Duration::from_millis(100);

pub async fn run(shared: Shared) {
    let ready = lock(&shared)
        .enforcer
        .maps()
        .events
        .fd()
        .map_err(anyhow::Error::from)
        .and_then(|fd| {
            // SAFETY: `fd` is a descriptor we own (a dup of the ring buffer's),
            // open for as long as the AsyncFd that owns it.
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(anyhow::Error::from)
        })
        .map_err(|e| tracing::warn!("event wake-ups unavailable, polling: {e}"))
        .ok();
    loop {
        match &ready {
            Some(fd) => {
                if let Ok(Ok(mut guard)) = tokio::time::timeout(POLL, fd.readable()).await {
                    guard.clear_ready();
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
        let mut d = lock(&shared);
        let events = d.enforcer.maps_mut().events.drain();
        for event in events {
            let kind = Kind::from_raw(event.kind);
            *d.event_counts.entry(kind_name(kind)).or_default() += 1;
            match kind {
                Some(Kind::Closed) => {
                    d.open.remove(&event.dest);
                }
                // A class shed or admitted again says nothing of the circuit.
                Some(Kind::ClassShed | Kind::ClassRestored) => {}
                _ => {
                    d.open.insert(event.dest);
                    let tripped_at = (kind == Some(Kind::Tripped)).then_some(event.at_ns);
                    d.healing.saw_open(event.dest, event.policy_id, tripped_at);
                }
            }
            let label = d.namespaces.label(event.dest.netns);
            let notice = kernel_event(&event, d.policy_name(event.policy_id), label);
            d.publish(notice);
        }
        // A destination that just tripped starts healing now, not at the
        // controller's next tick.
        super::heal::start_healers(&shared, &mut d);
    }
}

/// An event kind's name; "unknown" for a value that names none.
fn kind_name(kind: Option<Kind>) -> &'static str {
    kind.map_or("unknown", Kind::name)
}

/// A kernel transition as an event.
pub fn kernel_event(e: &Event, policy: &str, netns: Label) -> crate::api::Event {
    let kind = Kind::from_raw(e.kind);
    let class = matches!(kind, Some(Kind::ClassShed | Kind::ClassRestored)).then(|| {
        Priority::from_raw(e.class)
            .map_or("?", Priority::name)
            .to_owned()
    });
    crate::api::Event {
        kind: kind_name(kind).to_owned(),
        class,
        dest: Some(e.dest.socket_addr()),
        netns: Some(netns.into()),
        policy: Some(policy.to_owned()),
        trip_level: Some(e.trips),
        open_for_ms: (e.open_until_ns > e.at_ns).then(|| (e.open_until_ns - e.at_ns) / 1_000_000),
        age_ms: Some(monotonic_ns().saturating_sub(e.at_ns) / 1_000_000),
        ..crate::api::Event::default()
    }
}

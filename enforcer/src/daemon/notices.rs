//! What the daemon itself does (overrides, resets, healing probes, policy
//! changes), as the JSON lines `enforcer events` streams next to the kernel's
//! transitions.

use enforcer_common::dest::DestKey;
use serde_json::json;

use crate::netns::Label;

/// Something the daemon did to an address in every namespace (an override, a
/// reset) or to no destination (a policy change).
pub fn daemon_event(kind: &str, dest: Option<&str>, detail: &str) -> String {
    json!({ "kind": kind, "dest": dest, "detail": detail }).to_string()
}

/// Something the daemon did to one destination in one namespace (a reset, a
/// healing probe).
pub fn dest_event(kind: &str, dest: &DestKey, netns: &Label, detail: &str) -> String {
    json!({
        "kind": kind,
        "dest": dest.socket_addr().to_string(),
        "netns": netns.inode,
        "netns_name": netns.name,
        "netns_status": netns.status,
        "detail": detail,
    })
    .to_string()
}

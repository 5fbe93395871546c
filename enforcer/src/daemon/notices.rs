//! What the daemon itself does (overrides, resets, healing probes, policy
//! changes), as events next to the kernel's transitions.

use std::net::SocketAddr;

use enforcer_common::dest::DestKey;

use crate::{
    api::{Event, Netns},
    netns::Label,
};

impl From<Label> for Netns {
    fn from(label: Label) -> Self {
        Self {
            netns: label.inode,
            netns_name: label.name,
            netns_status: label.status.to_owned(),
        }
    }
}

/// Something the daemon did to an address in every namespace (an override, a
/// reset) or to no destination (a policy change).
pub fn daemon_event(kind: &str, dest: Option<SocketAddr>, detail: &str) -> Event {
    Event {
        kind: kind.to_owned(),
        dest,
        detail: (!detail.is_empty()).then(|| detail.to_owned()),
        ..Event::default()
    }
}

/// Something the daemon did to one destination in one namespace (a reset, a
/// healing probe).
pub fn dest_event(kind: &str, dest: &DestKey, netns: Label, detail: &str) -> Event {
    Event {
        netns: Some(netns.into()),
        ..daemon_event(kind, Some(dest.socket_addr()), detail)
    }
}

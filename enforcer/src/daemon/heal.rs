//! Healing: open destinations of a policy with `heal = true` are probed with a
//! plain TCP connect (the daemon's own connects bypass the gate) on a jittered
//! schedule, and each result goes to the kernel, which moves the destination to
//! HALF_OPEN and counts the probe.
//!
//! A destination is probed from inside its own network namespace: the probe's
//! socket is created there (by a short-lived thread that entered it), so
//! `127.0.0.1:8080` of a container is that container's service, not the host's.
//! A destination whose namespace is gone or cannot be found is not probed, and
//! that is counted; so is one in another namespace when the daemon does not
//! keep the capability to enter namespaces (`daemon.enter_namespaces`, see
//! [`crate::privilege`]). At most `daemon.max_healers` destinations are probed at
//! once, the most recently tripped first; the rest are counted as skipped.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use enforcer_common::{
    breaker::State,
    control::{Command, Kind},
    dest::DestKey,
};

use super::{Daemon, Shared, lock, notices::dest_event};
use crate::{
    bpf::Applied,
    netns::{Namespace, NetnsError, Registry, Resolution},
    privilege::Feature,
};

/// Longest wait for a probe's handshake (shorter when the interval is).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an open destination of a healing policy is not being probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Its network namespace no longer exists.
    NetnsGone,
    /// Its network namespace could not be found (or entered).
    NetnsUnknown,
    /// `max_healers` more recently tripped destinations are being probed.
    MaxHealers,
    /// Its network namespace is not the daemon's, and the daemon did not keep
    /// `CAP_SYS_ADMIN` to enter it.
    NetnsNotPermitted,
}

impl Skip {
    pub const ALL: [Self; 4] = [
        Self::NetnsGone,
        Self::NetnsUnknown,
        Self::MaxHealers,
        Self::NetnsNotPermitted,
    ];

    /// The metric's `reason` label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NetnsGone => "netns_gone",
            Self::NetnsUnknown => "netns_unknown",
            Self::MaxHealers => "max_healers",
            Self::NetnsNotPermitted => "netns_not_permitted",
        }
    }
}

/// An open destination as the healing needs to know it.
#[derive(Clone, Copy, Debug)]
struct Trip {
    /// `bpf_ktime_get_ns` of its TRIPPED event; 0 when it tripped before this
    /// daemon started (older than every trip the daemon saw).
    at_ns: u64,
    policy_id: u32,
}

/// The running healers and what choosing among open destinations needs.
#[derive(Debug, Default)]
pub struct Healing {
    /// Destination → its healer's id. A healer whose id is no longer here
    /// (stopped, or replaced) ends at its next step.
    running: HashMap<DestKey, u64>,
    next_id: u64,
    trips: HashMap<DestKey, Trip>,
    /// The reason each passed-over destination was last counted with: a skip
    /// is counted when a destination's reason changes, not on every tick.
    skipped: HashMap<DestKey, Skip>,
    skipped_total: [u64; Skip::ALL.len()],
    /// Probes made: reached, failed.
    probes: [u64; 2],
}

impl Healing {
    /// A TRIPPED (or, with no earlier sighting, any not-CLOSED) event.
    pub fn saw_open(&mut self, key: DestKey, policy_id: u32, tripped_at_ns: Option<u64>) {
        let trip = self.trips.entry(key).or_insert(Trip {
            at_ns: 0,
            policy_id,
        });
        trip.policy_id = policy_id;
        if let Some(at) = tripped_at_ns {
            trip.at_ns = at;
        }
    }

    /// Destinations being probed now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Probes made since the start, by result (`reached`, `failed`).
    pub fn probes_total(&self) -> [(&'static str, u64); 2] {
        [("reached", self.probes[0]), ("failed", self.probes[1])]
    }

    /// Skips counted since the start, by reason.
    pub fn skipped_total(&self) -> impl Iterator<Item = (Skip, u64)> + '_ {
        Skip::ALL.into_iter().zip(self.skipped_total)
    }

    fn start(&mut self, key: DestKey) -> u64 {
        self.next_id += 1;
        self.running.insert(key, self.next_id);
        self.skipped.remove(&key);
        self.next_id
    }

    fn is_current(&self, key: &DestKey, id: u64) -> bool {
        self.running.get(key) == Some(&id)
    }

    fn skip(&mut self, key: DestKey, why: Skip) {
        self.running.remove(&key);
        if self.skipped.insert(key, why) != Some(why) {
            self.skipped_total[why as usize] += 1;
        }
    }

    /// Forgets what concerns destinations no longer open.
    fn retain_open(&mut self, open: &HashSet<DestKey>) {
        self.trips.retain(|k, _| open.contains(k));
        self.skipped.retain(|k, _| open.contains(k));
    }
}

/// Where a destination is probed from.
enum Origin {
    /// The daemon's own namespace.
    Here,
    Inside(Arc<Namespace>),
}

/// Where `cookie`'s destinations can be probed from (`enter`: whether the
/// daemon may enter other namespaces): `Err(None)` while its namespace is
/// still being looked for.
fn origin(registry: &Registry, enter: bool, cookie: u64) -> Result<Origin, Option<Skip>> {
    if cookie == registry.own_cookie() {
        return Ok(Origin::Here);
    }
    if !enter {
        return Err(Some(Skip::NetnsNotPermitted));
    }
    match registry.resolve(cookie) {
        Resolution::Known(ns) => Ok(Origin::Inside(ns)),
        Resolution::Gone { .. } => Err(Some(Skip::NetnsGone)),
        Resolution::Unresolved => Err(Some(Skip::NetnsUnknown)),
        Resolution::Pending => Err(None),
    }
}

/// The healing interval of a destination that is open and whose policy heals.
fn healing_interval(d: &Daemon, key: &DestKey) -> Option<Duration> {
    let s = d.enforcer.maps().dests.get(key).ok().flatten()?;
    if s.breaker.state == State::Closed as u32 {
        return None;
    }
    d.policy(s.policy_id)
        .filter(|p| p.heal)
        .map(|p| p.heal_interval)
}

/// Gives the `max_healers` most recently tripped open destinations whose
/// policy heals a healer each (stopping those that more recent trips push
/// out), and counts the others as skipped.
pub fn start_healers(shared: &Shared, d: &mut Daemon) {
    d.healing.retain_open(&d.open);
    let mut candidates: Vec<(u64, DestKey)> = Vec::new();
    for key in &d.open {
        let trip = match d.healing.trips.get(key) {
            Some(t) => *t,
            // Open since before this daemon: learn its policy once.
            None => match d.enforcer.maps().dests.get(key) {
                Ok(Some(s)) => {
                    d.healing.saw_open(*key, s.policy_id, None);
                    d.healing.trips[key]
                }
                _ => continue,
            },
        };
        if d.policy(trip.policy_id).is_some_and(|p| p.heal) {
            candidates.push((trip.at_ns, *key));
        }
    }
    candidates.sort_unstable_by_key(|(at, k)| (Reverse(*at), k.netns, k.addr, k.port));
    let mut slots = d.config.daemon.max_healers as usize;
    for (_, key) in candidates {
        if slots == 0 {
            d.healing.skip(key, Skip::MaxHealers);
            continue;
        }
        if d.healing.running.contains_key(&key) {
            slots -= 1;
            continue;
        }
        let enter = d.privilege.has(Feature::EnterNamespaces);
        match origin(&d.namespaces, enter, key.netns) {
            Ok(_) => {}
            Err(Some(why)) => {
                d.healing.skip(key, why);
                continue;
            }
            Err(None) => continue,
        }
        // The map's word over the cached policy: it may have closed or moved.
        if healing_interval(d, &key).is_none() {
            continue;
        }
        let id = d.healing.start(key);
        slots -= 1;
        let span = tracing::info_span!("heal", dest = %key.socket_addr(), netns = key.netns);
        tokio::spawn(tracing::Instrument::instrument(
            heal(shared.clone(), key, id),
            span,
        ));
    }
}

/// Probes one destination until it is CLOSED, its policy stops healing, or it
/// loses its healer: every 80–100 % of the interval (spread apart, never later
/// than it), each result reported to the kernel.
async fn heal(shared: Shared, key: DestKey, id: u64) {
    let (registry, enter) = {
        let d = lock(&shared);
        (
            d.namespaces.clone(),
            d.privilege.has(Feature::EnterNamespaces),
        )
    };
    loop {
        let wait = {
            let mut d = lock(&shared);
            if !d.healing.is_current(&key, id) {
                return;
            }
            let Some(interval) = healing_interval(&d, &key) else {
                d.healing.running.remove(&key);
                return;
            };
            interval.mul_f64(0.8 + 0.2 * d.jitter.unit())
        };
        tokio::time::sleep(wait).await;
        let interval = {
            let d = lock(&shared);
            if !d.healing.is_current(&key, id) {
                return;
            }
            match healing_interval(&d, &key) {
                Some(interval) => interval,
                None => continue,
            }
        };
        let from = match origin(&registry, enter, key.netns) {
            Ok(from) => from,
            Err(why) => {
                let mut d = lock(&shared);
                if let Some(why) = why
                    && d.healing.is_current(&key, id)
                {
                    d.healing.skip(key, why);
                    return;
                }
                continue;
            }
        };
        let addr = key.socket_addr();
        let reached = match probe(from, addr, interval.min(PROBE_TIMEOUT)).await {
            Ok(reached) => reached,
            Err(e) => {
                // Our own failure says nothing about the destination.
                tracing::warn!("healing {addr}: {e}");
                continue;
            }
        };
        let mut d = lock(&shared);
        d.healing.probes[usize::from(!reached)] += 1;
        if !d.healing.is_current(&key, id) {
            return;
        }
        let (command, what) = if reached {
            (Kind::HealProbeOk, "heal_probe_ok")
        } else {
            (Kind::HealProbeFailed, "heal_probe_failed")
        };
        match d.enforcer.control().run(&Command::new(command, key)) {
            Ok(Applied::Applied) => {
                let label = d.namespaces.label(key.netns);
                d.publish(dest_event(what, &key, label, "healing probe"));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("healing {addr}: {e}"),
        }
    }
}

/// Why no probe could be made: the daemon's trouble, not the destination's.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("a socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Whether a TCP connect to `addr` from `from` completes within `timeout`.
async fn probe(from: Origin, addr: SocketAddr, timeout: Duration) -> Result<bool, ProbeError> {
    let socket = match from {
        Origin::Here if addr.is_ipv4() => {
            tokio::net::TcpSocket::new_v4().map_err(ProbeError::Socket)?
        }
        Origin::Here => tokio::net::TcpSocket::new_v6().map_err(ProbeError::Socket)?,
        Origin::Inside(ns) => {
            let fd = ns.tcp_socket(addr.is_ipv6()).await?;
            // Non-blocking from birth, as tokio requires.
            tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd))
        }
    };
    Ok(matches!(
        tokio::time::timeout(timeout, socket.connect(addr)).await,
        Ok(Ok(_))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(h: &Healing) -> Vec<(&'static str, u64)> {
        h.skipped_total().map(|(why, n)| (why.name(), n)).collect()
    }

    #[test]
    fn without_leave_to_enter_namespaces_only_the_daemons_own_is_probed_from() {
        let registry = Registry::new().unwrap();
        let own = registry.own_cookie();
        assert!(matches!(origin(&registry, false, own), Ok(Origin::Here)));
        assert!(matches!(
            origin(&registry, false, own + 1),
            Err(Some(Skip::NetnsNotPermitted))
        ));
        // With leave, a cookie nobody knows yet is looked for first.
        assert!(matches!(origin(&registry, true, own + 1), Err(None)));
    }

    #[test]
    fn a_skip_is_counted_when_its_reason_changes_not_on_every_tick() {
        let mut h = Healing::default();
        let key = DestKey::from(SocketAddr::from(([127, 0, 0, 1], 80)));
        h.skip(key, Skip::MaxHealers);
        h.skip(key, Skip::MaxHealers);
        h.skip(key, Skip::NetnsGone);
        assert_eq!(
            counted(&h),
            [
                ("netns_gone", 1),
                ("netns_unknown", 0),
                ("max_healers", 1),
                ("netns_not_permitted", 0)
            ]
        );
        // Healed for a while, then pushed out again: a new skip.
        let id = h.start(key);
        assert!(h.is_current(&key, id));
        h.skip(key, Skip::MaxHealers);
        assert!(!h.is_current(&key, id), "a skipped healer ends");
        assert_eq!(h.running(), 0);
        assert_eq!(
            counted(&h),
            [
                ("netns_gone", 1),
                ("netns_unknown", 0),
                ("max_healers", 2),
                ("netns_not_permitted", 0)
            ]
        );
        // Forgotten once it is no longer open.
        h.retain_open(&HashSet::new());
        h.skip(key, Skip::MaxHealers);
        assert_eq!(counted(&h)[2], ("max_healers", 3));
    }
}

//! What one walk of the destination map decides to forget, as a pure function
//! of what the walk read: host-tested, and decided again by the kernel under
//! each destination's lock (`enforcer_common::control::may_forget`) before
//! anything is removed.

use std::collections::{HashMap, HashSet};

use enforcer_common::{
    breaker::State,
    control::when,
    dest::{DestKey, DestState},
};

/// Why a destination left the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// CLOSED, no connection, no connect for `gc_idle`.
    IdleClosed,
    /// OPEN or HALF_OPEN, no connection, no connect for its policy's
    /// `open_max + gc_idle`, its open period over.
    IdleOpen,
    /// The map passed its high-water mark: holding no connection, it was
    /// among the least used.
    MapPressure,
    /// Its policy was removed, or the policy's id went to another policy.
    PolicyGone,
}

impl Reason {
    pub const ALL: [Self; 4] = [
        Self::IdleClosed,
        Self::IdleOpen,
        Self::MapPressure,
        Self::PolicyGone,
    ];

    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::IdleClosed => "idle_closed",
            Self::IdleOpen => "idle_open",
            Self::MapPressure => "map_pressure",
            Self::PolicyGone => "policy_gone",
        }
    }
}

/// What the scan knows about the running policy that holds an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyView {
    /// The epoch the kernel has for it (`Policy::epoch`).
    pub epoch: u32,
    pub open_max_ns: u64,
}

/// The daemon's settings the plan follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub gc_idle_ns: u64,
    /// The map's capacity as the kernel created it.
    pub capacity: u32,
    /// `daemon.dests_high_water`, `daemon.dests_low_water`.
    pub high_water: f64,
    pub low_water: f64,
}

impl Limits {
    /// Entries at which eviction starts: the high-water share, rounded up, so
    /// that a map of capacity 1 is still at its mark when full.
    pub fn high_mark(&self) -> usize {
        share_of(self.high_water, self.capacity)
            .div_ceil(PPM)
            .max(1) as usize
    }

    /// Entries eviction brings the map back to (rounded down: below the high
    /// mark, since low < high).
    pub fn low_mark(&self) -> usize {
        (share_of(self.low_water, self.capacity) / PPM) as usize
    }
}

/// Shares are taken in millionths: `0.7 * 10.0` is `7.000000000000001` in
/// floating point, whose ceiling would be 8.
const PPM: u64 = 1_000_000;

/// `share × capacity`, in millionths of an entry.
fn share_of(share: f64, capacity: u32) -> u64 {
    (share * PPM as f64).round() as u64 * u64::from(capacity)
}

/// One command the scan sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// FORGET, if under the lock the destination took no connect after
    /// `idle_since_ns` (what the walk read) and passes `when`.
    Forget {
        key: DestKey,
        reason: Reason,
        idle_since_ns: u64,
        when: u64,
    },
    /// Its policy is gone but it holds connections: back to CLOSED now (if
    /// still stale under the lock), forgotten once they are released.
    ResetStale { key: DestKey },
}

/// The outcome of one walk.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Every destination the walk found not CLOSED (the scan drops those it
    /// forgets or resets).
    pub open: HashSet<DestKey>,
    /// The map was at or past its high-water mark.
    pub pressure: bool,
}

/// Decides what to forget of `entries` at `now`; `policies` are the running
/// policies by id.
pub fn plan(
    entries: &[(DestKey, DestState)],
    policies: &HashMap<u32, PolicyView>,
    limits: &Limits,
    now: u64,
) -> Plan {
    let by_epoch: HashMap<u32, &PolicyView> = policies.values().map(|p| (p.epoch, p)).collect();
    let mut plan = Plan::default();
    let mut candidates: Vec<&(DestKey, DestState)> = Vec::new();
    for entry in entries {
        let (key, s) = (entry.0, &entry.1);
        let b = &s.breaker;
        if b.state != State::Closed as u32 {
            plan.open.insert(key);
        }
        // Inserted by the gate, which names its policy right after, under
        // the lock: nothing to judge yet.
        if s.policy_id == 0 {
            continue;
        }
        let holds_slot = b.active != 0 || b.pending != 0;
        let forget = |reason, when| Action::Forget {
            key,
            reason,
            idle_since_ns: s.last_attempt_ns,
            when,
        };
        let policy = match policies.get(&s.policy_id) {
            Some(p) => (p.epoch == s.policy_epoch).then_some(p),
            // Its id is free but its policy may run on under another id (a
            // restarted daemon numbers the policies afresh): the gate moves
            // it there, state and counts, at its next connect.
            None => by_epoch.get(&s.policy_epoch).copied(),
        };
        let Some(p) = policy else {
            if !holds_slot {
                let stale = when::OPEN_TOO | when::STALE_POLICY;
                plan.actions.push(forget(Reason::PolicyGone, stale));
            } else if b.state != State::Closed as u32 {
                plan.actions.push(Action::ResetStale { key });
            }
            continue;
        };
        if holds_slot {
            continue;
        }
        let idle_ns = now.saturating_sub(s.last_attempt_ns);
        if b.state == State::Closed as u32 && idle_ns >= limits.gc_idle_ns {
            plan.actions.push(forget(Reason::IdleClosed, 0));
        } else if b.state != State::Closed as u32
            && idle_ns >= p.open_max_ns.saturating_add(limits.gc_idle_ns)
            && (b.state != State::Open as u32 || now >= b.open_until_ns)
        {
            let idle = when::OPEN_TOO | when::OPEN_ENDED;
            plan.actions.push(forget(Reason::IdleOpen, idle));
        } else {
            candidates.push(entry);
        }
    }
    plan.pressure = entries.len() >= limits.high_mark();
    if plan.pressure {
        let leaving = plan.actions.len();
        let excess = entries
            .len()
            .saturating_sub(leaving)
            .saturating_sub(limits.low_mark());
        candidates.sort_by_key(|(key, s)| eviction_order(key, s));
        for (key, s) in candidates.into_iter().take(excess) {
            plan.actions.push(Action::Forget {
                key: *key,
                reason: Reason::MapPressure,
                idle_since_ns: s.last_attempt_ns,
                when: when::OPEN_TOO,
            });
        }
    }
    plan
}

/// Who goes first under pressure: destinations seen only once (what a scan
/// or a flood of new destinations leaves behind) before those in repeated
/// use, each group least recently used first; the key breaks ties so that a
/// plan is reproducible.
fn eviction_order(key: &DestKey, s: &DestState) -> (bool, u64, u64, [u32; 4], u16) {
    let c = &s.counters;
    let uses = c
        .attempts
        .saturating_add(c.rejected_circuit)
        .saturating_add(c.rejected_bulkhead);
    (uses > 1, s.last_attempt_ns, key.netns, key.addr, key.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const EPOCH: u32 = 9;

    fn limits(capacity: u32) -> Limits {
        Limits {
            gc_idle_ns: 60 * SEC,
            capacity,
            high_water: 0.9,
            low_water: 0.5,
        }
    }

    fn policies() -> HashMap<u32, PolicyView> {
        let view = PolicyView {
            epoch: EPOCH,
            open_max_ns: 300 * SEC,
        };
        HashMap::from([(1, view)])
    }

    fn key(port: u16) -> DestKey {
        DestKey::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A destination of policy 1, last connected to at `at` seconds, used
    /// `uses` times.
    fn dest(at: u64, uses: u64) -> DestState {
        let mut s = DestState::new(1, at * SEC);
        s.policy_epoch = EPOCH;
        s.generation = 1;
        s.counters.attempts = uses;
        s
    }

    fn forgotten(plan: &Plan) -> Vec<(u16, Reason)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Forget { key, reason, .. } => Some((key.port, *reason)),
                Action::ResetStale { .. } => None,
            })
            .collect()
    }

    #[test]
    fn marks_round_towards_keeping_a_gap() {
        let l = limits(64);
        assert_eq!((l.high_mark(), l.low_mark()), (58, 32));
        assert_eq!((limits(1).high_mark(), limits(1).low_mark()), (1, 0));
        let full = Limits {
            high_water: 1.0,
            low_water: 0.99,
            ..limits(100)
        };
        assert_eq!((full.high_mark(), full.low_mark()), (100, 99));
        let seventy = Limits {
            high_water: 0.7,
            low_water: 0.3,
            ..limits(10)
        };
        assert_eq!((seventy.high_mark(), seventy.low_mark()), (7, 3));
    }

    #[test]
    fn idle_closed_destinations_go_after_gc_idle_and_only_without_slots() {
        let mut busy = dest(0, 1);
        busy.breaker.active = 1;
        let entries = [(key(1), dest(0, 1)), (key(2), dest(50, 1)), (key(3), busy)];
        let plan = plan(&entries, &policies(), &limits(100), 100 * SEC);
        assert_eq!(forgotten(&plan), [(1, Reason::IdleClosed)]);
        assert_eq!(
            plan.actions[0],
            Action::Forget {
                key: key(1),
                reason: Reason::IdleClosed,
                idle_since_ns: 0,
                when: 0
            },
            "no connect after the one the walk saw, CLOSED only"
        );
        assert!(!plan.pressure);
    }

    #[test]
    fn idle_open_destinations_go_after_open_max_plus_gc_idle_once_their_period_ends() {
        let open = |at, until| {
            let mut s = dest(at, 1);
            s.breaker.state = State::Open as u32;
            s.breaker.open_until_ns = until * SEC;
            s
        };
        let mut half = dest(0, 1);
        half.breaker.state = State::HalfOpen as u32;
        let now = 400 * SEC;
        let entries = [
            (key(1), open(0, 300)),
            // Idle 350 s < 300 + 60.
            (key(2), open(50, 300)),
            // Idle long enough, but its (long) open period runs on.
            (key(3), open(0, 500)),
            (key(4), half),
        ];
        let plan = plan(&entries, &policies(), &limits(100), now);
        assert_eq!(
            forgotten(&plan),
            [(1, Reason::IdleOpen), (4, Reason::IdleOpen)]
        );
        assert!(matches!(
            plan.actions[0],
            Action::Forget { when: w, .. } if w == when::OPEN_TOO | when::OPEN_ENDED
        ));
        assert_eq!(plan.open.len(), 4, "the walk saw four open");
    }

    #[test]
    fn destinations_of_a_gone_policy_are_forgotten_or_reset_when_busy() {
        let mut other_epoch = dest(99, 5);
        other_epoch.policy_epoch = EPOCH + 1;
        other_epoch.breaker.state = State::Open as u32;
        let mut busy = other_epoch;
        busy.breaker.active = 2;
        let mut busy_closed = busy;
        busy_closed.breaker.state = State::Closed as u32;
        let mut gone_id = dest(99, 5);
        gone_id.policy_id = 2;
        gone_id.policy_epoch = EPOCH + 2;
        let mut being_created = dest(0, 0);
        being_created.policy_id = 0;
        // Left at an id no policy holds, by a policy that runs on at id 1
        // (a restart renumbered it): the gate moves it at its next connect.
        let mut renumbered = dest(99, 5);
        renumbered.policy_id = 3;
        renumbered.breaker.state = State::Open as u32;
        let mut renumbered_idle = dest(0, 1);
        renumbered_idle.policy_id = 3;
        let entries = [
            (key(1), other_epoch),
            (key(2), busy),
            (key(3), busy_closed),
            (key(4), gone_id),
            (key(5), being_created),
            (key(6), renumbered),
            (key(7), renumbered_idle),
        ];
        let plan = plan(&entries, &policies(), &limits(100), 100 * SEC);
        assert_eq!(
            plan.actions,
            [
                Action::Forget {
                    key: key(1),
                    reason: Reason::PolicyGone,
                    idle_since_ns: 99 * SEC,
                    when: when::OPEN_TOO | when::STALE_POLICY
                },
                Action::ResetStale { key: key(2) },
                Action::Forget {
                    key: key(4),
                    reason: Reason::PolicyGone,
                    idle_since_ns: 99 * SEC,
                    when: when::OPEN_TOO | when::STALE_POLICY
                },
                Action::Forget {
                    key: key(7),
                    reason: Reason::IdleClosed,
                    idle_since_ns: 0,
                    when: 0
                },
            ]
        );
    }

    #[test]
    fn under_pressure_one_shot_destinations_go_first_then_the_least_recent() {
        // Capacity 10: high mark 9, low mark 5.
        let mut entries = vec![
            // In use: holds a connection, never evicted.
            (key(1), {
                let mut s = dest(1, 9);
                s.breaker.active = 1;
                s
            }),
            // Used often, long ago (but not gc_idle ago).
            (key(2), dest(45, 9)),
            // Used often, recently.
            (key(3), dest(90, 9)),
        ];
        // A flood of one-shot destinations, all more recent than key 2's use,
        // one of them tripped (open: evicted too).
        for port in 10..17 {
            let mut s = dest(u64::from(port) + 50, 1);
            if port == 12 {
                s.breaker.state = State::Open as u32;
                s.breaker.open_until_ns = 1000 * SEC;
            }
            entries.push((key(port), s));
        }
        assert_eq!(entries.len(), 10);
        let plan = plan(&entries, &policies(), &limits(10), 100 * SEC);
        assert!(plan.pressure);
        assert_eq!(
            forgotten(&plan),
            [10, 11, 12, 13, 14].map(|p| (p, Reason::MapPressure)),
            "10 entries down to 5: the five oldest one-shot ones"
        );
        assert!(matches!(
            plan.actions[2],
            Action::Forget { when: when::OPEN_TOO, idle_since_ns, .. } if idle_since_ns == 62 * SEC
        ));

        // Fewer one-shot ones than needed: then the least recently used.
        let plan = plan_of(&entries[..5], 5);
        assert_eq!(
            forgotten(&plan),
            [
                (10, Reason::MapPressure),
                (11, Reason::MapPressure),
                (2, Reason::MapPressure)
            ]
        );
    }

    fn plan_of(entries: &[(DestKey, DestState)], capacity: u32) -> Plan {
        // Capacity 5: high mark 5, low mark 2; key 1 holds a slot.
        plan(entries, &policies(), &limits(capacity), 100 * SEC)
    }

    #[test]
    fn idle_collection_counts_towards_the_low_mark() {
        // Capacity 4: high mark 4, low mark 2; two idle CLOSED already go.
        let entries = [
            (key(1), dest(0, 1)),
            (key(2), dest(1, 1)),
            (key(3), dest(95, 1)),
            (key(4), dest(96, 1)),
        ];
        let plan = plan(&entries, &policies(), &limits(4), 100 * SEC);
        assert_eq!(
            forgotten(&plan),
            [(1, Reason::IdleClosed), (2, Reason::IdleClosed)]
        );
    }
}

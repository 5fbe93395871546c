//! The scan: one walk of the whole destination map, every scan interval (a
//! quarter of `gc_idle`, within 1 s..30 s), sooner when the policy set changed
//! or new destinations are being turned away because the map is full.
//!
//! One walk serves everything that needs the whole map:
//! - forget idle destinations: CLOSED ones after `gc_idle`, OPEN ones after
//!   their policy's `open_max + gc_idle` once their open period is over;
//! - forget (or, while they hold connections, reset) destinations whose
//!   policy was removed or whose policy's id went to another policy, so none
//!   stays OPEN under rules that are not its own;
//! - past the high-water mark, evict destinations holding no connection,
//!   those seen only once first, then the least recently used, down to the
//!   low-water mark ([`plan`]);
//! - reconcile each policy's tracked and open counts with the map
//!   ([`reconcile`]);
//! - re-learn which destinations are open (the event reader keeps that set
//!   current in between, so ticks never walk a map of 100 000 destinations).
//!
//! The kernel decides every removal again under the destination's lock, so a
//! destination that took a connect since the walk stays.

mod plan;
mod reconcile;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use enforcer_common::{control::Command, counters::GlobalCounter, dest::DestKey};
pub use plan::Reason;
use plan::{Action, Limits, PolicyView};
use reconcile::Reconciler;

use super::Daemon;
use crate::{
    bpf::{Applied, BpfError},
    clock::monotonic_ns,
};

/// How soon a scan follows the last one while the map turns destinations
/// away: a scan is a read of the whole map, so not every tick.
const PRESSURE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the whole destination map is walked: a quarter of `gc_idle`, within
/// 1 s..30 s.
fn scan_interval(gc_idle: Duration) -> Duration {
    (gc_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// What the scans did, for the metrics: evictions by reason and count
/// corrections by policy name, since the daemon started. Process-wide, like
/// the kernel's own counters (one daemon per process).
static TOTALS: Mutex<Totals> = Mutex::new(Totals {
    evicted: BTreeMap::new(),
    corrections: BTreeMap::new(),
});

#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub evicted: BTreeMap<Reason, u64>,
    pub corrections: BTreeMap<String, u64>,
}

/// A copy of what the scans did so far.
pub fn totals() -> Totals {
    TOTALS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn add_totals(f: impl FnOnce(&mut Totals)) {
    f(&mut TOTALS.lock().unwrap_or_else(|p| p.into_inner()));
}

/// The scan's memory between walks.
#[derive(Debug, Default)]
pub struct Scanner {
    scanned_at: Option<Instant>,
    /// The running policies (id, epoch) the last scan saw.
    policies: Vec<(u32, u32)>,
    /// The kernel's `dest_map_full` count at the last scan.
    map_full: u64,
    reconciler: Reconciler,
}

impl Scanner {
    /// Whether a scan is due: its interval has passed, the policy set changed
    /// (a removed policy's destinations go at once), or new destinations were
    /// turned away since the last scan because the map was full (then at most
    /// one scan every [`PRESSURE_INTERVAL`]).
    pub fn due(&self, d: &Daemon) -> bool {
        let Some(at) = self.scanned_at else {
            return true;
        };
        let elapsed = at.elapsed();
        elapsed >= scan_interval(d.config.daemon.gc_idle)
            || running(d) != self.policies
            || (elapsed >= PRESSURE_INTERVAL
                && d.enforcer
                    .maps()
                    .counters
                    .get(GlobalCounter::DestMapFull)
                    .is_ok_and(|n| n > self.map_full))
    }

    /// One walk, and what it decides.
    pub fn scan(&mut self, d: &mut Daemon) -> Result<(), BpfError> {
        self.scanned_at = Some(Instant::now());
        self.policies = running(d);
        let maps = d.enforcer.maps();
        self.map_full = maps.counters.get(GlobalCounter::DestMapFull)?;
        let now = monotonic_ns();
        // Counts read on both sides of the walk: a difference is only
        // trusted when they did not move in between.
        let before = maps.policy_stats.all()?;
        let entries = maps.dests.all()?;
        let after = maps.policy_stats.all()?;
        let counted = reconcile::count(&entries);
        // A command that fails (say, a control program of an older daemon,
        // adopted from the pins, that does not know it) spoils none of the
        // others: the first error is reported once the scan is done.
        let mut failed = None;
        for c in self.reconciler.corrections(&before, &after, &counted) {
            if let Err(e) = correct(d, &c) {
                failed.get_or_insert(e);
            }
        }
        let limits = Limits {
            gc_idle_ns: d.config.daemon.gc_idle.as_nanos() as u64,
            capacity: d.enforcer.maps().dests.capacity()?,
            high_water: d.config.daemon.dests_high_water,
            low_water: d.config.daemon.dests_low_water,
        };
        let plan = plan::plan(&entries, &views(d), &limits, now);
        let done = carry_out(d, &plan.actions);
        d.open = plan.open;
        d.open.retain(|k| !done.left.contains(k));
        add_totals(|t| {
            for (reason, n) in &done.forgotten {
                *t.evicted.entry(*reason).or_default() += n;
            }
        });
        report(plan.pressure, &limits, entries.len(), &done);
        match failed.or(done.failed) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// What the kernel made of a scan's commands.
#[derive(Debug, Default)]
struct Done {
    forgotten: BTreeMap<Reason, u64>,
    /// Reset to CLOSED (their policy gone, connections still open).
    reset: u64,
    /// No longer open: forgotten or reset.
    left: HashSet<DestKey>,
    failed: Option<BpfError>,
}

/// Sends the plan's commands; one that fails spoils none of the others.
fn carry_out(d: &mut Daemon, actions: &[Action]) -> Done {
    let mut done = Done::default();
    for action in actions {
        let (key, command) = match *action {
            Action::Forget {
                key,
                idle_since_ns,
                when,
                ..
            } => (key, Command::forget(key, idle_since_ns, when)),
            Action::ResetStale { key } => (key, Command::reset_stale(key)),
        };
        let result = d.enforcer.control().run(&command);
        match (result, action) {
            (Ok(Applied::Applied), Action::Forget { reason, .. }) => {
                *done.forgotten.entry(*reason).or_default() += 1;
                done.left.insert(key);
            }
            (Ok(Applied::Applied), Action::ResetStale { .. }) => {
                done.reset += 1;
                done.left.insert(key);
            }
            // Connected to (or gone) since the walk: it stays (or is gone).
            (Ok(_), _) => {}
            (Err(e), _) => {
                done.failed.get_or_insert(e);
            }
        }
    }
    done
}

/// The running policies by id, as the plan needs them.
fn views(d: &Daemon) -> HashMap<u32, PolicyView> {
    d.policies
        .iter()
        .map(|p| {
            let view = PolicyView {
                epoch: p.spec.epoch(),
                open_max_ns: p.spec.open_max.as_nanos().min(u128::from(u64::MAX)) as u64,
            };
            (p.id, view)
        })
        .collect()
}

/// The running policies as the kernel knows them: (id, epoch).
fn running(d: &Daemon) -> Vec<(u32, u32)> {
    d.policies.iter().map(|p| (p.id, p.spec.epoch())).collect()
}

/// Applies one correction, counts it and says so.
fn correct(d: &mut Daemon, c: &reconcile::Correction) -> Result<(), BpfError> {
    let adjust = Command::adjust_policy_stats(c.policy_id, c.tracked, c.open);
    if d.enforcer.control().run(&adjust)? != Applied::Applied {
        return Ok(());
    }
    let policy = match d.policy(c.policy_id) {
        Some(p) => p.name.clone(),
        None => format!("#{}", c.policy_id),
    };
    tracing::warn!(
        "policy {policy} (id {}): counts corrected to the destination map: \
         tracked {} -> {}, open {} -> {}",
        c.policy_id,
        c.was.tracked,
        c.counted.tracked,
        c.was.open,
        c.counted.open
    );
    add_totals(|t| *t.corrections.entry(policy).or_default() += 1);
    Ok(())
}

/// Logs what the operator needs to hear of: evictions under pressure (a flood,
/// or a capacity too small), destinations of removed policies.
fn report(pressure: bool, limits: &Limits, walked: usize, done: &Done) {
    let n = |reason| done.forgotten.get(&reason).copied().unwrap_or(0);
    let reset = done.reset;
    if pressure {
        let left = walked as u64 - done.forgotten.values().sum::<u64>();
        tracing::info!(
            "destination map at its high-water mark ({walked} of {}): evicted {} \
             destinations holding no connection (seen once first, then least recently used), \
             {left} left (low-water mark {})",
            limits.capacity,
            n(Reason::MapPressure),
            limits.low_mark(),
        );
    }
    if n(Reason::PolicyGone) + reset > 0 {
        tracing::warn!(
            "destinations of removed or replaced policies: {} forgotten, {reset} \
             reset to CLOSED (forgotten once their connections end)",
            n(Reason::PolicyGone)
        );
    }
}

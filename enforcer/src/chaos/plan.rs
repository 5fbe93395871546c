//! What the kernel holds for an experiment's faults: one slot each, with the
//! targets resolved (cgroups to ids and levels) and an absolute expiry.

use enforcer_common::chaos::{self, CgroupScope, Fault, Kind, Target};

use super::experiment::{FaultKind, FaultSpec};
use crate::rule::Rule;

/// Who a fault's connects may come from, resolved when its experiment
/// starts: its cgroups as (id, level) (for a fault on every caller, or one
/// whose callers its workload selectors name, the cgroup v2 root at level
/// 0) and its priority classes, a bit per
/// [`enforcer_common::class::Priority`] (0: every class).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callers {
    pub cgroups: Vec<(u64, u32)>,
    pub classes: u32,
}

/// The kernel's entry for `spec`, its callers resolved to `callers`,
/// ending at `until_ns` (`CLOCK_MONOTONIC`).
pub fn kernel_fault(spec: &FaultSpec, callers: &Callers, until_ns: u64) -> Fault {
    let (kind, errno, syns) = match spec.kind {
        FaultKind::Refuse { errno } => (Kind::Refuse, errno, 0),
        FaultKind::Blackhole => (Kind::Blackhole, 0, chaos::ALL_SYNS),
        FaultKind::Delay { syns } => (Kind::Delay, 0, syns),
        FaultKind::GuestRefuse => (Kind::GuestRefuse, 0, 0),
        FaultKind::GuestBlackhole => (Kind::GuestBlackhole, 0, 0),
        FaultKind::GuestLoss => (Kind::GuestLoss, 0, 0),
        // Not armed: the kernel holds no slot for these (see `target`).
        FaultKind::Reset | FaultKind::AbortAfterBytes { .. } => return Fault::default(),
    };
    let mut fault = Fault {
        kind: kind as u32,
        errno,
        syns,
        chance: chaos::chance(spec.targets.percentage),
        until_ns,
        cap: spec.targets.max_connects,
        classes: callers.classes,
        workloads: u32::from(!spec.targets.workloads.is_empty()),
        ..Fault::default()
    };
    let targets: Vec<Target> = spec.targets.destinations.iter().map(Rule::target).collect();
    fault.set_targets(&targets);
    let cgroups: Vec<CgroupScope> = callers
        .cgroups
        .iter()
        .map(|&(id, level)| CgroupScope { id, level, _pad: 0 })
        .collect();
    fault.set_cgroups(&cgroups);
    fault
}

/// Free slots for `wanted` faults, given the slots in use (a bit set), or
/// `None` when there are not enough.
pub fn free_slots(in_use: u32, wanted: usize) -> Option<Vec<u32>> {
    let free: Vec<u32> = (0..chaos::SLOTS)
        .filter(|s| in_use & chaos::bit(*s) == 0)
        .take(wanted)
        .collect();
    (free.len() == wanted).then_some(free)
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use enforcer_common::dest::DestKey;

    use super::*;
    use crate::chaos::experiment::Targets;

    fn spec(kind: FaultKind, destinations: &[&str], percentage: f64) -> FaultSpec {
        FaultSpec {
            kind,
            targets: Targets {
                destinations: destinations.iter().map(|d| d.parse().unwrap()).collect(),
                cgroups: Vec::new(),
                workloads: Vec::new(),
                classes: Vec::new(),
                percentage,
                max_connects: 7,
            },
        }
    }

    /// Every caller: the root (here id 9) at level 0, every class.
    fn root() -> Callers {
        Callers {
            cgroups: vec![(9, 0)],
            classes: 0,
        }
    }

    fn key(s: &str) -> DestKey {
        DestKey::from(s.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn a_refuse_fault_matches_its_destinations_only() {
        let f = kernel_fault(
            &spec(
                FaultKind::Refuse { errno: 111 },
                &["10.0.0.0/8:5432", "[fd00::/64]:*"],
                100.0,
            ),
            &Callers {
                cgroups: vec![(42, 3)],
                classes: 0b1000,
            },
            1_000,
        );
        assert_eq!(
            (f.kind, f.errno, f.cap, f.until_ns),
            (Kind::Refuse as u32, 111, 7, 1_000)
        );
        assert_eq!(f.chance, chaos::ALWAYS);
        assert!(f.targets(&key("10.1.2.3:5432")));
        assert!(f.targets(&key("[fd00::9]:80")));
        assert!(!f.targets(&key("10.1.2.3:5433")));
        assert!(!f.targets(&key("127.0.0.1:5432")));
        assert_eq!(
            (f.cgroup_count, f.cgroups[0].id, f.cgroups[0].level),
            (1, 42, 3)
        );
        assert!(
            f.cgroups.iter().all(|c| c.id == 42),
            "unused cgroups repeat the first"
        );
        assert_eq!(
            f.targets[7], f.targets[0],
            "unused targets repeat the first"
        );
        assert!(f.live(999) && !f.live(1_000));
        assert_eq!(f.classes, 0b1000);
        let _ = Duration::ZERO;
    }

    #[test]
    fn drop_faults_carry_their_syns_and_chance() {
        let hole = kernel_fault(
            &spec(FaultKind::Blackhole, &["127.0.0.1:1"], 30.0),
            &root(),
            1,
        );
        assert_eq!(hole.syns, chaos::ALL_SYNS);
        assert!((f64::from(hole.chance) / 4_294_967_296.0 - 0.3).abs() < 1e-9);
        assert!(hole.cgroups.iter().all(|c| (c.id, c.level) == (9, 0)));
        let delay = kernel_fault(
            &spec(FaultKind::Delay { syns: 2 }, &["127.0.0.1:1"], 100.0),
            &root(),
            1,
        );
        assert_eq!((delay.kind, delay.syns), (Kind::Delay as u32, 2));
    }

    #[test]
    fn free_slots_skip_those_in_use() {
        assert_eq!(free_slots(0b101, 2), Some(vec![1, 3]));
        assert_eq!(free_slots(0xff & !1, 1), Some(vec![0]));
        assert_eq!(free_slots(0xff, 1), None);
        assert_eq!(free_slots(0, 0), Some(vec![]));
    }
}

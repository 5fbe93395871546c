//! The workload selectors as they run ([`crate::workload`]): the daemon
//! walks the cgroup tree where the running policies', classes' and chaos
//! faults' patterns may match, writes what they match into the kernel (the
//! scopes of policies and faults, the classes' members), and keeps it
//! current as workloads come and go: an inotify watch on every directory walked wakes [`run`], which walks again.
//! A full walk every [`RESCAN`] catches what a watch could miss (an
//! overflowed inotify queue, or inotify refused).

use std::{collections::HashSet, path::PathBuf, sync::Arc, time::Duration};

use enforcer_common::workload::{fault_scope, policy_scope};
use inotify::{Inotify, WatchMask};
use tokio::sync::Notify;
use tokio_stream::StreamExt as _;

use super::{Daemon, Shared, lock};
use crate::{
    bpf::BpfError,
    workload::{Owner, Pattern, Selection, Selectors, select, walk},
};

/// How often the whole tree is walked even without a change seen.
pub const RESCAN: Duration = Duration::from_secs(30);
/// How often it is walked when inotify cannot watch it.
const RESCAN_UNWATCHED: Duration = Duration::from_millis(250);

/// What the selectors matched, and what the watcher needs.
pub struct Workloads {
    /// Where the cgroup v2 hierarchy is mounted.
    mount: PathBuf,
    /// The last selection written into the kernel (`None`: none yet, so the
    /// first replaces whatever a previous daemon left).
    selection: Option<Selection>,
    /// Wakes the watcher when the selectors change.
    changed: Arc<Notify>,
}

impl Workloads {
    pub fn new(mount: PathBuf) -> Self {
        Self {
            mount,
            selection: None,
            changed: Arc::new(Notify::new()),
        }
    }

    /// How many cgroups each pattern of `owner` matches now.
    pub fn counts(&self, owner: Owner) -> Option<&[usize]> {
        self.selection.as_ref()?.counts_of(owner)
    }
}

/// Each running policy's, class's and chaos fault's selectors, with the
/// name the log gives their owner.
fn owners(d: &Daemon) -> impl Iterator<Item = (Owner, String, &[Pattern])> {
    let policies = d.policies.iter().map(|p| {
        let name = format!("policy \"{}\"", p.spec.name);
        (
            Owner::Scope(policy_scope(p.id)),
            name,
            p.spec.workloads.as_slice(),
        )
    });
    let classes = d.classes.iter().map(|c| {
        let name = format!("class \"{}\"", c.spec.name);
        (
            Owner::Class(c.spec.priority),
            name,
            c.spec.workloads.as_slice(),
        )
    });
    let faults = d.chaos.workload_selectors().map(|(slot, patterns)| {
        let name = format!("the chaos fault in slot {slot}");
        (Owner::Scope(fault_scope(slot)), name, patterns)
    });
    policies
        .chain(classes)
        .chain(faults)
        .filter(|(_, _, patterns)| !patterns.is_empty())
}

/// Walks, matches and writes what the running selectors match now; the
/// directories walked (what to watch).
pub fn sync(d: &mut Daemon) -> Result<Vec<PathBuf>, BpfError> {
    walk_and_write(d, false)
}

/// [`sync`] after the policies, the classes or the running experiments
/// changed: written now (the classes whatever their members, since their
/// shares may be new), each pattern's matches logged anew, and the watcher
/// told to watch what the selectors need.
pub fn changed(d: &mut Daemon) -> Result<(), BpfError> {
    walk_and_write(d, true)?;
    d.workloads.changed.notify_one();
    Ok(())
}

/// [`sync`], or with `changed` what [`changed`] writes.
fn walk_and_write(d: &mut Daemon, changed: bool) -> Result<Vec<PathBuf>, BpfError> {
    let (tree, selection) = {
        let owners: Vec<Selectors<'_>> = owners(d)
            .map(|(owner, _, patterns)| Selectors { owner, patterns })
            .collect();
        let patterns: Vec<&Pattern> = owners.iter().flat_map(|s| s.patterns).collect();
        let tree = walk(&d.workloads.mount, &patterns);
        let selection = select(&owners, &tree);
        (tree, selection)
    };
    let before = d.workloads.selection.as_ref();
    if before.is_none_or(|b| b.scopes != selection.scopes) {
        d.enforcer.maps_mut().workloads.replace(&selection.scopes)?;
    }
    if changed || before.is_none_or(|b| b.classes != selection.classes) {
        let members = selection.classes.iter().map(|(id, p)| (*id, *p));
        super::classes::write(&mut d.enforcer, &d.classes, members)?;
    }
    report(d, before.filter(|_| !changed), &selection);
    d.workloads.selection = Some(selection);
    Ok(tree.into_iter().map(|c| c.path).collect())
}

/// Logs each pattern whose matches went from none to some or back: a
/// pattern matching nothing is valid (its workloads may not exist yet), and
/// said.
fn report(d: &Daemon, before: Option<&Selection>, now: &Selection) {
    for (owner, name, patterns) in owners(d) {
        let Some(counts) = now.counts_of(owner) else {
            continue;
        };
        let was = before.and_then(|b| b.counts_of(owner));
        for (i, (pattern, n)) in patterns.iter().zip(counts).enumerate() {
            let had = was.and_then(|w| w.get(i)).copied();
            match (had, *n) {
                (None, 0) => tracing::warn!("{name}: workloads: {pattern} matches no cgroup (yet)"),
                (None | Some(0), n) if n > 0 => {
                    tracing::info!("{name}: workloads: {pattern} matches {n} cgroups");
                }
                (Some(h), 0) if h > 0 => {
                    tracing::info!("{name}: workloads: {pattern} matches no cgroup any more");
                }
                _ => {}
            }
        }
    }
}

/// [`sync`], a failure logged (the next walk tries again): the directories
/// walked, none after a failure.
fn sync_or_warn(d: &mut Daemon) -> Vec<PathBuf> {
    sync(d).unwrap_or_else(|e| {
        tracing::warn!("workloads: writing what the selectors match: {e}");
        Vec::new()
    })
}

/// Keeps the selection current: walks again whenever a watched directory
/// gains or loses a child, when the selectors change, and every [`RESCAN`].
pub async fn run(shared: Shared) {
    let changed = lock(&shared).workloads.changed.clone();
    loop {
        match watch(&shared, &changed).await {
            // The selectors changed: start over with a fresh set of watches.
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(
                    "workloads: cannot watch the cgroup tree ({e}); walking it every {}",
                    humantime::format_duration(RESCAN_UNWATCHED)
                );
                loop {
                    tokio::time::sleep(RESCAN_UNWATCHED).await;
                    sync_or_warn(&mut lock(&shared));
                }
            }
        }
    }
}

/// Watches the directories the walks go through until the selectors change.
async fn watch(shared: &Shared, changed: &Notify) -> std::io::Result<()> {
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    let mask = WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR;
    let mut watched = HashSet::new();
    let mut unwatched = HashSet::new();
    loop {
        let walked = sync_or_warn(&mut lock(shared));
        // A directory made before its parent was watched is found by
        // walking again once the new watches are in place.
        let mut added = false;
        for dir in &walked {
            match watches.add(dir, mask) {
                Ok(wd) => added |= watched.insert(wd),
                // Gone since the walk: the walk after its parent's event
                // leaves it out.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Out of watches (`fs.inotify.max_user_watches`), say: said
                // once per directory; the periodic walk still finds what
                // comes below it.
                Err(e) => {
                    if unwatched.insert(dir.clone()) {
                        tracing::warn!(
                            "workloads: cannot watch {} ({e}): workloads below it are found by the walk every {}",
                            dir.display(),
                            humantime::format_duration(RESCAN)
                        );
                    }
                }
            }
        }
        if added {
            continue;
        }
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                };
                forget_removed(&mut watched, event?);
                // A burst (a pod's slice, then its containers): one walk.
                while let Ok(Some(event)) =
                    tokio::time::timeout(Duration::ZERO, events.next()).await
                {
                    forget_removed(&mut watched, event?);
                }
            }
            () = changed.notified() => return Ok(()),
            () = tokio::time::sleep(RESCAN) => {}
        }
    }
}

/// Drops the watch of a directory that went (the kernel ends it).
fn forget_removed(
    watched: &mut HashSet<inotify::WatchDescriptor>,
    event: inotify::Event<std::ffi::OsString>,
) {
    if event.mask.contains(inotify::EventMask::IGNORED) {
        watched.remove(&event.wd);
    }
}

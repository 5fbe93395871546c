//! The namespaces the daemon knows, by cookie, kept current: discovered at
//! start, again every [`REFRESH_EVERY`], and sooner (at most every
//! [`MIN_GAP`]) when a cookie nobody knows shows up. Namespaces no process and
//! no name holds any more are forgotten (their handle closed, so the kernel can
//! free them), and remembered as gone.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs::File,
    io,
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::{Namespace, Selector, discover, own_cookie};

/// Discovery runs this often in any case (to forget namespaces that are gone).
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// And at most this often when asked to (an unknown cookie).
const MIN_GAP: Duration = Duration::from_secs(2);
/// Gone namespaces remembered (their inode stays on show) ...
const GONE_KEPT: usize = 4096;
/// ... and unknown cookies whose first sighting is remembered.
const ASKED_KEPT: usize = 65_536;

/// What the registry says about a cookie.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// A namespace on the host (the daemon's own included).
    Known(Arc<Namespace>),
    /// Known once; no process and no name holds it any more.
    Gone { inode: u64, name: Option<String> },
    /// Not known yet: a discovery has been asked for.
    Pending,
    /// Not found by a discovery that started after it was first asked about:
    /// a namespace that only open descriptors or a thread other than its
    /// process's first keep alive, or one this process may not enter.
    Unresolved,
}

/// How a destination's namespace is shown: `inode` and `name` where known, and
/// `status` — `host` (the daemon's own), `present`, `gone` or `unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub inode: Option<u64>,
    pub name: Option<String>,
    pub status: &'static str,
}

impl Label {
    /// The Prometheus label value: the inode, or `unknown`.
    pub fn metric(&self) -> String {
        self.inode
            .map_or_else(|| "unknown".to_owned(), |i| i.to_string())
    }
}

#[derive(Clone, Debug)]
struct Gone {
    inode: u64,
    names: Vec<String>,
}

#[derive(Default)]
struct State {
    /// By cookie.
    known: HashMap<u64, Arc<Namespace>>,
    gone: HashMap<u64, Gone>,
    /// `gone`'s cookies, oldest first, to bound it.
    gone_order: VecDeque<u64>,
    /// Unknown cookies: the discovery count when each was first asked about.
    asked: HashMap<u64, u64>,
    /// Discoveries started, and the latest one finished (their start counts).
    started: u64,
    finished: u64,
    started_at: Option<Instant>,
}

/// What a discovery changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub known: usize,
    pub new: usize,
    pub gone: usize,
    /// Namespaces found that could not be entered (permission).
    pub unreadable: usize,
}

pub struct Registry {
    own: u64,
    nsfs_dev: u64,
    state: Mutex<State>,
    /// One discovery at a time.
    discovering: Mutex<()>,
    wanted: Notify,
}

impl Registry {
    /// The calling thread's namespace (the daemon's: call it before any thread
    /// could have moved), and a first discovery of the others.
    pub fn new() -> io::Result<Self> {
        let handle = File::open("/proc/thread-self/ns/net")?;
        let meta = handle.metadata()?;
        let own = Namespace {
            cookie: own_cookie()?,
            inode: meta.ino(),
            names: Vec::new(),
            handle,
        };
        let registry = Self {
            own: own.cookie,
            nsfs_dev: meta.dev(),
            state: Mutex::new(State::default()),
            discovering: Mutex::new(()),
            wanted: Notify::new(),
        };
        registry.lock().known.insert(own.cookie, Arc::new(own));
        registry.refresh()?;
        Ok(registry)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cookie of the daemon's own namespace.
    pub fn own_cookie(&self) -> u64 {
        self.own
    }

    /// What is known about `cookie`; an unknown one asks for a discovery.
    pub fn resolve(&self, cookie: u64) -> Resolution {
        let mut st = self.lock();
        if let Some(ns) = st.known.get(&cookie) {
            return Resolution::Known(ns.clone());
        }
        if let Some(g) = st.gone.get(&cookie) {
            return Resolution::Gone {
                inode: g.inode,
                name: g.names.first().cloned(),
            };
        }
        if st.asked.len() >= ASKED_KEPT {
            let finished = st.finished;
            st.asked.retain(|_, at| *at >= finished);
        }
        let started = st.started;
        let asked_at = *st.asked.entry(cookie).or_insert(started);
        if st.finished > asked_at {
            return Resolution::Unresolved;
        }
        drop(st);
        self.wanted.notify_one();
        Resolution::Pending
    }

    /// How `cookie`'s namespace is shown.
    pub fn label(&self, cookie: u64) -> Label {
        match self.resolve(cookie) {
            Resolution::Known(ns) => Label {
                inode: Some(ns.inode),
                name: ns.name().map(str::to_owned),
                status: if cookie == self.own {
                    "host"
                } else {
                    "present"
                },
            },
            Resolution::Gone { inode, name } => Label {
                inode: Some(inode),
                name,
                status: "gone",
            },
            Resolution::Pending | Resolution::Unresolved => Label {
                inode: None,
                name: None,
                status: "unknown",
            },
        }
    }

    /// The cookies of the namespaces `selector` names, gone ones included (their
    /// destinations may still be tracked). Only what is known: see
    /// [`Self::find_now`].
    pub fn find(&self, selector: &Selector) -> Vec<u64> {
        let matches = |inode: u64, names: &[String]| match selector {
            Selector::Inode(i) => *i == inode,
            Selector::Name(n) => names.contains(n),
        };
        let st = self.lock();
        let mut cookies: Vec<u64> = st
            .known
            .values()
            .filter(|ns| matches(ns.inode, &ns.names))
            .map(|ns| ns.cookie)
            .chain(
                st.gone
                    .iter()
                    .filter(|(_, g)| matches(g.inode, &g.names))
                    .map(|(c, _)| *c),
            )
            .collect();
        cookies.sort_unstable();
        cookies
    }

    /// As [`Self::find`], discovering first when nothing known matches (a
    /// namespace created since the last discovery). Blocks for a discovery.
    pub fn find_now(&self, selector: &Selector) -> io::Result<Vec<u64>> {
        let cookies = self.find(selector);
        if !cookies.is_empty() {
            return Ok(cookies);
        }
        self.refresh()?;
        Ok(self.find(selector))
    }

    /// Discovers the host's namespaces now: learns the new ones' cookies,
    /// forgets those that are gone. Blocks (a walk of /proc and a thread that
    /// enters each new namespace).
    pub fn refresh(&self) -> io::Result<Changes> {
        let _one = self.discovering.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, known_inodes) = {
            let mut st = self.lock();
            st.started += 1;
            st.started_at = Some(Instant::now());
            let inodes: HashSet<u64> = st.known.values().map(|ns| ns.inode).collect();
            (st.started, inodes)
        };
        let files = discover::namespace_files(self.nsfs_dev);
        let new: Vec<(u64, File)> = files
            .iter()
            .filter(|(inode, _)| !known_inodes.contains(inode))
            .filter_map(|(inode, f)| Some((*inode, discover::open(&f.path, *inode)?)))
            .collect();
        let learned = discover::learn_cookies(new)?;

        let mut changes = Changes::default();
        let mut st = self.lock();
        let previous = std::mem::take(&mut st.known);
        for (cookie, ns) in previous {
            match files.get(&ns.inode) {
                Some(found) if found.names == ns.names => {
                    st.known.insert(cookie, ns);
                }
                Some(found) => {
                    // Renamed (or named): the same namespace under new names.
                    let renamed = ns.handle.try_clone().map(|handle| Namespace {
                        cookie,
                        inode: ns.inode,
                        names: found.names.clone(),
                        handle,
                    });
                    let kept = renamed.map_or(ns, Arc::new);
                    st.known.insert(cookie, kept);
                }
                None if cookie == self.own => {
                    st.known.insert(cookie, ns);
                }
                None => {
                    changes.gone += 1;
                    st.forget(cookie, &ns);
                }
            }
        }
        for (inode, handle, cookie) in learned {
            let Ok(cookie) = cookie else {
                changes.unreadable += 1;
                continue;
            };
            let names = files
                .get(&inode)
                .map(|f| f.names.clone())
                .unwrap_or_default();
            changes.new += 1;
            st.known.insert(
                cookie,
                Arc::new(Namespace {
                    cookie,
                    inode,
                    names,
                    handle,
                }),
            );
        }
        let State { known, asked, .. } = &mut *st;
        asked.retain(|cookie, _| !known.contains_key(cookie));
        st.finished = st.finished.max(seq);
        changes.known = st.known.len();
        Ok(changes)
    }

    /// Keeps the registry current: a discovery every [`REFRESH_EVERY`], or
    /// sooner when [`Self::resolve`] met an unknown cookie. Each runs on a
    /// thread of its own (it walks /proc and enters namespaces), never on the
    /// runtime's workers.
    pub async fn keep_fresh(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = self.wanted.notified() => {}
            }
            let since = self.lock().started_at.map_or(MIN_GAP, |at| at.elapsed());
            if since < MIN_GAP {
                tokio::time::sleep(MIN_GAP - since).await;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let registry = self.clone();
            let spawned = std::thread::Builder::new()
                .name("enforcer-netns".into())
                .spawn(move || {
                    let _ = tx.send(registry.refresh());
                });
            let result = match spawned {
                Ok(_) => rx
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("panicked"))),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!("discovering network namespaces: {e}");
            }
        }
    }
}

impl State {
    fn forget(&mut self, cookie: u64, ns: &Namespace) {
        self.gone.insert(
            cookie,
            Gone {
                inode: ns.inode,
                names: ns.names.clone(),
            },
        );
        self.gone_order.push_back(cookie);
        while self.gone_order.len() > GONE_KEPT {
            if let Some(oldest) = self.gone_order.pop_front() {
                self.gone.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_inode() -> u64 {
        std::fs::metadata("/proc/self/ns/net").unwrap().ino()
    }

    #[test]
    fn the_daemons_own_namespace_is_known_as_the_host() {
        let registry = Registry::new().unwrap();
        let label = registry.label(own_cookie().unwrap());
        assert_eq!(label.inode, Some(own_inode()));
        assert_eq!(label.status, "host");
        assert_eq!(label.metric(), own_inode().to_string());
        assert_eq!(
            registry.find(&Selector::Inode(own_inode())),
            [own_cookie().unwrap()]
        );
        assert!(registry.find(&Selector::Inode(1)).is_empty());
    }

    #[test]
    fn an_unknown_cookie_is_pending_until_a_discovery_has_looked_for_it() {
        let registry = Registry::new().unwrap();
        // Cookies count up from 1; this one is never handed out.
        let stranger = u64::MAX;
        assert!(matches!(registry.resolve(stranger), Resolution::Pending));
        assert!(matches!(registry.resolve(stranger), Resolution::Pending));
        registry.refresh().unwrap();
        assert!(matches!(registry.resolve(stranger), Resolution::Unresolved));
        let label = registry.label(stranger);
        assert_eq!((label.inode, label.status), (None, "unknown"));
        assert_eq!(label.metric(), "unknown");
    }
}

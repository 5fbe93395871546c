//! `[daemon]`: one serde struct, laid in three layers (the embedded defaults,
//! the file, then flags and `ENFORCER_*` variables), and one table of the
//! bounds its keys must keep. A new key is a field of [`DaemonConfig`], its
//! default and documentation in `default.toml`, and (when it has one) a line
//! of [`BOUNDS`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    ops::RangeInclusive,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_path_to_error::Segment;
use toml::Spanned;

use super::{
    Invalid, invalid,
    knobs::Lines,
    values::{self, Dur},
};
use crate::bpf::PacketHook;

/// `[daemon]` as a file writes it: each key's value, and where.
pub(super) type DaemonTable = BTreeMap<String, Spanned<toml::Value>>;

/// `[daemon]`, resolved and within [`BOUNDS`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Empty: the cgroup v2 root.
    pub cgroup: PathBuf,
    pub pin_root: PathBuf,
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    #[serde(deserialize_with = "values::socket_addr")]
    pub metrics: SocketAddr,
    pub state_dir: PathBuf,
    pub dests_capacity: u32,
    /// Capacity of the connection table: admitted connections open at once.
    pub conns_capacity: u32,
    /// Share of the destination map's capacity past which the daemon evicts
    /// idle destinations, least recently used first…
    pub dests_high_water: f64,
    /// …until the map holds at most this share again.
    pub dests_low_water: f64,
    pub max_series: u32,
    #[serde(with = "humantime_serde")]
    pub gc_idle: Duration,
    /// Packet plane: interfaces facing guests whose connections are enforced
    /// on their packets.
    pub interfaces: Vec<String>,
    #[serde(deserialize_with = "values::from_str")]
    pub packet_hook: PacketHook,
    #[serde(with = "humantime_serde")]
    pub flow_syn_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub flow_idle_timeout: Duration,
    pub flows_capacity: u32,
    /// Capacity of each of the kernel's two rule maps: the most rules a
    /// policy set may have.
    pub rules_capacity: u32,
    /// Healing: at most this many destinations probed at once.
    pub max_healers: u32,
    /// Keep what entering other network namespaces needs (`CAP_SYS_ADMIN`,
    /// `CAP_SYS_PTRACE`): naming them, healing from inside them.
    pub enter_namespaces: bool,
    /// Turn on BPF run-time statistics (host-wide) and keep what reading
    /// them needs (`CAP_SYS_ADMIN`).
    pub bpf_run_stats: bool,
    /// The programs log their rare paths (aya-log) and the daemon reads the
    /// lines into its own log.
    pub kernel_log: bool,
}

/// The largest destination or flow map: a capacity the kernel allocates up
/// front.
const MAX_MAP_CAPACITY: u32 = 16 * 1024 * 1024;

/// The most healers `daemon.max_healers` may allow: each is a task and, for
/// another namespace, a thread per probe.
const MAX_HEALERS_LIMIT: u32 = 65_536;

/// The largest `daemon.rules_capacity`: rule tries allocate per rule, so this
/// bounds what a policy set may make the kernel allocate (two sets at most).
const MAX_RULES_CAPACITY: u32 = 1 << 20;

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);

/// One bound: `Ok`, or what is wrong with the key's value.
type Check = fn(&DaemonConfig) -> Result<(), String>;

/// Declares [`BOUNDS`]: `key: bound`, where the bound is a [`Bound`] on the
/// field's type.
macro_rules! bounds {
    ($($key:ident: $bound:expr),* $(,)?) => {
        /// Every bound of `[daemon]`, checked in this order on the resolved
        /// section; the error names the key and the line that set it.
        const BOUNDS: &[(&str, Check)] = &[
            $((stringify!($key), |d| Bound::check(&$bound, &d.$key, d)),)*
        ];
    };
}

bounds! {
    cgroup: AbsolutePath { or_empty: true },
    pin_root: AbsolutePath { or_empty: false },
    pin_dir: Custom(below_pin_root),
    socket: AbsolutePath { or_empty: false },
    state_dir: AbsolutePath { or_empty: false },
    dests_capacity: 1..=MAX_MAP_CAPACITY,
    conns_capacity: Custom(slots),
    dests_high_water: Custom(share_of_capacity),
    dests_low_water: Custom(below_high_water),
    max_series: 1..=100_000,
    gc_idle: 10 * SECOND..=DAY,
    interfaces: Custom(interface_names),
    flow_syn_timeout: Duration::from_millis(100)..=10 * 60 * SECOND,
    flow_idle_timeout: SECOND..=7 * DAY,
    flows_capacity: 1..=MAX_MAP_CAPACITY,
    rules_capacity: 1..=MAX_RULES_CAPACITY,
    max_healers: 1..=MAX_HEALERS_LIMIT,
}

/// A bound on a value of type `T`; `all` is the section, for the bounds that
/// depend on another key.
trait Bound<T> {
    fn check(&self, value: &T, all: &DaemonConfig) -> Result<(), String>;
}

impl<T: PartialOrd + Written> Bound<T> for RangeInclusive<T> {
    fn check(&self, value: &T, _: &DaemonConfig) -> Result<(), String> {
        if self.contains(value) {
            return Ok(());
        }
        let (start, end) = (self.start().written(), self.end().written());
        Err(format!("must be {start}..={end}, got {}", value.written()))
    }
}

/// A value as a file writes it, for messages.
trait Written {
    fn written(&self) -> String;
}

impl Written for u32 {
    fn written(&self) -> String {
        self.to_string()
    }
}

impl Written for Duration {
    fn written(&self) -> String {
        Dur(*self).to_string()
    }
}

/// An absolute path; with `or_empty`, also the empty path (a default that
/// means "find it").
struct AbsolutePath {
    or_empty: bool,
}

impl Bound<PathBuf> for AbsolutePath {
    fn check(&self, value: &PathBuf, _: &DaemonConfig) -> Result<(), String> {
        if value.is_absolute() || (self.or_empty && value.as_os_str().is_empty()) {
            return Ok(());
        }
        Err(format!("{} is not an absolute path", value.display()))
    }
}

/// Any other bound: a function of the section, which reads the key itself.
struct Custom(Check);

impl<T> Bound<T> for Custom {
    fn check(&self, _: &T, all: &DaemonConfig) -> Result<(), String> {
        (self.0)(all)
    }
}

/// `conns_capacity` a power of two in range: a cookie's slot is its low bits.
fn slots(d: &DaemonConfig) -> Result<(), String> {
    let n = d.conns_capacity;
    if n.is_power_of_two() && n <= MAX_MAP_CAPACITY {
        return Ok(());
    }
    Err(format!(
        "must be a power of two up to {MAX_MAP_CAPACITY}, got {n}"
    ))
}

/// `pin_dir` strictly below `pin_root`.
fn below_pin_root(d: &DaemonConfig) -> Result<(), String> {
    if inside(&d.pin_dir, &d.pin_root) {
        return Ok(());
    }
    Err(format!(
        "{} is not a directory below the pin root {}",
        d.pin_dir.display(),
        d.pin_root.display()
    ))
}

/// Whether `path` is strictly below `root`, without `..` tricks.
fn inside(path: &Path, root: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.starts_with(root)
        && path != root
}

/// `dests_high_water` in (0, 1]…
fn share_of_capacity(d: &DaemonConfig) -> Result<(), String> {
    let high = d.dests_high_water;
    if high > 0.0 && high <= 1.0 {
        return Ok(());
    }
    Err(format!(
        "must be a share of the capacity in (0, 1], got {high}"
    ))
}

/// …and `dests_low_water` in (0, high): eviction needs a gap to work in, or
/// every scan would evict again.
fn below_high_water(d: &DaemonConfig) -> Result<(), String> {
    let low = d.dests_low_water;
    if low > 0.0 && low < d.dests_high_water {
        return Ok(());
    }
    Err(format!(
        "must be in (0, dests_high_water = {}), got {low}",
        d.dests_high_water
    ))
}

/// Interface names as the kernel accepts them (1..=15 bytes, no `/`, `:` or
/// whitespace), each once. Whether they exist is checked when attaching.
fn interface_names(d: &DaemonConfig) -> Result<(), String> {
    let mut seen = HashSet::new();
    for name in &d.interfaces {
        let valid = (1..=15).contains(&name.len())
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !valid {
            return Err(format!(
                "`{name}` is not an interface name (1..=15 bytes, no / : or spaces)"
            ));
        }
        if !seen.insert(name) {
            return Err(format!("`{name}` is listed twice"));
        }
    }
    Ok(())
}

/// Daemon settings from flags or `ENFORCER_*` variables, which win over the
/// file. Each field is named as the `[daemon]` key it replaces; `None` (not
/// serialized) leaves the key alone.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DaemonOverrides {
    pub cgroup: Option<PathBuf>,
    pub pin_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub metrics: Option<String>,
    pub interfaces: Option<Vec<String>>,
    pub dests_high_water: Option<f64>,
    pub dests_low_water: Option<f64>,
    pub max_healers: Option<u32>,
    pub kernel_log: Option<bool>,
}

impl DaemonConfig {
    /// The section from the embedded defaults (`base`, which set every key),
    /// the keys `file` sets over them (their lines from `lines`), then the
    /// overrides; checked against [`BOUNDS`].
    pub(super) fn resolve(
        base: DaemonTable,
        file: DaemonTable,
        lines: &Lines<'_>,
        overrides: &DaemonOverrides,
    ) -> Result<Self, Invalid> {
        let mut table: toml::Table = base.into_iter().map(|(k, v)| (k, v.into_inner())).collect();
        let mut set_at = HashMap::new();
        for (key, value) in file {
            set_at.insert(key.clone(), lines.of(&value));
            table.insert(key, value.into_inner());
        }
        // Every key the file sets must have its type, even one a flag then
        // replaces: the file is checked as `config check` sees it.
        let mut daemon = Self::deserialize_layers(table.clone(), &set_at)?;
        // `None` fields are left out of a TOML table.
        let overrides = toml::Table::try_from(overrides).or_else(|e| {
            invalid(
                "daemon",
                None,
                format!("a flag or ENFORCER_* variable: {e}"),
            )
        })?;
        if !overrides.is_empty() {
            for (key, value) in overrides {
                set_at.remove(&key);
                table.insert(key, value);
            }
            daemon = Self::deserialize_layers(table, &set_at)?;
        }
        for (key, check) in BOUNDS {
            if let Err(message) = check(&daemon) {
                let line = set_at.get(*key).copied().flatten();
                return invalid(&format!("daemon.{key}"), line, message);
            }
        }
        Ok(daemon)
    }

    /// The layered table as the section; an error names the key at fault.
    fn deserialize_layers(
        table: toml::Table,
        set_at: &HashMap<String, Option<usize>>,
    ) -> Result<Self, Invalid> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).or_else(|e| {
            let key = match e.path().iter().next() {
                Some(Segment::Map { key }) => key.clone(),
                _ => String::new(),
            };
            let field = match key.as_str() {
                "" => "daemon".to_owned(),
                key => format!("daemon.{key}"),
            };
            let line = set_at.get(&key).copied().flatten();
            invalid(&field, line, e.into_inner().message())
        })
    }
}

//! Policy changes made at runtime (`enforcer policy set|rm|apply`) survive a
//! daemon restart: the running set is saved to `<state_dir>/policies.toml`,
//! stamped with a fingerprint of the configuration file it was made on top of.
//! A restart on the same file restores it; a changed file, or a reload, means
//! the operator has spoken again, and the saved set is dropped.
//!
//! The file is root's, in a directory of the daemon's own: written 0600 and
//! never through a link (see [`private_dir`]).

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use std::hash::Hasher;

use serde::Serialize;

use super::private_dir;
use crate::config::{Config, PolicySpec, values::Mode};

const FILE: &str = "policies.toml";
const STAMP: &str = "# config-fingerprint = ";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// 64-bit FNV-1a of the configuration file's text: stable across builds and
/// versions (unlike `std`'s hashers), as a stamp written to disk must be.
pub fn fingerprint(text: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    // `write`, not `Hash::hash`: the bytes alone, with no length or
    // terminator mixed in.
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Saves `specs` (a temporary file renamed over the old one: never half
/// written).
pub fn save(dir: &Path, config_fingerprint: u64, specs: &[PolicySpec]) -> io::Result<()> {
    private_dir::create(dir, "daemon.state_dir").map_err(io::Error::other)?;
    let text = format!(
        "{STAMP}{config_fingerprint}\n# Written by enforcer: the policies as changed at runtime.\n\n{}",
        to_toml(specs)
    );
    private_dir::replace_file(&path(dir), text.as_bytes())
}

/// The saved policies, if they were made on top of this configuration file.
pub fn load(
    dir: &Path,
    config: &Config,
    config_fingerprint: u64,
) -> Result<Option<Vec<PolicySpec>>, String> {
    let text = match private_dir::read_file(&path(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path(dir).display())),
    };
    let stamp = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(STAMP))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if stamp != Some(config_fingerprint) {
        discard(dir);
        return Ok(None);
    }
    config
        .parse_policies(&text, &path(dir).display().to_string())
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

/// Drops the saved policies (the configuration file is authoritative again).
pub fn discard(dir: &Path) {
    let _ = fs::remove_file(path(dir));
}

/// One `[[policy]]` table as saved: every setting written out, so the set
/// reads back the same whatever the configuration's defaults become.
#[derive(Serialize)]
struct Table<'a> {
    name: &'a str,
    #[serde(rename = "match")]
    rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<String>,
    mode: Mode,
    failure_threshold: u32,
    failure_rate: f64,
    min_attempts: u32,
    #[serde(with = "humantime_serde")]
    window: Duration,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    slow_connect: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    open: Duration,
    #[serde(with = "humantime_serde")]
    open_max: Duration,
    jitter: f64,
    #[serde(with = "humantime_serde")]
    rejitter: Duration,
    half_open_probes: u32,
    close_after: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pending: Option<u32>,
    errno: String,
    max_open_percent: u32,
    #[serde(with = "humantime_serde")]
    trip_decay: Duration,
    heal: bool,
    #[serde(with = "humantime_serde")]
    heal_interval: Duration,
}

impl<'a> From<&'a PolicySpec> for Table<'a> {
    fn from(p: &'a PolicySpec) -> Self {
        Self {
            name: &p.name,
            rules: p.rules.iter().map(ToString::to_string).collect(),
            cgroup: p.cgroup.as_ref().map(|c| c.display().to_string()),
            mode: p.mode,
            failure_threshold: p.failure_threshold,
            failure_rate: p.failure_rate,
            min_attempts: p.min_attempts,
            window: p.window,
            slow_connect: p.slow_connect,
            connect_timeout: p.connect_timeout,
            open: p.open,
            open_max: p.open_max,
            jitter: p.jitter,
            rejitter: p.rejitter,
            half_open_probes: p.half_open_probes,
            close_after: p.close_after,
            max_connections: p.max_connections,
            max_pending: p.max_pending,
            errno: p.errno.to_string(),
            max_open_percent: p.max_open_percent,
            trip_decay: p.trip_decay,
            heal: p.heal,
            heal_interval: p.heal_interval,
        }
    }
}

/// `[[policy]]` tables that parse back to exactly `specs`.
pub fn to_toml(specs: &[PolicySpec]) -> String {
    #[derive(Serialize)]
    struct File<'a> {
        policy: Vec<Table<'a>>,
    }
    let file = File {
        policy: specs.iter().map(Table::from).collect(),
    };
    // Plain data with string keys: serialising it cannot fail.
    toml::to_string(&file).expect("policy tables serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_through_the_saved_file() {
        let example = include_str!("../../dist/enforcer.toml");
        let config = Config::parse(example, "example").unwrap();
        let text = to_toml(&config.policies);
        assert_eq!(
            config.parse_policies(&text, "saved").unwrap(),
            config.policies
        );
    }

    #[test]
    fn a_changed_configuration_drops_the_saved_set() {
        let dir = std::env::temp_dir().join(format!("enforcer-saved-{}", std::process::id()));
        let config = Config::embedded();
        save(&dir, 1, &config.policies).unwrap();
        assert_eq!(
            load(&dir, &config, 1).unwrap(),
            Some(config.policies.clone())
        );
        assert_eq!(load(&dir, &config, 2).unwrap(), None);
        assert!(!path(&dir).exists(), "dropped");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The stamp in every saved file: a new value would drop every operator's
    /// saved policies on upgrade. Pinned to the values the hand-written FNV-1a
    /// of earlier versions gave (and FNV-1a's published test vectors).
    #[test]
    fn the_fingerprint_never_changes() {
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            fingerprint("[daemon]\nstate_dir = \"/var/lib/enforcer\"\n"),
            2_745_381_065_280_122_410
        );
    }
}

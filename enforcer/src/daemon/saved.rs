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
};

use std::hash::Hasher;

use serde::Serialize;

use super::private_dir;
use crate::{
    api::PolicySettings,
    config::{Config, PolicySpec},
};

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

/// `[[policy]]` tables that parse back to exactly `specs`.
pub fn to_toml(specs: &[PolicySpec]) -> String {
    #[derive(Serialize)]
    struct File {
        policy: Vec<PolicySettings>,
    }
    let file = File {
        policy: specs.iter().map(PolicySettings::from).collect(),
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
    fn workload_selectors_round_trip() {
        let config = Config::parse(
            "[[policy]]\nname = \"pods\"\nmatch = [\"10.0.0.0/8:443\"]\n\
             workloads = [\"/sys/fs/cgroup/kubepods.slice/*/kubepods-*pod*.slice\"]\n",
            "t",
        )
        .unwrap();
        let text = to_toml(&config.policies);
        let back = config.parse_policies(&text, "saved").unwrap();
        assert_eq!(back, config.policies);
        assert_eq!(back[0].workloads.len(), 1, "{text}");
    }

    #[test]
    fn an_auto_policy_round_trips_with_its_adaptive_table() {
        // Defaults that differ from the embedded ones: the saved table must
        // not lean on them.
        let config = Config::parse(
            "[defaults.adaptive]\nalgorithm = \"vegas\"\nmax = 300\n\n[[policy]]\nname = \"api\"\nmatch = [\"10.0.1.0/24:8080\"]\nmax_connections = \"auto\"\nmax_pending = 8\n[policy.adaptive]\nmin = 4\ninitial = 16\ninterval = \"1s 500ms\"\nsmoothing = 0.35\ntolerance = 1.1\nsignal = \"response\"\n\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\nmax_connections = 10\n",
            "config",
        )
        .unwrap();
        let text = to_toml(&config.policies);
        assert!(
            text.contains("max_connections = \"auto\"") && text.contains("[policy.adaptive]"),
            "{text}"
        );
        let read = config.parse_policies(&text, "saved").unwrap();
        assert_eq!(read, config.policies);
        assert_eq!(to_toml(&read), text, "the same file again");
        // Read under other defaults, it is still the same policy.
        let other = Config::parse(
            "[defaults.adaptive]\nalgorithm = \"aimd\"\nmax = 999\n",
            "other",
        )
        .unwrap();
        assert_eq!(
            other.parse_policies(&text, "saved").unwrap(),
            config.policies
        );
    }

    #[test]
    fn outlier_tables_round_trip_exactly() {
        // [defaults.outlier] unlike the embedded one; `db` sets every key,
        // `cache` one (the rest inherited), `web` has no table (off).
        let config = Config::parse(
            "[defaults.outlier]\ninterval = \"20s\"\nsuccess_rate_stdev = 1.5\nlatency_factor = 4.0\nbase_ejection = \"1m\"\n\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.0/24:5432\"]\nmax_open_percent = 30\n[policy.outlier]\ninterval = \"1m 30s\"\nsuccess_rate_stdev = 1.37\nsuccess_rate_min_hosts = 3\nsuccess_rate_min_requests = 250\nfailure_percentage = 90\nfailure_percentage_min_hosts = 4\nfailure_percentage_min_requests = 75\nlatency_factor = 2.75\nlatency_min_requests = 33\nbase_ejection = \"45s\"\nmax_ejection = \"2h 30m\"\n\n[[policy]]\nname = \"cache\"\nmatch = [\"10.0.2.0/24:6379\"]\noutlier.failure_percentage = 85\n\n[[policy]]\nname = \"web\"\nmatch = [\"10.0.3.0/24:443\"]\n",
            "config",
        )
        .unwrap();
        let [db, cache, web] = &config.policies[..] else {
            panic!()
        };
        assert_eq!(db.outlier.unwrap().success_rate_stdev, 1.37);
        assert_eq!(cache.outlier.unwrap().latency_factor, Some(4.0));
        assert_eq!(web.outlier, None);
        let text = to_toml(&config.policies);
        assert_eq!(text.matches("[policy.outlier]").count(), 2, "{text}");
        let read = config.parse_policies(&text, "saved").unwrap();
        assert_eq!(read, config.policies);
        assert_eq!(to_toml(&read), text, "the same file again");
        // Read under other defaults, they are still the same policies (an
        // unset detector is written as no key: under the configuration that
        // made it, no default sets it, or the policy would have it).
        let other = Config::parse(
            "[defaults.outlier]\ninterval = \"1h\"\nsuccess_rate_min_hosts = 99\nmax_ejection = \"24h\"\n",
            "other",
        )
        .unwrap();
        assert_eq!(
            other.parse_policies(&text, "saved").unwrap(),
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

//! Policy changes made at runtime (`enforcer policy set|rm|apply`) survive a
//! daemon restart: the running set is saved to `<state_dir>/policies.toml`,
//! stamped with a fingerprint of the configuration file it was made on top of.
//! A restart on the same file restores it; a changed file, or a reload, means
//! the operator has spoken again, and the saved set is dropped.
//!
//! The file is root's, in a directory of the daemon's own: written 0600 and
//! never through a link (see [`private_dir`]).

use std::{
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use super::private_dir;
use crate::config::{Config, PolicySpec, values::Dur};

const FILE: &str = "policies.toml";
const STAMP: &str = "# config-fingerprint = ";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// FNV-1a of the configuration file's text: stable across builds and versions.
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    let mut out = String::new();
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    for p in specs {
        let matches: Vec<String> = p.rules.iter().map(|r| q(&r.to_string())).collect();
        let mode = match p.mode {
            crate::config::values::Mode::Enforce => "enforce",
            crate::config::values::Mode::Observe => "observe",
            crate::config::values::Mode::Off => "off",
        };
        let _ = writeln!(
            out,
            "[[policy]]\nname = {}\nmatch = [{}]",
            q(&p.name),
            matches.join(", ")
        );
        if let Some(c) = &p.cgroup {
            let _ = writeln!(out, "cgroup = {}", q(&c.display().to_string()));
        }
        let d = |v: std::time::Duration| q(&Dur(v).to_string());
        let _ = writeln!(
            out,
            "mode = {}\nfailure_threshold = {}\nfailure_rate = {:?}\nmin_attempts = {}\nwindow = {}\nopen = {}\nopen_max = {}\njitter = {:?}\nrejitter = {}\nhalf_open_probes = {}\nclose_after = {}\nerrno = {}\nmax_open_percent = {}\ntrip_decay = {}\nheal = {}\nheal_interval = {}",
            q(mode),
            p.failure_threshold,
            p.failure_rate,
            p.min_attempts,
            d(p.window),
            d(p.open),
            d(p.open_max),
            p.jitter,
            d(p.rejitter),
            p.half_open_probes,
            p.close_after,
            q(&p.errno.to_string()),
            p.max_open_percent,
            d(p.trip_decay),
            p.heal,
            d(p.heal_interval),
        );
        for (key, value) in [
            ("slow_connect", p.slow_connect),
            ("connect_timeout", p.connect_timeout),
        ] {
            if let Some(v) = value {
                let _ = writeln!(out, "{key} = {}", d(v));
            }
        }
        for (key, value) in [
            ("max_connections", p.max_connections),
            ("max_pending", p.max_pending),
        ] {
            if let Some(v) = value {
                let _ = writeln!(out, "{key} = {v}");
            }
        }
        out.push('\n');
    }
    out
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
}

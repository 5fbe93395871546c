//! The configuration file: TOML, every key documented in `default.toml`, which is
//! embedded in the binary and used when no file is given.

mod duration;

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub use duration::parse_duration;

/// The embedded default configuration, also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where `enforcer run` looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/enforcer/enforcer.toml";

/// A configuration that could not be used. The message names the field (and, for
/// files, the line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The resolved configuration: the file laid over the embedded defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Empty: the cgroup v2 root.
    pub cgroup: PathBuf,
    pub dests_capacity: u32,
    pub report_interval: Duration,
}

/// The file as written: every key optional, unknown keys refused. Parsed straight
/// from the user's text so that errors carry the user's line numbers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    daemon: FileDaemon,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDaemon {
    cgroup: Option<PathBuf>,
    dests_capacity: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    report_interval: Option<Duration>,
}

impl FileConfig {
    /// Lays `self` over `base`.
    fn over(self, base: Config) -> Config {
        let (d, b) = (self.daemon, base.daemon);
        Config {
            daemon: DaemonConfig {
                cgroup: d.cgroup.unwrap_or(b.cgroup),
                dests_capacity: d.dests_capacity.unwrap_or(b.dests_capacity),
                report_interval: d.report_interval.unwrap_or(b.report_interval),
            },
        }
    }
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Self {
        let file: FileConfig =
            toml::from_str(DEFAULT_TOML).expect("the embedded defaults parse (unit-tested)");
        let d = file.daemon;
        let missing = "the embedded defaults set every key (unit-tested)";
        Self {
            daemon: DaemonConfig {
                cgroup: d.cgroup.expect(missing),
                dests_capacity: d.dests_capacity.expect(missing),
                report_interval: d.report_interval.expect(missing),
            },
        }
    }

    /// Parses `text`, lays it over the embedded defaults and validates the result;
    /// `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let config = file.over(Self::embedded());
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Reads `path`, or returns the embedded defaults when `path` is the default
    /// location and does not exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) => {
                Ok(Self::embedded())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let d = &self.daemon;
        if d.dests_capacity == 0 {
            return Err("daemon.dests_capacity: must be at least 1".into());
        }
        if d.dests_capacity > 16 * 1024 * 1024 {
            return Err("daemon.dests_capacity: at most 16777216".into());
        }
        if !d.cgroup.as_os_str().is_empty() && !d.cgroup.is_absolute() {
            return Err(format!(
                "daemon.cgroup: {} is not an absolute path",
                d.cgroup.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded();
        assert_eq!(c.daemon.cgroup, PathBuf::new());
        assert_eq!(c.daemon.report_interval, Duration::from_secs(60));
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let c = Config::parse("[daemon]\ndests_capacity = 10\n", "t").unwrap();
        assert_eq!(c.daemon.dests_capacity, 10);
        assert_eq!(c.daemon.report_interval, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = Config::parse("[daemon]\n\nbogus = 1\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn zero_capacity_is_rejected_by_name() {
        let err = Config::parse("[daemon]\ndests_capacity = 0\n", "t").unwrap_err();
        assert!(err.to_string().contains("daemon.dests_capacity"), "{err}");
    }

    #[test]
    fn bad_duration_is_rejected_by_name() {
        let err = Config::parse("[daemon]\nreport_interval = \"soon\"\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("report_interval") && msg.contains("line 2"),
            "{msg}"
        );
    }
}

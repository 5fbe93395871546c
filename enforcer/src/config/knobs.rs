//! Policy settings ("knobs"): declared once, read from `[defaults]` and from each
//! `[[policy]]`, laid over each other (policy > `[defaults]` of the file >
//! embedded defaults), each remembering the line it came from so that a bad value
//! is reported where it was written.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::values::{Backoff, Dur, Errno, Learnable, MaxConnections, Mode};

/// A resolved setting and the line of the file that set it (`None`: the embedded
/// defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub line: Option<usize>,
}

/// Maps byte offsets of a TOML text to 1-based line numbers.
pub struct Lines<'a>(pub Option<&'a str>);

impl Lines<'_> {
    pub fn of<T>(&self, spanned: &Spanned<T>) -> Option<usize> {
        let text = self.0?;
        let start = spanned.span().start.min(text.len());
        Some(text[..start].bytes().filter(|b| *b == b'\n').count() + 1)
    }
}

macro_rules! knobs {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty ),* $(,)?) => {
        /// Policy settings as written in `[defaults]`: every one optional.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct KnobsFile {
            $( $(#[doc = $doc])* #[serde(default)] pub $name: Option<Spanned<$ty>>, )*
            /// `[defaults.adaptive]`, `[policy.adaptive]`.
            #[serde(default)]
            pub adaptive: Option<Spanned<AdaptiveFile>>,
            /// `[defaults.outlier]`, `[policy.outlier]`.
            #[serde(default)]
            pub outlier: Option<Spanned<OutlierFile>>,
        }

        /// A `[[policy]]` as written.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PolicyFile {
            pub name: Spanned<String>,
            #[serde(rename = "match")]
            pub matches: Spanned<Vec<Spanned<String>>>,
            #[serde(default)]
            pub cgroup: Option<Spanned<PathBuf>>,
            #[serde(default)]
            pub workloads: Option<Spanned<Vec<Spanned<String>>>>,
            $( #[serde(default)] pub $name: Option<Spanned<$ty>>, )*
            #[serde(default)]
            pub adaptive: Option<Spanned<AdaptiveFile>>,
            /// Present (even empty, or as dotted `outlier.*` keys): the
            /// policy's outlier detection is on.
            #[serde(default)]
            pub outlier: Option<Spanned<OutlierFile>>,
        }

        impl PolicyFile {
            /// The policy's own settings.
            pub fn knobs(&self) -> KnobsFile {
                KnobsFile {
                    $( $name: self.$name.clone(), )*
                    adaptive: self.adaptive.clone(),
                    outlier: self.outlier.clone(),
                }
            }
        }

        /// Settings after layering; `None`: set nowhere (an optional feature off).
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct Knobs {
            $( pub $name: Option<Setting<$ty>>, )*
            /// Laid over field by field, as the others.
            pub adaptive: AdaptiveKnobs,
            /// Laid over field by field; whether a policy detects outliers at
            /// all is its own table's presence, not a setting.
            pub outlier: OutlierKnobs,
        }

        impl Knobs {
            /// Lays the settings `file` makes over `self`.
            pub fn overlay(&mut self, file: &KnobsFile, lines: &Lines<'_>) {
                $(
                    if let Some(v) = &file.$name {
                        self.$name = Some(Setting { value: v.get_ref().clone(), line: lines.of(v) });
                    }
                )*
                if let Some(table) = &file.adaptive {
                    self.adaptive.overlay(table.get_ref(), lines);
                }
                if let Some(table) = &file.outlier {
                    self.outlier.overlay(table.get_ref(), lines);
                }
            }
        }
    };
}

/// A table of settings laid over each other field by field: `$file` as
/// written, `$resolved` after layering.
macro_rules! table {
    ($file:ident, $resolved:ident, { $( $name:ident : $ty:ty ),* $(,)? }) => {
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $file {
            $( #[serde(default)] pub $name: Option<Spanned<$ty>>, )*
        }

        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $resolved {
            $( pub $name: Option<Setting<$ty>>, )*
        }

        impl $resolved {
            /// Lays the settings `file` makes over `self`.
            pub fn overlay(&mut self, file: &$file, lines: &Lines<'_>) {
                $(
                    if let Some(v) = &file.$name {
                        self.$name = Some(Setting { value: v.get_ref().clone(), line: lines.of(v) });
                    }
                )*
            }
        }
    };
}

knobs! {
    mode: Mode,
    failure_threshold: u32,
    failure_rate: Learnable<f64>,
    min_attempts: u32,
    window: Dur,
    slow_connect: Learnable<Dur>,
    baseline_window: Dur,
    sensitivity: f64,
    failure_rate_min: f64,
    failure_rate_max: f64,
    slow_connect_factor: f64,
    connect_timeout: Dur,
    open: Dur,
    open_max: Dur,
    backoff: Backoff,
    jitter: f64,
    rejitter: Dur,
    half_open_probes: u32,
    close_after: u32,
    max_connections: MaxConnections,
    max_pending: u32,
    errno: Errno,
    max_open_percent: u32,
    trip_decay: Dur,
    heal: bool,
    heal_interval: Dur,
}

// How an adaptive policy (`max_connections = "auto"`) learns its caps.
// `algorithm` and `signal` are names, checked when a policy is resolved.
table!(AdaptiveFile, AdaptiveKnobs, {
    algorithm: String,
    min: u32,
    max: u32,
    initial: u32,
    interval: Dur,
    smoothing: f64,
    tolerance: f64,
    signal: String,
});

// How a policy with a `[policy.outlier]` table finds the outliers among its
// destinations (`crate::outlier::Settings`). Bounds are checked when a policy
// is resolved.
table!(OutlierFile, OutlierKnobs, {
    interval: Dur,
    success_rate_stdev: f64,
    success_rate_min_hosts: u32,
    success_rate_min_requests: u64,
    failure_percentage: u32,
    failure_percentage_min_hosts: u32,
    failure_percentage_min_requests: u64,
    latency_factor: f64,
    latency_min_requests: u64,
    base_ejection: Dur,
    max_ejection: Dur,
});

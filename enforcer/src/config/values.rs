//! Value types of the configuration file: durations, modes, errnos, shares,
//! and how strings become the types that parse them.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use enforcer_common::policy::Signal;
use serde::{Deserialize, Deserializer, de};

use crate::adaptive::Algorithm;

/// A duration written as humantime: `500ms`, `30s`, `5m`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Dur(#[serde(with = "humantime_serde")] pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// A value written as a string its type parses (`#[serde(deserialize_with)]`).
pub fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err: fmt::Display>,
{
    String::deserialize(d)?.parse().map_err(de::Error::custom)
}

/// An address and port (`#[serde(deserialize_with)]`).
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|_| de::Error::custom(format!("`{text}` is not an address like 127.0.0.1:9464")))
}

/// `max_connections` as written: a number (checked against its bounds when
/// the policy is resolved) or a word, of which only `"auto"` is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxConnections {
    Number(i64),
    Word(String),
}

impl<'de> Deserialize<'de> for MaxConnections {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = MaxConnections;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"auto\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MaxConnections::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MaxConnections::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaxConnections::Word(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A threshold written as a value or as `"auto"`: learned per destination
/// (`failure_rate`, `slow_connect`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Learnable<T> {
    Fixed(T),
    Auto,
}

impl<T> Learnable<T> {
    /// The same setting with its fixed value mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Learnable<U> {
        match self {
            Self::Fixed(v) => Learnable::Fixed(f(v)),
            Self::Auto => Learnable::Auto,
        }
    }
}

impl<T: serde::Serialize> serde::Serialize for Learnable<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(v) => v.serialize(s),
            Self::Auto => s.serialize_str(AUTO),
        }
    }
}

impl<'de> Deserialize<'de> for Learnable<f64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Learnable<f64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a share like 0.5 or \"auto\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Learnable::Fixed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Learnable::Fixed(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Learnable::Fixed(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == AUTO {
                    return Ok(Learnable::Auto);
                }
                Err(E::custom(format!(
                    "`{v}` is neither a share like 0.5 nor \"{AUTO}\""
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for Learnable<Dur> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == AUTO {
            return Ok(Self::Auto);
        }
        humantime::parse_duration(&text)
            .map(|d| Self::Fixed(Dur(d)))
            .map_err(|e| {
                de::Error::custom(format!(
                    "`{text}` is neither a duration like 1s ({e}) nor \"{AUTO}\""
                ))
            })
    }
}

/// The word that makes `max_connections` adaptive.
pub const AUTO: &str = "auto";

/// The adaptive algorithms, by name.
pub const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("gradient2", Algorithm::Gradient2),
    ("vegas", Algorithm::Vegas),
    ("aimd", Algorithm::Aimd),
];

/// What an adaptive policy learns from, by name.
pub const SIGNALS: [(&str, Signal); 3] = [
    ("handshake", Signal::Handshake),
    ("response", Signal::Response),
    ("lifetime", Signal::Lifetime),
];

/// The name `value` has in `names`.
pub fn name_of<T: PartialEq>(names: &[(&'static str, T)], value: &T) -> &'static str {
    names
        .iter()
        .find(|(_, v)| v == value)
        .map_or("?", |(name, _)| name)
}

/// A policy's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Observe,
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Enforce => "enforce",
            Self::Observe => "observe",
            Self::Off => "off",
        })
    }
}

impl Mode {
    pub const fn kernel(self) -> enforcer_common::policy::Mode {
        use enforcer_common::policy::Mode;
        match self {
            Self::Enforce => Mode::Enforce,
            Self::Observe => Mode::Observe,
            Self::Off => Mode::Off,
        }
    }
}

/// How a policy's open periods grow with consecutive trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// `open · 2^k`.
    #[default]
    Exponential,
    /// `open · (k + 1)`.
    Linear,
    /// `open · F(k + 1)`: 1, 1, 2, 3, 5, 8, …
    Fibonacci,
    /// Each step drawn from `[open, 3 × the previous step]` ("decorrelated
    /// jitter"): the spread is the draw itself.
    Decorrelated,
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exponential => "exponential",
            Self::Linear => "linear",
            Self::Fibonacci => "fibonacci",
            Self::Decorrelated => "decorrelated",
        })
    }
}

/// The errnos a rejection may use, by name.
pub const ERRNOS: [(&str, u32); 7] = [
    ("ECONNREFUSED", libc::ECONNREFUSED as u32),
    ("ECONNRESET", libc::ECONNRESET as u32),
    ("ECONNABORTED", libc::ECONNABORTED as u32),
    ("ETIMEDOUT", libc::ETIMEDOUT as u32),
    ("EHOSTUNREACH", libc::EHOSTUNREACH as u32),
    ("ENETUNREACH", libc::ENETUNREACH as u32),
    ("EAGAIN", libc::EAGAIN as u32),
];

/// An errno for rejections, written by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub u32);

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ERRNOS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| Errno(*v))
            .ok_or_else(|| {
                let names: Vec<&str> = ERRNOS.iter().map(|(n, _)| *n).collect();
                de::Error::custom(format!(
                    "unknown errno `{name}`; one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ERRNOS.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

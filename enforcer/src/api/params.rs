//! What requests carry in their query: parsed once, by serde (the daemon's
//! `Query` extractor) and by clap (the CLI's value parsers), so a handler
//! only ever sees checked values.

use std::{fmt, net::SocketAddr, ops::RangeInclusive, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::netns::Selector;

/// A destination: an address and a port other than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest(pub SocketAddr);

impl FromStr for Dest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let addr: SocketAddr = text.parse().map_err(|_| {
            format!("dest: `{text}` is not an address like 10.0.0.5:5432 or [fd00::1]:443")
        })?;
        if addr.port() == 0 {
            return Err(format!("dest: `{text}`: port must be 1..=65535"));
        }
        Ok(Self(addr))
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How long an override lasts: 1 s to 7 days, written as humantime
/// (`30s`, `5m`, `1h 30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lasting(pub Duration);

impl Lasting {
    pub const MIN: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(7 * 86_400);
}

impl FromStr for Lasting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        duration_within("for", text, Self::MIN..=Self::MAX).map(Self)
    }
}

/// `text` as a humantime duration (`500ms`, `30s`, `1h 30m`) within
/// `range`; the error names `field`.
pub fn duration_within(
    field: &str,
    text: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{field}: `{text}`: {e}"))?;
    if !range.contains(&d) {
        return Err(format!(
            "{field}: `{text}` must be {}..={}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        ));
    }
    Ok(d)
}

impl fmt::Display for Lasting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// Serde through `FromStr`/`Display`, so a query value and a CLI argument
/// are checked by the same code.
macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str!(Dest, Lasting, Selector);

/// `GET /v1/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// This address and port, in whichever namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<Dest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Each destination's counts of this priority class alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// `POST /v1/trip`, `POST /v1/disable`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideQuery {
    pub dest: Dest,
    /// Until `reset` without it.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub lasting: Option<Lasting>,
}

/// `POST /v1/reset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetQuery {
    pub dest: Dest,
    /// Only in this namespace (its override, which applies in every
    /// namespace, stays); in every namespace without it (the override goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Selector>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_through_their_encoding() {
        let query = OverrideQuery {
            dest: "[fd00::1]:443".parse().unwrap(),
            lasting: Some("1h 30m".parse().unwrap()),
        };
        let encoded = serde_urlencoded::to_string(&query).unwrap();
        assert_eq!(encoded, "dest=%5Bfd00%3A%3A1%5D%3A443&for=1h+30m");
        assert_eq!(serde_urlencoded::from_str(&encoded), Ok(query));
        let status: StatusQuery =
            serde_urlencoded::from_str("netns=blue&policy=db&class=batch").unwrap();
        assert_eq!(status.netns, Some(Selector::Name("blue".into())));
        assert_eq!(status.class.as_deref(), Some("batch"));
        assert_eq!(
            serde_urlencoded::from_str::<StatusQuery>("").unwrap(),
            StatusQuery::default()
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let refused = |q: &str| {
            serde_urlencoded::from_str::<OverrideQuery>(q)
                .unwrap_err()
                .to_string()
        };
        assert!(refused("dest=10.0.0.5:0").starts_with("dest:"));
        assert!(refused("dest=10.0.0.5").starts_with("dest:"));
        assert!(refused("dest=10.0.0.5:1&for=8days").starts_with("for:"));
        assert!(refused("dest=10.0.0.5:1&for=500ms").starts_with("for:"));
        assert!(refused("dest=10.0.0.5:1&for=soon").starts_with("for:"));
        assert!(refused("for=1s").contains("dest"));
        assert!(refused("dest=10.0.0.5:1&x=1").contains("unknown field"));
        assert!(
            serde_urlencoded::from_str::<StatusQuery>("netns=..")
                .unwrap_err()
                .to_string()
                .starts_with("netns:")
        );
    }

    #[test]
    fn a_duration_out_of_its_range_names_the_field_and_the_range() {
        assert_eq!(
            "8days".parse::<Lasting>(),
            Err("for: `8days` must be 1s..=7days".to_owned())
        );
        let second = Duration::from_secs(1);
        assert_eq!(
            duration_within("interval", "50ms", second / 10..=second * 60),
            Err("interval: `50ms` must be 100ms..=1m".to_owned())
        );
        assert_eq!(
            duration_within("interval", "2s", second / 10..=second * 60),
            Ok(second * 2)
        );
    }
}

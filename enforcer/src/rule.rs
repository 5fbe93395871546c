//! Destination rules: a CIDR and a port (0 = any), as written in configs and on
//! the command line (`10.0.0.0/8:5432`, `[fd00::/64]:443`, `127.0.0.1:*`), and
//! their key in the kernel's rule trie.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use aya::maps::lpm_trie::Key;
use enforcer_common::{
    chaos::Target,
    dest::DestKey,
    rules::{RuleData, RuleFilter, V4_MAPPED_BITS, prefix_len},
};

/// A destination prefix and port. The address has no bits set beyond the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub addr: IpAddr,
    pub prefix: u8,
    /// 0 = any port.
    pub port: u16,
}

/// Why a rule does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("`{0}`: expected CIDR:PORT, e.g. 10.0.0.0/8:5432, [fd00::/64]:443 or 127.0.0.1:*")]
    Shape(String),
    #[error("`{0}`: not an IP address")]
    Address(String),
    #[error("`{text}`: prefix length must be 0..={max}")]
    Prefix { text: String, max: u8 },
    #[error("`{0}`: host bits set beyond the prefix length")]
    HostBits(String),
    #[error(
        "`{0}`: an IPv4-mapped prefix (::ffff:a.b.c.d) must be /96 or longer (a shorter one \
         covers addresses that are not IPv4); write the IPv4 prefix, e.g. 10.0.0.0/8:80"
    )]
    MappedPrefix(String),
    #[error("`{0}`: port must be 1..=65535, or 0 or * for any port")]
    Port(String),
}

impl Rule {
    /// The rule's key in the kernel's rule trie.
    pub fn key(&self) -> Key<RuleData> {
        let data = RuleData {
            port: self.port.to_be_bytes(),
            addr: self.octets(),
            _pad: [0; 2],
        };
        Key::new(prefix_len(self.address_bits()), data)
    }

    /// Notes what the rule could match in its bank's filter.
    pub fn note(&self, filter: &mut RuleFilter) {
        filter.add(self.port, &self.octets(), self.address_bits());
    }

    /// The address in the kernel's 128-bit layout (IPv4 as IPv4-mapped IPv6).
    fn octets(&self) -> [u8; 16] {
        match self.addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    /// The prefix's length in the kernel's 128-bit address layout (IPv4 as
    /// IPv4-mapped IPv6).
    fn address_bits(&self) -> u32 {
        match self.addr {
            IpAddr::V4(_) => V4_MAPPED_BITS + u32::from(self.prefix),
            IpAddr::V6(_) => u32::from(self.prefix),
        }
    }

    /// The rule as a chaos fault's target, compared by the kernel
    /// ([`Target::matches`] is how it matches, in every network namespace).
    pub fn target(&self) -> Target {
        let key = DestKey::from(SocketAddr::new(self.addr, self.port));
        Target::prefix(&key, self.address_bits())
    }

    /// The rule a trie key stands for.
    pub fn from_key(key: &Key<RuleData>) -> Self {
        let data = key.data();
        let v6 = Ipv6Addr::from(data.addr);
        let addr_bits = key
            .prefix_len()
            .saturating_sub(enforcer_common::rules::PORT_BITS);
        let (addr, prefix) = match v6.to_ipv4_mapped() {
            Some(v4) if addr_bits >= V4_MAPPED_BITS => (IpAddr::V4(v4), addr_bits - V4_MAPPED_BITS),
            _ => (IpAddr::V6(v6), addr_bits),
        };
        Self {
            addr,
            prefix: prefix as u8,
            port: u16::from_be_bytes(data.port),
        }
    }

    /// The rule for `addr/prefix:port`, an IPv4-mapped IPv6 prefix
    /// (`::ffff:a.b.c.d`, at least 96 bits: [`RuleError::MappedPrefix`]
    /// otherwise) written as the IPv4 prefix it is. The kernel keys IPv4 as
    /// IPv4-mapped IPv6, so both spellings are the same trie key: as two
    /// different rules they would pass the checks for duplicates and then
    /// overwrite each other in the trie.
    fn canonical(addr: IpAddr, prefix: u8, port: u16) -> Self {
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && u32::from(prefix) >= V4_MAPPED_BITS
        {
            return Self {
                addr: IpAddr::V4(v4),
                prefix: prefix - V4_MAPPED_BITS as u8,
                port,
            };
        }
        Self { addr, prefix, port }
    }

    /// Whether `addr/prefix` starts as an IPv4-mapped address but is
    /// shorter than the mapped prefix (`::ffff:0:0/96`).
    fn short_mapped(addr: IpAddr, prefix: u8) -> bool {
        matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
            && u32::from(prefix) < V4_MAPPED_BITS
    }

    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shape = || RuleError::Shape(text.to_owned());
        // `[v6/len]:port` or `v4/len:port` (the prefix is optional).
        let (cidr, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (cidr, port) = rest.split_once("]:").ok_or_else(shape)?;
                (cidr, port)
            }
            None => text.rsplit_once(':').ok_or_else(shape)?,
        };
        let (addr, prefix) = match cidr.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (cidr, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| RuleError::Address(text.to_owned()))?;
        if text.starts_with('[') == addr.is_ipv4() {
            return Err(shape());
        }
        let max = Self::max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(RuleError::Prefix {
                    text: text.to_owned(),
                    max,
                })?,
        };
        // Before the host bits: a short mapped prefix always has some set,
        // and that would not say what is wrong.
        if Self::short_mapped(addr, prefix) {
            return Err(RuleError::MappedPrefix(text.to_owned()));
        }
        if masked(addr, prefix) != addr {
            return Err(RuleError::HostBits(text.to_owned()));
        }
        let port = match port {
            "*" => 0,
            p => p
                .parse::<u16>()
                .map_err(|_| RuleError::Port(text.to_owned()))?,
        };
        Ok(Self::canonical(addr, prefix, port))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = match self.port {
            0 => "*".to_owned(),
            p => p.to_string(),
        };
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}:{port}", self.prefix),
            IpAddr::V6(a) => write!(f, "[{a}/{}]:{port}", self.prefix),
        }
    }
}

/// `addr` with every bit beyond `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let r: Rule = "10.0.0.0/8:5432".parse().unwrap();
        assert_eq!((r.prefix, r.port), (8, 5432));
        let r: Rule = "[fd00::/64]:443".parse().unwrap();
        assert_eq!((r.prefix, r.port), (64, 443));
        let r: Rule = "127.0.0.1:*".parse().unwrap();
        assert_eq!((r.prefix, r.port), (32, 0));
        let r: Rule = "[::1]:0".parse().unwrap();
        assert_eq!((r.prefix, r.port), (128, 0));
        for text in ["10.0.0.0/8:5432", "[fd00::/64]:443", "127.0.0.1/32:*"] {
            assert_eq!(text.parse::<Rule>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_rules_naming_them() {
        let cases = [
            ("10.0.0.1/8:80", RuleError::HostBits("10.0.0.1/8:80".into())),
            (
                "10.0.0.0/33:80",
                RuleError::Prefix {
                    text: "10.0.0.0/33:80".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/8:65536",
                RuleError::Port("10.0.0.0/8:65536".into()),
            ),
            ("10.0.0.0/8", RuleError::Shape("10.0.0.0/8".into())),
            ("fd00::1:443", RuleError::Shape("fd00::1:443".into())),
            ("[10.0.0.1]:443", RuleError::Shape("[10.0.0.1]:443".into())),
            ("nonsense:1", RuleError::Address("nonsense:1".into())),
            (
                "[::ffff:10.0.0.0/95]:80",
                RuleError::MappedPrefix("[::ffff:10.0.0.0/95]:80".into()),
            ),
            (
                "[::ffff:0.0.0.0/80]:*",
                RuleError::MappedPrefix("[::ffff:0.0.0.0/80]:*".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Rule>(), Err(want), "{text}");
        }
    }

    #[test]
    fn keys_decode_back_to_rules() {
        for text in [
            "10.0.0.0/8:5432",
            "[fd00::/64]:443",
            "127.0.0.1/32:*",
            "0.0.0.0/0:*",
            "[::/0]:*",
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(Rule::from_key(&rule.key()), rule, "{text}");
        }
    }

    /// The `cli` fuzz target's round trip through the kernel key failed on
    /// `[::ffff:192.0.2.1]:443`: an IPv6 rule whose key decodes as
    /// `192.0.2.1/32:443`.
    #[test]
    fn ipv4_mapped_ipv6_rules_are_the_ipv4_rules() {
        for (mapped, v4) in [
            ("[::ffff:192.0.2.1]:443", "192.0.2.1/32:443"),
            ("[::ffff:10.0.0.0/104]:*", "10.0.0.0/8:*"),
            ("[::ffff:0.0.0.0/96]:80", "0.0.0.0/0:80"),
        ] {
            let rule: Rule = mapped.parse().unwrap();
            assert_eq!(rule, v4.parse().unwrap(), "{mapped}");
            assert_eq!(rule.to_string(), v4);
            assert_eq!(Rule::from_key(&rule.key()), rule, "{mapped}");
        }
        // Not mapped: the IPv4-compatible form, and a prefix shorter than 96
        // whose address is not a mapped one.
        for text in ["[::192.0.2.1]:443", "[::/80]:*"] {
            let rule: Rule = text.parse().unwrap();
            assert!(rule.addr.is_ipv6(), "{text}");
            assert_eq!(Rule::from_key(&rule.key()), rule, "{text}");
        }
    }

    /// `policy set m "match=[::ffff:10.0.0.0/104]:80"` was accepted, shown,
    /// and missing from the kernel's rule map: the key read back as
    /// `10.0.0.0/8:80`, which the set did not have, so it was deleted as
    /// stale. Parsed into its IPv4 form, the rule is the one the kernel holds.
    #[test]
    fn a_mapped_rule_is_its_ipv4_rule_down_to_the_kernel_key() {
        let mapped: Rule = "[::ffff:10.0.0.0/104]:80".parse().unwrap();
        let v4: Rule = "10.0.0.0/8:80".parse().unwrap();
        assert_eq!(mapped, v4);
        assert_eq!(mapped.key().prefix_len(), v4.key().prefix_len());
        assert_eq!(mapped.key().data(), v4.key().data());
        assert_eq!(Rule::from_key(&mapped.key()), v4);
        // A whole mapped /96 is every IPv4 address.
        let all: Rule = "[::ffff:0.0.0.0/96]:*".parse().unwrap();
        assert_eq!(all, "0.0.0.0/0:*".parse().unwrap());
    }

    #[test]
    fn ipv4_keys_are_v4_mapped() {
        let key = "10.1.0.0/16:80".parse::<Rule>().unwrap().key();
        let prefix_len = key.prefix_len();
        assert_eq!(prefix_len, 16 + 96 + 16);
        let data = key.data();
        assert_eq!(&data.addr[10..14], &[0xff, 0xff, 10, 1]);
        assert_eq!(data.port, 80u16.to_be_bytes());
    }
}

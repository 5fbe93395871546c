//! Policy rules: destination prefix + port → policy id, in an LPM trie.
//!
//! The trie key's data is the port (network order) followed by the 16 address
//! bytes (IPv4 v4-mapped), so the longest-prefix match runs over port, then
//! address. A rule for one port has a prefix of 16 + address bits; rules for any
//! port are stored under port 0 and found by a second lookup with port 0. The
//! gate tries the destination's port first, so a port-specific rule wins over an
//! any-port rule, and among rules for the same port the longest prefix wins.

use crate::impl_pod;

/// Bits of the port in front of the address.
pub const PORT_BITS: u32 = 16;
/// Prefix length that matches a whole key (port and address): lookups use it.
pub const FULL_PREFIX: u32 = PORT_BITS + 128;
/// Address bits in front of an IPv4 address in its v4-mapped form.
pub const V4_MAPPED_BITS: u32 = 96;

/// The data part of an LPM trie key (`struct bpf_lpm_trie_key` minus `prefixlen`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleData {
    /// Port in network order; 0 for any-port rules.
    pub port: [u8; 2],
    /// IPv6 address bytes (IPv4 v4-mapped), network order.
    pub addr: [u8; 16],
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<RuleData>() == 20);
impl_pod!(RuleData);

impl RuleData {
    /// Data for an address given as four network-order words (as `DestKey::addr`).
    #[inline(always)]
    pub fn new(port: u16, addr: &[u32; 4]) -> Self {
        let [a, b, c, d] = *addr;
        let (a, b, c, d) = (
            a.to_ne_bytes(),
            b.to_ne_bytes(),
            c.to_ne_bytes(),
            d.to_ne_bytes(),
        );
        Self {
            port: port.to_be_bytes(),
            addr: [
                a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
                d[2], d[3],
            ],
            _pad: [0; 2],
        }
    }
}

/// Words of [`RulePorts`]: one bit per port.
pub const PORT_WORDS: usize = 65_536 / 64;

/// The ports a bank's rules name, one bit each; port 0 stands for the
/// any-port rules. A connect to a port no rule names (and no any-port rule
/// covers) needs no trie lookup at all: most connects in a cgroup go to
/// ports no rule is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulePorts {
    pub words: [u64; PORT_WORDS],
}
const _: () = assert!(size_of::<RulePorts>() == 8192);
impl_pod!(RulePorts);

impl Default for RulePorts {
    fn default() -> Self {
        Self {
            words: [0; PORT_WORDS],
        }
    }
}

impl RulePorts {
    /// Notes a rule for `port` (0: any port).
    pub fn add(&mut self, port: u16) {
        if let Some(word) = self.words.get_mut(usize::from(port >> 6)) {
            *word |= 1 << (port & 63);
        }
    }

    /// Whether a rule names `port` (0: whether any-port rules exist).
    #[inline(always)]
    pub fn has(&self, port: u16) -> bool {
        self.words
            .get(usize::from(port >> 6))
            .is_some_and(|word| word >> (port & 63) & 1 != 0)
    }
}

/// Highest policy id + 1: the size of the policy arrays.
pub const MAX_POLICIES: u32 = 256;

/// Prefix length in the trie of a rule for `addr_bits` bits of a v6 (or
/// v4-mapped) address.
pub const fn prefix_len(addr_bits: u32) -> u32 {
    PORT_BITS + addr_bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_is_its_own_bit_and_zero_stands_for_any_port() {
        let mut ports = RulePorts::default();
        assert!((0..=u16::MAX).all(|p| !ports.has(p)));
        for p in [0, 1, 63, 64, 5432, u16::MAX] {
            ports.add(p);
        }
        let named: std::vec::Vec<u16> = (0..=u16::MAX).filter(|p| ports.has(*p)).collect();
        assert_eq!(named, [0, 1, 63, 64, 5432, u16::MAX]);
    }
}

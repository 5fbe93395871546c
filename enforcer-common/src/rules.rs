//! Policy rules: destination prefix + port → policy id, in an LPM trie.
//!
//! The trie key's data is the port (network order) followed by the 16 address
//! bytes (IPv4 v4-mapped), so the longest-prefix match runs over port, then
//! address. A rule for one port has a prefix of 16 + address bits; rules for any
//! port are stored under port 0 and found by a second lookup with port 0. The
//! gate tries the destination's port first, so a port-specific rule wins over an
//! any-port rule, and among rules for the same port the longest prefix wins.

use crate::{dest::DestKey, impl_pod};

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

/// Words of [`RuleFilter::ports`]: one bit per port.
pub const PORT_WORDS: usize = 65_536 / 64;

/// What a bank's rules could match, so that a connect none of them covers
/// needs no trie lookup at all (most connects in a cgroup go to places no
/// rule is about): the ports they name (port 0 stands for the any-port
/// rules), and the leading byte of the addresses they cover — an IPv4
/// address's first octet for v4-mapped destinations, the first byte for the
/// other IPv6 ones. A bit is set for every value a rule's prefix leaves
/// open, so the filter never refuses a destination a rule matches; it may
/// let through one none does (ports and addresses are noted apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleFilter {
    pub ports: [u64; PORT_WORDS],
    /// By the first octet of a v4-mapped destination.
    pub v4_lead: [u64; 4],
    /// By the first byte of any other IPv6 destination.
    pub v6_lead: [u64; 4],
}
const _: () = assert!(size_of::<RuleFilter>() == 8192 + 64);
impl_pod!(RuleFilter);

impl Default for RuleFilter {
    fn default() -> Self {
        Self {
            ports: [0; PORT_WORDS],
            v4_lead: [0; 4],
            v6_lead: [0; 4],
        }
    }
}

/// The first 96 bits of every v4-mapped address (`::ffff:0:0/96`).
const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl RuleFilter {
    /// Notes a rule for `port` (0: any port) and the `addr_bits`-bit prefix
    /// of `addr` (the kernel's 128-bit layout, IPv4 v4-mapped).
    pub fn add(&mut self, port: u16, addr: &[u8; 16], addr_bits: u32) {
        if let Some(word) = self.ports.get_mut(usize::from(port >> 6)) {
            *word |= 1 << (port & 63);
        }
        lead(&mut self.v6_lead, addr[0], addr_bits);
        if prefix_matches(&V4_MAPPED, addr, addr_bits) {
            lead(
                &mut self.v4_lead,
                addr[12],
                addr_bits.saturating_sub(V4_MAPPED_BITS),
            );
        }
    }

    /// Whether a rule names `port` (0: whether any-port rules exist).
    #[inline(always)]
    pub fn has_port(&self, port: u16) -> bool {
        self.ports
            .get(usize::from(port >> 6))
            .is_some_and(|word| word >> (port & 63) & 1 != 0)
    }

    /// Whether a rule may cover the address of `dest`.
    #[inline(always)]
    pub fn may_cover(&self, dest: &DestKey) -> bool {
        let (bits, byte) = if dest.is_ipv4() {
            (&self.v4_lead, dest.addr[3].to_ne_bytes()[0])
        } else {
            (&self.v6_lead, dest.addr[0].to_ne_bytes()[0])
        };
        bits.get(usize::from(byte >> 6))
            .is_some_and(|word| word >> (byte & 63) & 1 != 0)
    }
}

/// Sets the bit of every byte whose first `bits` bits (at most 8) are
/// `byte`'s.
fn lead(set: &mut [u64; 4], byte: u8, bits: u32) {
    let open = 8 - bits.min(8);
    let first = u32::from(byte) >> open << open;
    for b in first..first + (1 << open) {
        set[(b >> 6) as usize] |= 1 << (b & 63);
    }
}

/// Whether the first `bits` bits of `addr` equal those of `prefix` (as far
/// as `prefix` goes).
fn prefix_matches(prefix: &[u8], addr: &[u8; 16], bits: u32) -> bool {
    prefix.iter().zip(addr).enumerate().all(|(i, (p, a))| {
        let taken = bits.saturating_sub(8 * i as u32).min(8);
        let mask = (0xff00u16 >> taken) as u8;
        p & mask == a & mask
    })
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
        let mut filter = RuleFilter::default();
        assert!((0..=u16::MAX).all(|p| !filter.has_port(p)));
        for p in [0, 1, 63, 64, 5432, u16::MAX] {
            filter.add(p, &[0; 16], 0);
        }
        let named: std::vec::Vec<u16> = (0..=u16::MAX).filter(|p| filter.has_port(*p)).collect();
        assert_eq!(named, [0, 1, 63, 64, 5432, u16::MAX]);
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..12].copy_from_slice(&V4_MAPPED);
        out[12..].copy_from_slice(&a);
        out
    }

    fn dest(addr: [u8; 16]) -> DestKey {
        DestKey::from_octets(addr, 0)
    }

    /// Whether the `bits`-bit prefix of `rule` covers `addr`: the trie's
    /// match, bit by bit.
    fn covers(rule: &[u8; 16], bits: u32, addr: &[u8; 16]) -> bool {
        let bit = |a: &[u8; 16], i: u32| a[(i / 8) as usize] >> (7 - i % 8) & 1;
        (0..bits).all(|i| bit(rule, i) == bit(addr, i))
    }

    #[test]
    fn the_leading_byte_of_an_address_no_rule_covers_is_refused() {
        let mut filter = RuleFilter::default();
        filter.add(0, &v4([192, 0, 2, 0]), 96 + 24);
        filter.add(0, &v4([10, 0, 0, 0]), 96 + 7);
        let lead = |a: [u8; 4]| filter.may_cover(&dest(v4(a)));
        assert!(lead([192, 0, 2, 1]) && lead([192, 9, 9, 9]));
        assert!(
            lead([10, 1, 2, 3]) && lead([11, 1, 2, 3]),
            "a /7 leaves the 8th bit open"
        );
        assert!(!lead([127, 0, 0, 1]) && !lead([12, 0, 0, 1]));
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(!filter.may_cover(&dest(v6)));
    }

    #[test]
    fn an_ipv6_rule_over_the_v4_mapped_space_covers_every_ipv4_address() {
        let mut filter = RuleFilter::default();
        filter.add(443, &[0; 16], 0);
        assert!((0..=255u8).all(|b| filter.may_cover(&dest(v4([b, 1, 2, 3])))));
        assert!((0..=255u8).all(|b| {
            let mut a = [0; 16];
            a[0] = b;
            filter.may_cover(&dest(a))
        }));
        let mut mapped = RuleFilter::default();
        mapped.add(0, &v4([0, 0, 0, 0]), 96);
        assert!((0..=255u8).all(|b| mapped.may_cover(&dest(v4([b, 0, 0, 0])))));
        let mut fd = RuleFilter::default();
        let mut ula = [0; 16];
        ula[0] = 0xfd;
        fd.add(0, &ula, 8);
        assert!(!fd.may_cover(&dest(v4([0xfd, 0, 0, 1]))));
    }

    proptest::proptest! {
        #[test]
        fn no_address_a_rule_covers_is_refused(
            rules in proptest::collection::vec((proptest::array::uniform16(0u8..), 0u32..=128, proptest::bool::ANY), 1..6),
            probe in proptest::array::uniform4(0u8..),
            tail in proptest::array::uniform16(0u8..),
        ) {
            let mut filter = RuleFilter::default();
            // Half the rules IPv4 (v4-mapped, /0../32), half native IPv6.
            let rules: std::vec::Vec<([u8; 16], u32)> = rules
                .into_iter()
                .map(|(addr, bits, is_v4)| {
                    if is_v4 {
                        (v4([addr[0], addr[1], addr[2], addr[3]]), 96 + bits % 33)
                    } else {
                        (addr, bits)
                    }
                })
                .collect();
            for (addr, bits) in &rules {
                filter.add(0, addr, *bits);
            }
            // Probes near the rules (sharing their leading bytes) and anywhere.
            let mut candidates = std::vec![v4(probe), tail];
            for (addr, _) in &rules {
                let mut near = *addr;
                near[15] ^= probe[0];
                candidates.push(near);
            }
            for addr in candidates {
                if rules.iter().any(|(r, bits)| covers(r, *bits, &addr)) {
                    proptest::prop_assert!(filter.may_cover(&dest(addr)), "{:?}", addr);
                }
            }
        }
    }
}

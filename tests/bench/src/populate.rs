//! Filling the destination map: one refused loopback connect per destination,
//! from a child in the protected cgroup. 127.0.0.0/8 is all local, so each
//! address on one port reserved on every address (bound, not listening) is a
//! distinct destination that answers with a RST at once: 100 000 destinations
//! take a few seconds and no packet leaves the host.

use std::net::{Ipv4Addr, SocketAddrV4};

use enforcer_tests::{cgroup::ScratchCgroup, exec::Place, net::RefusingPort};

use crate::client::{self, Dest};

const ECONNREFUSED: i32 = 111;

/// A port refused on every local address, and the addresses to use with it.
pub struct Refusing {
    port: RefusingPort,
    /// Second octet of the first address: each user takes its own range.
    base: u8,
}

impl Refusing {
    /// Addresses from `127.<base>.0.1` on; `base` (a multiple of 64, so that
    /// one /10 rule covers the range) picks a range other scenarios do not use.
    pub fn new(base: u8) -> Self {
        assert!(
            base.is_multiple_of(64) && base > 0,
            "127.{base}.0.0 is not a /10 outside 127.0.0.0/10"
        );
        Self {
            port: RefusingPort::bind("0.0.0.0:0".parse().unwrap()),
            base,
        }
    }

    /// The `i`-th destination: 254 per /24 (no .0 or .255 look-alikes).
    pub fn dest(&self, i: usize) -> SocketAddrV4 {
        let (block, lo) = (i / 254, 1 + i % 254);
        let second = usize::from(self.base) + block / 256;
        let second = u8::try_from(second).expect("destinations stay inside 127.0.0.0/8");
        SocketAddrV4::new(
            Ipv4Addr::new(127, second, (block % 256) as u8, lo as u8),
            self.port.addr.port(),
        )
    }

    /// A rule matching every destination [`Self::dest`] hands out (a /10 from
    /// the base: up to 4 · 65 024 of them).
    pub fn covering_rule(&self) -> String {
        format!("127.{}.0.0/10:{}", self.base, self.port.addr.port())
    }

    /// Connects once to each of destinations `0..n` from a child in `cgroup`;
    /// every connect must be refused (a rejection would mean a tripped breaker,
    /// which the caller's policy must rule out).
    pub fn connect_each(&self, cgroup: &ScratchCgroup, n: usize) {
        let dests: Vec<Dest> = (0..n).map(|i| Dest::new(self.dest(i))).collect();
        Place::cgroup(cgroup).run(|| {
            for (i, dest) in dests.iter().enumerate() {
                let a = client::attempt(dest);
                assert_eq!(a.result, Err(ECONNREFUSED), "populating destination {i}");
            }
            String::new()
        });
    }
}

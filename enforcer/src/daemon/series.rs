//! Which destinations get series of their own in a scrape: at most
//! `max_series`, open ones first, then the busiest; the rest are summed into
//! one. Chosen while the map is read, keeping only the chosen few, so a
//! scrape of 100 000 destinations holds a thousand, not all of them.

use std::collections::BinaryHeap;

use enforcer_common::{
    breaker::State,
    dest::{DestKey, DestState},
};

/// Lower ranks first: open before closed, more attempts first, then the
/// address as `SocketAddr` orders it, then the namespace (a stable order
/// between scrapes). Integers only: every destination of the map is ranked.
type Rank = (bool, u64, Address, u64);

/// `SocketAddr`'s order without making one: IPv4 first, then the address,
/// then the port.
type Address = (bool, u128, u16);

fn rank(key: &DestKey, s: &DestState) -> Rank {
    (
        s.breaker.state == State::Closed as u32,
        u64::MAX - s.counters.attempts,
        address(key),
        key.netns,
    )
}

fn address(key: &DestKey) -> Address {
    // An IPv4 destination is v4-mapped: its fixed prefix leaves the
    // address's own order.
    (!key.is_ipv4(), u128::from_be_bytes(key.octets()), key.port)
}

/// A kept destination's place in the heap: its rank and where its state is.
/// The heap moves these on every push and pop, never the states (hundreds
/// of bytes each, and a scrape of a large map pushes thousands).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    rank: Rank,
    slot: usize,
}

/// The destinations offered so far: the best `limit` kept, the others summed.
pub struct Top {
    limit: usize,
    /// The worst kept one on top, to be pushed out first.
    kept: BinaryHeap<Ranked>,
    /// The kept destinations, in the slots their [`Ranked`] name; a slot
    /// pushed out is taken by the next one kept.
    states: Vec<(DestKey, DestState)>,
    other: DestState,
    folded: u64,
}

impl Top {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: BinaryHeap::with_capacity(limit),
            states: Vec::with_capacity(limit),
            other: DestState::default(),
            folded: 0,
        }
    }

    pub fn offer(&mut self, key: &DestKey, state: &DestState) {
        let rank = rank(key, state);
        if self.kept.len() < self.limit {
            self.kept.push(Ranked {
                rank,
                slot: self.states.len(),
            });
            self.states.push((*key, *state));
            return;
        }
        // Most destinations of a large map rank below every kept one: sum
        // them without touching the heap.
        let Some(mut worst) = self.kept.peek_mut().filter(|worst| rank < worst.rank) else {
            fold(&mut self.other, state);
            self.folded += 1;
            return;
        };
        let (_, out) = std::mem::replace(&mut self.states[worst.slot], (*key, *state));
        fold(&mut self.other, &out);
        self.folded += 1;
        // Sifted into place when `worst` drops.
        worst.rank = rank;
    }

    /// Destinations offered.
    pub fn tracked(&self) -> u64 {
        self.kept.len() as u64 + self.folded
    }

    /// The kept ones, best first, and the sum of the rest (if any).
    pub fn finish(self) -> (Vec<(DestKey, DestState)>, Option<DestState>) {
        let kept = self
            .kept
            .into_sorted_vec()
            .into_iter()
            .map(|r| self.states[r.slot])
            .collect();
        (kept, (self.folded > 0).then_some(self.other))
    }
}

/// Adds `s`'s counters into `into` (for the folded series).
fn fold(into: &mut DestState, s: &DestState) {
    let (a, b) = (&mut into.counters, &s.counters);
    a.attempts += b.attempts;
    a.successes += b.successes;
    a.failures_refused += b.failures_refused;
    a.failures_timeout += b.failures_timeout;
    a.failures_unreachable += b.failures_unreachable;
    a.slow += b.slow;
    a.abandoned += b.abandoned;
    a.local_errors += b.local_errors;
    a.probes_reclaimed += b.probes_reclaimed;
    a.rejected_circuit += b.rejected_circuit;
    a.rejected_bulkhead += b.rejected_bulkhead;
    a.would_reject_circuit += b.would_reject_circuit;
    a.would_reject_bulkhead += b.would_reject_bulkhead;
    a.probes += b.probes;
    a.trips += b.trips;
    a.guard_refusals += b.guard_refusals;
    into.breaker.active += s.breaker.active;
    into.breaker.pending += s.breaker.pending;
    for (x, y) in into.latency.buckets.iter_mut().zip(s.latency.buckets) {
        *x += y;
    }
    into.latency.sum_ns += s.latency.sum_ns;
    for (x, y) in into.classes.iter_mut().zip(&s.classes) {
        x.active += y.active;
        x.admitted += y.admitted;
        x.shed += y.shed;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn addresses_rank_as_socket_addrs_order(
            a in any::<SocketAddr>(),
            b in any::<SocketAddr>(),
        ) {
            let (ka, kb) = (DestKey::from(a), DestKey::from(b));
            prop_assert_eq!(
                address(&ka).cmp(&address(&kb)),
                ka.socket_addr().cmp(&kb.socket_addr())
            );
        }
    }

    fn dest(i: u32, attempts: u64, open: bool) -> (DestKey, DestState) {
        let addr: SocketAddr = format!("10.0.{}.{}:80", i / 256, i % 256).parse().unwrap();
        let mut s = DestState::default();
        s.counters.attempts = attempts;
        s.breaker.active = 1;
        s.classes[3].active = 1;
        s.classes[3].shed = 2;
        s.breaker.state = if open {
            State::Open as u32
        } else {
            State::Closed as u32
        };
        (DestKey::from(addr), s)
    }

    #[test]
    fn keeps_the_open_then_the_busiest_and_sums_the_rest() {
        let mut top = Top::new(3);
        let all: Vec<_> = (0..100)
            .map(|i| dest(i, u64::from(i), i == 7 || i == 42))
            .collect();
        for (k, s) in &all {
            top.offer(k, s);
        }
        assert_eq!(top.tracked(), 100);
        let (kept, other) = top.finish();
        let attempts: Vec<u64> = kept.iter().map(|(_, s)| s.counters.attempts).collect();
        assert_eq!(
            attempts,
            [42, 7, 99],
            "open first (busiest first), then the busiest"
        );
        let other = other.expect("97 summed");
        assert_eq!(other.breaker.active, 97);
        assert_eq!((other.classes[3].active, other.classes[3].shed), (97, 194));
        assert_eq!(other.counters.attempts, (0..100).sum::<u64>() - 42 - 7 - 99);
    }

    #[test]
    fn nothing_is_summed_under_the_limit() {
        let mut top = Top::new(10);
        let (k, s) = dest(1, 5, false);
        top.offer(&k, &s);
        let (kept, other) = top.finish();
        assert_eq!((kept.len(), other.is_none()), (1, true));
    }
}

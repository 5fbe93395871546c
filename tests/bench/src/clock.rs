//! CLOCK_MONOTONIC in nanoseconds: comparable between the parent and a forked
//! child (an `Instant` is too, but cannot cross the pipe).

pub use enforcer::clock::monotonic_ns;

/// A reproducible pseudo-random value in [0, 1) for trial `i` (a splitmix64
/// step): where in a period a trial's event falls, the same every run.
pub fn unit(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

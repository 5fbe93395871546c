//! Map names and capacities. The eBPF crate declares the maps under these names
//! and the daemon looks them up (and resizes them at load time) by the same names.

/// Single-entry array holding [`crate::config::Config`].
pub const CONFIG: &str = "CONFIG";

/// Hash map [`crate::dest::DestKey`] → [`crate::dest::DestState`]. Not an LRU: an
/// evicted entry would lose its counters (and later its bulkhead slots); when it is
/// full new destinations are allowed untracked and counted.
pub const DESTS: &str = "DESTS";
/// Default capacity of [`DESTS`]; the daemon may change it at load time.
pub const DESTS_CAPACITY: u32 = 65_536;

/// Socket storage holding [`crate::sock::SockInfo`] for every admitted socket.
pub const SOCKS: &str = "SOCKS";

/// Per-CPU array of hot-path counters, indexed by [`crate::counters::GlobalCounter`].
pub const COUNTERS: &str = "COUNTERS";

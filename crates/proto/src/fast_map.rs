//! The hash map of the packet path's lookups (allocations by 5-tuple and by relayed address,
//! permissions, channels; the driver's relay sockets by address).
//!
//! foldhash instead of the standard SipHash: several times cheaper on these small keys (a
//! profile of the relay loop spent ~4 % of its time in SipHash), and still seeded at random
//! per map, so whoever picks the addresses cannot predict the buckets.

/// A `HashMap` with foldhash's randomly seeded fast hasher; make one with `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

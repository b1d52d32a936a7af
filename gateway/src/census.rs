//! How many client sessions the gateway holds, as a broadcast's answer
//! reports it (`"online": N`): a count the cores read without reading
//! another shard's state themselves, handed to them by their drivers.

/// Client sessions across the gateway, as the shards last published them.
/// A trait so that the core stays sans-IO: the io_uring driver reads the
/// published counters ([`crate::shared::Shared`]), the simulation its own
/// cores.
pub trait Census: Send + Sync + std::fmt::Debug {
    /// Client sessions held by every shard but `shard` (whose core knows
    /// its own count live), as each last published them.
    fn sessions_elsewhere(&self, shard: usize) -> u64;
}

//! The time the sans-IO code is given: what a driver read from its clocks
//! (see [`crate::clock`]) when an input happened.

use protocol::time::Millis;

/// The time an input happens at: the shard's monotonic clock, and the wall
/// clock for what leaves the gateway (Welcome's server time, push
/// timestamps, token expiry, connected-since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Milliseconds on the shard's monotonic clock.
    pub now: Millis,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

//! The clocks a driver reads and hands to the sans-IO code: a shard's
//! monotonic milliseconds and the wall clock. Nothing else in the gateway
//! reads a clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use protocol::time::Millis;

use crate::time::Time;

/// A shard's clock: milliseconds since the shard started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock that reads 0 now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Milliseconds since the clock started.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Both clocks, as the core's inputs take them.
    pub fn time(&self) -> Time {
        Time {
            now: self.now(),
            unix_ms: wall_clock_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_clock_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

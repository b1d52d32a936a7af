//! [`ServerConfig`]: the gateway-wide session settings every call is given
//! by reference (frame size, handshake and idle timing, heartbeat bounds,
//! client limits), and what follows from them (the negotiated heartbeat,
//! the idle timeout, how much input may wait for `accept()`).

use crate::codec::{self, LENGTH_PREFIX};

/// Gateway-wide session settings, passed by reference to every call.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Largest accepted inbound frame body, in bytes.
    pub max_frame: u32,
    /// Time allowed from connection to an accepted `Hello`.
    pub handshake_timeout_ms: u32,
    /// Heartbeat used when the client proposes 0.
    pub heartbeat_default_ms: u32,
    /// Lowest heartbeat a client may negotiate.
    pub heartbeat_min_ms: u32,
    /// Highest heartbeat a client may negotiate.
    pub heartbeat_max_ms: u32,
    /// A session with no inbound frame for `idle_factor × heartbeat` is closed.
    pub idle_factor: f64,
    /// Most topics in one `Subscribe` or `Unsubscribe`.
    pub max_topics: u32,
    /// Longest topic name in a `Subscribe`, in bytes.
    pub max_topic_len: u32,
    /// Most apps one `Hello` may declare.
    pub max_apps: u32,
    /// Longest app name in a `Hello`, in bytes.
    pub max_app_len: u32,
    /// Longest device label in a `Hello`, in bytes.
    pub max_device_len: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: codec::DEFAULT_MAX_FRAME,
            handshake_timeout_ms: 10_000,
            heartbeat_default_ms: 30_000,
            heartbeat_min_ms: 5_000,
            heartbeat_max_ms: 300_000,
            idle_factor: 2.5,
            max_topics: 64,
            max_topic_len: 256,
            max_apps: 16,
            max_app_len: 64,
            max_device_len: 128,
        }
    }
}

impl ServerConfig {
    /// The heartbeat granted for a client's proposal: 0 means the default,
    /// anything else is clamped to `[heartbeat_min_ms, heartbeat_max_ms]`.
    #[must_use]
    pub fn negotiate_heartbeat(&self, proposed_ms: u32) -> u32 {
        let wanted = if proposed_ms == 0 {
            self.heartbeat_default_ms
        } else {
            proposed_ms
        };
        // Not `u32::clamp`: that panics on a misconfigured min > max.
        wanted.max(self.heartbeat_min_ms).min(self.heartbeat_max_ms)
    }

    /// How long an established session with heartbeat `heartbeat_ms` may stay silent.
    #[must_use]
    pub fn idle_timeout_ms(&self, heartbeat_ms: u32) -> u64 {
        // Float-to-int `as` saturates (NaN and negatives give 0).
        (self.idle_factor * f64::from(heartbeat_ms)).ceil() as u64
    }

    /// Bytes a session may hold while it waits for `accept()`/`reject()`:
    /// frames pipelined behind the `Hello`. Beyond this the client is closed
    /// with `Error(OVERLOADED)`.
    #[must_use]
    pub fn max_pending_input(&self) -> usize {
        (self.max_frame as usize)
            .saturating_add(LENGTH_PREFIX)
            .saturating_mul(2)
    }
}

//! [`MqttConfig`]: the listener-wide MQTT session settings every call is
//! given by reference (so no session stores them), and what follows from
//! them: the granted keep-alive and the idle timeout.

use crate::server::ServerConfig;

use crate::mqtt::DEFAULT_MAX_PACKET;

/// What the session does with a client PUBLISH that has RETAIN set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainPolicy {
    /// Close the connection ([`CloseReason::RetainRefused`](super::CloseReason::RetainRefused)):
    /// the gateway keeps no retained messages, and 3.1.1 has no other way to
    /// refuse a PUBLISH. A client learns it at once instead of believing its
    /// message was kept.
    #[default]
    Refuse,
    /// Hand the PUBLISH on as an uplink with `retain: true`, for the backend
    /// to interpret.
    PassThrough,
}

/// Listener-wide MQTT session settings, passed by reference to every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Largest packet accepted from a client, fixed header included.
    pub max_packet: usize,
    /// Time from connection to CONNECT and the auth verdict.
    pub handshake_timeout_ms: u32,
    /// Lowest keep-alive granted; shorter requests are raised to it.
    pub keep_alive_min_ms: u32,
    /// Highest keep-alive granted; longer requests, and 0 ("no
    /// keep-alive", which a gateway holding millions of connections does
    /// not grant), are lowered to it. MQTT 3.1.1 cannot tell a client its
    /// keep-alive was lowered, so this must not be below what the fleet's
    /// clients use, or they are closed between two of their PINGREQs.
    pub keep_alive_max_ms: u32,
    /// Longest client identifier accepted; longer ones get CONNACK 0x02.
    /// The spec requires at least 23 bytes to be accepted (§3.1.3.1).
    pub max_client_id_len: usize,
    /// Most filters in one SUBSCRIBE or UNSUBSCRIBE.
    pub max_filters: usize,
    /// Longest topic name or filter (PUBLISH, will, SUBSCRIBE), in bytes.
    pub max_topic_len: usize,
    /// Most QoS 1 PUBLISHes sent and not yet acknowledged; beyond it
    /// [`MqttSession::start_qos1`](super::MqttSession::start_qos1) refuses
    /// and the push waits. At most 65535 (the packet id space).
    pub max_in_flight: u16,
    /// Most client QoS 1 PUBLISHes handed on and not yet confirmed with
    /// [`MqttSession::puback`](super::MqttSession::puback); one more closes
    /// the connection, so a client cannot queue unbounded uplinks.
    pub max_uplinks_in_flight: u16,
    /// What to do with a client PUBLISH that has RETAIN set.
    pub retain: RetainPolicy,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet: DEFAULT_MAX_PACKET,
            handshake_timeout_ms: 10_000,
            keep_alive_min_ms: 5_000,
            keep_alive_max_ms: 300_000,
            max_client_id_len: 128,
            max_filters: 64,
            max_topic_len: 256,
            max_in_flight: 32,
            max_uplinks_in_flight: 32,
            retain: RetainPolicy::Refuse,
        }
    }
}

impl MqttConfig {
    /// The MQTT settings that share the v1 `[protocol]` bounds: packet size,
    /// handshake timeout, heartbeat bounds (as keep-alive bounds), topics
    /// per request and topic length. The rest keep their defaults.
    #[must_use]
    pub fn from_protocol(v1: &ServerConfig) -> MqttConfig {
        MqttConfig {
            max_packet: usize::try_from(v1.max_frame).unwrap_or(usize::MAX),
            handshake_timeout_ms: v1.handshake_timeout_ms,
            keep_alive_min_ms: v1.heartbeat_min_ms,
            keep_alive_max_ms: v1.heartbeat_max_ms,
            max_filters: v1.max_topics as usize,
            max_topic_len: v1.max_topic_len as usize,
            ..MqttConfig::default()
        }
    }

    /// The keep-alive granted for a CONNECT's `keep_alive_s`: 0 becomes the
    /// maximum, anything else is clamped to `[keep_alive_min_ms, keep_alive_max_ms]`.
    #[must_use]
    pub fn grant_keep_alive(&self, keep_alive_s: u16) -> u32 {
        let wanted = match keep_alive_s {
            0 => self.keep_alive_max_ms,
            s => u32::from(s) * 1000,
        };
        // Not `u32::clamp`: that panics on a misconfigured min > max.
        wanted
            .max(self.keep_alive_min_ms)
            .min(self.keep_alive_max_ms)
    }

    /// How long a session with keep-alive `keep_alive_ms` may stay silent:
    /// one and a half times it (§3.1.2.10).
    #[must_use]
    pub fn idle_timeout_ms(keep_alive_ms: u32) -> u64 {
        u64::from(keep_alive_ms) * 3 / 2
    }

    /// Bytes a session may hold while the caller decides on its CONNECT:
    /// packets pipelined behind it, up to two of the largest.
    #[must_use]
    pub fn max_pending_input(&self) -> usize {
        self.max_packet.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_protocol_bounds_carry_over() {
        let v1 = ServerConfig {
            max_frame: 4096,
            handshake_timeout_ms: 3_000,
            heartbeat_min_ms: 2_000,
            heartbeat_max_ms: 60_000,
            max_topics: 8,
            max_topic_len: 100,
            ..ServerConfig::default()
        };
        let cfg = MqttConfig::from_protocol(&v1);
        assert_eq!(cfg.max_packet, 4096);
        assert_eq!(cfg.handshake_timeout_ms, 3_000);
        assert_eq!(
            (cfg.keep_alive_min_ms, cfg.keep_alive_max_ms),
            (2_000, 60_000)
        );
        assert_eq!((cfg.max_filters, cfg.max_topic_len), (8, 100));
        assert_eq!(cfg.max_in_flight, MqttConfig::default().max_in_flight);
        assert_eq!(cfg.max_pending_input(), 8192);
        assert_eq!(MqttConfig::idle_timeout_ms(30_000), 45_000);
    }
}

//! Shard-local counters and their published snapshots.
//!
//! A shard counts into plain integers it alone owns (no atomics on the hot
//! path) and copies them into its [`PublishedStats`] slot now and then: on
//! every timer tick and before it answers a stats request. Readers on other
//! threads see figures at most one tick old.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident ),* $(,)?) => {
        /// What one shard has counted since it started.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct ShardStats {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl ShardStats {
            /// Counter names, in the order of [`ShardStats::values`].
            pub const NAMES: &'static [&'static str] = &[$( stringify!($field) ),*];

            /// Each counter's doc comment, in the order of
            /// [`ShardStats::NAMES`] (the `# HELP` of its metric).
            pub const DOCS: &'static [&'static str] = &[$( concat!($($doc),*) ),*];

            /// How many counters there are.
            pub const COUNT: usize = Self::NAMES.len();

            /// Counter values, in the order of [`ShardStats::NAMES`]; an
            /// array, so publishing every 250 ms allocates nothing.
            pub fn values(&self) -> [u64; Self::COUNT] {
                [$( self.$field ),*]
            }

            fn from_values(v: &[u64]) -> Self {
                let mut it = v.iter().copied();
                Self { $( $field: it.next().unwrap_or(0), )* }
            }
        }
    };
}

counters! {
    /// Client connections open now (a gauge).
    connections,
    /// Client sessions past their handshake, until their connection is
    /// gone (a gauge).
    sessions,
    /// Client connections accepted.
    accepts,
    /// Accept completions that failed.
    accept_errors,
    /// Connections refused at accept: shard at `max_connections`.
    refused_max_connections,
    /// Connections refused at accept: `max_handshakes` in flight.
    refused_max_handshakes,
    /// Connections refused at accept: per-IP cap reached.
    refused_per_ip,
    /// Connections refused at accept: address denied or not allowed.
    refused_address,
    /// Handshakes completed (Welcome sent).
    handshakes_ok,
    /// Handshakes that resumed a parked session with its token.
    resumes,
    /// Handshakes whose resume token named no session parked here for the
    /// user (window passed, another shard, a restart, or not a token):
    /// they got a fresh session.
    resumes_missed,
    /// Sessions parked for a resume now (a gauge).
    parked_sessions,
    /// Topic pushes and broadcasts replayed to resumed sessions (sent
    /// while they were parked).
    resume_replayed,
    /// Resumes whose Welcome said `recovered = false`: the session missed
    /// more than it could keep while parked.
    resume_incomplete,
    /// Handshakes failed: token rejected.
    handshakes_unauthorized,
    /// Handshakes failed: token expired.
    handshakes_expired,
    /// Handshakes failed: no Hello in time.
    handshakes_timeout,
    /// Handshakes failed: bad first frame or version.
    handshakes_protocol,
    /// Sessions closed for protocol errors after the handshake.
    protocol_errors,
    /// Sessions closed for silence past `idle_factor × heartbeat`.
    idle_timeouts,
    /// Sessions the client ended (Bye, EOF or a WebSocket close frame).
    client_closes,
    /// WebSocket upgrades accepted (`101 Switching Protocols`).
    ws_upgrades,
    /// WebSocket upgrade requests refused with a 4xx (malformed, wrong
    /// version, no key, disallowed Origin, head too large, ...).
    ws_upgrades_refused,
    /// WebSocket connections closed for a framing violation (unmasked or
    /// oversize frame, bad opcode, bad close frame, text message).
    ws_protocol_errors,
    /// WebSocket pings received (each answered with a pong).
    ws_pings,
    /// Whole MQTT packets received.
    mqtt_packets_in,
    /// MQTT packets written by the sessions (CONNACK, SUBACK, PUBACK,
    /// PINGRESP, ...; pushes are `deliveries`).
    mqtt_packets_out,
    /// MQTT CONNECTs refused with a CONNACK code (bad token, not
    /// authorized, server unavailable, identifier rejected, version).
    mqtt_refused,
    /// MQTT connections closed for a protocol violation (malformed packet,
    /// a packet the client may not send, QoS 2, RETAIN, a limit).
    mqtt_protocol_errors,
    /// MQTT PUBACKs for a packet id not in flight (ignored).
    mqtt_unknown_acks,
    /// MQTT wills that fell due (the connection ended without DISCONNECT);
    /// each became a `will` event for the events backend, when one is
    /// configured (the gateway publishes no will itself).
    mqtt_wills,
    /// MQTT QoS 1 uplinks the backend did not answer 2xx: the connection
    /// was closed unacknowledged, for the client to send it again.
    mqtt_uplinks_failed,
    /// MQTT sessions closed because a new session of their user came with
    /// the same client id (takeover, §3.1.4-2).
    mqtt_takeovers,
    /// Durable pushes not sent to an MQTT session because its QoS 1 window
    /// was full (sent again after the Ack timeout).
    mqtt_window_full,
    /// TLS handshakes completed.
    tls_handshakes,
    /// TLS connections ended by a TLS error (bad records, a failed
    /// handshake, a client that does not trust the certificate); each got
    /// its alert, then the close.
    tls_failures,
    /// Sessions kicked (admin, drain, shutdown).
    kicks,
    /// Frames received.
    frames_in,
    /// Frames sent.
    frames_out,
    /// Bytes received.
    bytes_in,
    /// Bytes sent.
    bytes_out,
    /// Times a multishot receive stopped because the buffer pool ran dry.
    buffer_pool_exhausted,
    /// Connections closed because their outbound queue overflowed.
    slow_consumer_disconnects,
    /// Queued frames dropped (drop-oldest policy) to make room.
    slow_consumer_drops,
    /// Bytes queued towards clients now (a gauge).
    outbound_queued_bytes,
    /// Pushes accepted by this shard's push API.
    pushes_accepted,
    /// Push requests refused (bad request).
    pushes_rejected,
    /// Pushes written to a recipient's queue on this shard.
    deliveries,
    /// Pushes to a user this shard's push API sent straight to the holding
    /// shards from its route cache, skipping the owner hop.
    route_cache_hits,
    /// Waits in which the shard let completions gather for up to
    /// `shard.idle_batch_ms`, because it had seen only client traffic
    /// (heartbeats) for `shard.idle_batch_after_ms`.
    batched_waits,
    /// Push ids acked by clients.
    acks,
    /// Times a cross-shard mailbox was full (the message waited locally).
    mailbox_full,
    /// Messages waiting in this shard's mailboxes now (a gauge).
    mailbox_depth,
    /// Topic subscriptions held on this shard (a gauge).
    subscriptions,
    /// Sessions in the part of the user directory this shard owns (a gauge).
    directory_sessions,
    /// Paced deliveries in progress (a gauge).
    paced_deliveries,
    /// Distinct app names held by this shard's sessions now (a gauge).
    app_names,
    /// Distinct device labels held by this shard's sessions now (a gauge).
    device_labels,
    /// Hellos refused because the shard already told apart as many
    /// distinct apps as it can (64) among its live sessions.
    refused_app_table,
    /// Uplink frames received (forwarded or answered by the gateway).
    uplink_requests,
    /// Uplinks answered with the backend's own response (any status).
    uplink_replies,
    /// Uplinks answered 400: app or route unfit for a header.
    uplink_bad_request,
    /// Uplinks answered 404: no route.
    uplink_no_route,
    /// Uplinks answered 429: shard's in-flight cap reached.
    uplink_over_cap,
    /// Uplinks answered 503: backend unreachable.
    uplink_unavailable,
    /// Uplinks answered 504: backend too slow.
    uplink_timeouts,
    /// Uplinks answered 502: backend response unreadable or too large.
    uplink_bad_response,
    /// Auth webhook calls made.
    auth_webhook_calls,
    /// Auth webhook answers that allowed the client.
    auth_webhook_allowed,
    /// Auth webhook answers that denied the client.
    auth_webhook_denied,
    /// Auth webhook calls that failed (timeout, unreachable, over cap).
    auth_webhook_errors,
    /// Hellos decided from the verdict cache.
    auth_cache_hits,
    /// Presence events queued.
    events_queued,
    /// Presence events delivered.
    events_sent,
    /// Presence batches delivered.
    events_batches,
    /// Presence batch attempts that failed (each retry counts).
    events_batch_failures,
    /// Presence events dropped (queue full, or retries exhausted).
    events_dropped,
    /// Backend connections opened.
    backend_connects,
    /// Backend connect attempts that failed.
    backend_connect_errors,
    /// Backend requests queued or in flight now (a gauge).
    backend_in_flight,
    /// Control-listener connections open now (a gauge).
    control_connections,
    /// Control connections over `listen.control_max_connections`,
    /// answered 503 and closed.
    control_refused,
    /// Control requests not complete within
    /// `listen.control_head_timeout_ms`: answered 408 and closed (or
    /// closed silently when nothing of them had arrived).
    control_head_timeouts,
    /// Keep-alive control connections closed after
    /// `listen.control_idle_timeout_ms` without a request.
    control_idle_closes,
    /// Durable pushes stored in the inboxes this shard owns.
    store_stored,
    /// Durable pushes sent to a user's sessions (first and again).
    store_delivered,
    /// Durable pushes sent again (Ack timeout or a new session).
    store_redelivered,
    /// Durable pushes removed by an Ack.
    store_acked,
    /// Durable pushes removed by their TTL.
    store_expired,
    /// Durable pushes removed after `max_deliveries` unacked.
    store_dead_lettered,
    /// Durable pushes dropped from a full inbox (drop-oldest).
    store_dropped,
    /// Durable pushes refused: an inbox or the store was full.
    store_rejected,
    /// Group commits of the store.
    store_commits,
    /// The longest group commit, ms (a gauge).
    store_commit_ms_max,
    /// Durable pushes held now (a gauge).
    store_pushes,
    /// Bytes of the store's files on disk (a gauge).
    store_disk_bytes,
    /// RAM of the store's index, bytes (a gauge).
    store_ram_bytes,
}

/// Where counter `name` is in [`ShardStats::NAMES`] (a compile-time error
/// when there is no such counter).
const fn position(name: &str) -> usize {
    let mut i = 0;
    while i < ShardStats::NAMES.len() {
        let (a, b) = (ShardStats::NAMES[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no such counter");
}

/// Where `sessions` is in [`ShardStats::values`].
pub const SESSIONS: usize = position("sessions");

/// One shard's published counters: a single writer (the shard), any
/// number of readers. Padded so shards never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub struct PublishedStats {
    values: Vec<AtomicU64>,
}

impl Default for PublishedStats {
    fn default() -> Self {
        Self {
            values: ShardStats::NAMES
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl PublishedStats {
    /// Copies the shard's counters in (called by the owning shard only).
    pub fn publish(&self, stats: &ShardStats) {
        for (slot, v) in self.values.iter().zip(stats.values()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The last published value of the counter at `index` of
    /// [`ShardStats::NAMES`] (0 beyond them).
    pub fn value(&self, index: usize) -> u64 {
        self.values
            .get(index)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// The last published figures.
    pub fn snapshot(&self) -> ShardStats {
        let v: Vec<u64> = self
            .values
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        ShardStats::from_values(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_snapshot_is_identity() {
        let s = ShardStats {
            accepts: 3,
            bytes_out: 99,
            outbound_queued_bytes: 7,
            ..Default::default()
        };
        let p = PublishedStats::default();
        p.publish(&s);
        assert_eq!(p.snapshot(), s);
        assert_eq!(ShardStats::NAMES.len(), s.values().len());
        assert_eq!(ShardStats::DOCS.len(), ShardStats::COUNT);
        assert!(ShardStats::DOCS.iter().all(|d| !d.trim().is_empty()));
    }

    #[test]
    fn one_counter_is_read_by_its_position() {
        let s = ShardStats {
            sessions: 5,
            ..Default::default()
        };
        let p = PublishedStats::default();
        p.publish(&s);
        assert_eq!(ShardStats::NAMES[SESSIONS], "sessions");
        assert_eq!(p.value(SESSIONS), 5);
        assert_eq!(p.value(usize::MAX), 0);
    }
}

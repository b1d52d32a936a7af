//! MQTT 3.1.1 connections in the core (`[listen] mqtt`, `mqtt_tls`): the
//! mapping of an MQTT session onto the gateway's sessions, topics,
//! backends and delivery. The codec and the session state machine are
//! `protocol::mqtt`; this is where they meet the connection table.
//!
//! The rules (docs/MQTT.md has them for users):
//! - CONNECT: the password is the token (a JWT, or what the auth webhook
//!   takes); the user name, if any, is a comma-separated list of apps (the
//!   `Hello.apps` of v1); the device label is `mqtt`. A refusal is the
//!   CONNACK code that says the same as v1's Error ([`refusal_verdict`]).
//! - Pushes: a topic push is a PUBLISH on its topic to the sessions whose
//!   filters match it; a user push on [`USER_PREFIX`](super::mqtt_publish::USER_PREFIX)`{user}` and a
//!   broadcast on [`BROADCAST_TOPIC`](super::mqtt_publish::BROADCAST_TOPIC), to every session of the user (all
//!   sessions), with no SUBSCRIBE needed, as for v1 clients. Plain pushes
//!   go at QoS 0, durable ones at QoS 1: the PUBACK is the Ack.
//! - A client PUBLISH is an uplink whose route is its topic name (or a
//!   `[[mqtt.route]]` prefix's route); at QoS 1
//!   its PUBACK goes once the backend answered 2xx. Any other answer closes
//!   the connection, so that the client publishes it again (DUP) on its
//!   next connection: 3.1.1 has no negative PUBACK.
//!
//! [`refusal_verdict`]: super::session::refusal_verdict

use bytes::Bytes;
use protocol::mqtt::server::{
    CloseReason as MqttClose, ConnectRequest, Event, StartError, Uplink, Will,
};
use protocol::mqtt::{QoS, SubAckCode};
use protocol::proto::{ErrorCode, Hello, KickCode};
use protocol::server::CloseReason;
use protocol::time::Millis;

use super::conn::flags;
use super::mqtt_publish::{MQTT_DEVICE, Publish};
use super::outbound::Frame;
use super::push::Message;
use super::{BackendCall, ShardCore};

/// Whether a topic filter has a wildcard (`+` or `#`): such filters live in
/// the shard's filter trie, the others in its topic index.
pub(super) fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// The apps an MQTT user name asks for: comma-separated, blanks trimmed,
/// empty entries dropped.
pub(super) fn apps_of(username: Option<&str>) -> Vec<String> {
    username
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// The v1 close reason that tells the rest of the core (counters, presence
/// events) the same as an MQTT session's; `None` for a lost connection,
/// which is v1's EOF (no reason of the protocol).
fn as_v1_close(reason: MqttClose) -> Option<CloseReason> {
    Some(match reason {
        MqttClose::ClientDisconnect => CloseReason::ClientBye,
        MqttClose::HandshakeTimeout => CloseReason::HandshakeTimeout,
        MqttClose::KeepAliveTimeout => CloseReason::IdleTimeout,
        MqttClose::Refused(_) => CloseReason::Rejected(ErrorCode::Unauthorized),
        MqttClose::ServerClosed => CloseReason::Kicked(KickCode::Unspecified),
        MqttClose::ConnectionLost => return None,
        _ => CloseReason::ProtocolError(ErrorCode::BadFrame),
    })
}

impl ShardCore {
    /// Bytes of MQTT connection `key` into its session.
    pub(super) fn mqtt_received(&mut self, now: Millis, key: u32, data: &[u8]) {
        if let Some(conn) = self.conns.get_mut(key as usize) {
            conn.session
                .handle_input(now, data, &self.settings, &mut self.out);
        }
    }

    /// The peer of MQTT connection `key` went without DISCONNECT: the
    /// session ends with `ConnectionLost` (its will is due).
    pub(super) fn mqtt_connection_lost(&mut self, now: Millis, key: u32) {
        if let Some(m) = self
            .conns
            .get_mut(key as usize)
            .and_then(|c| c.session.as_mqtt())
        {
            m.connection_lost(&mut self.out.mqtt);
            self.handle_output(now, key);
        }
    }

    /// Moves an MQTT session's packets to the wire (they need no framing;
    /// TLS seals them at the send).
    pub(super) fn mqtt_transmit(&mut self, now: Millis, key: u32) {
        let out = &mut self.out.mqtt;
        self.stats.mqtt_packets_in += std::mem::take(&mut out.packets_in);
        self.stats.mqtt_packets_out += std::mem::take(&mut out.packets_out);
        self.stats.mqtt_unknown_acks += std::mem::take(&mut out.unknown_acks);
        if !out.transmit.is_empty() {
            let frame = Frame::copied(&out.transmit);
            out.transmit.clear();
            self.enqueue(now, key, frame);
        }
    }

    /// Acts on an MQTT session's events; whether there were any (they may
    /// produce more output).
    pub(super) fn mqtt_events(&mut self, now: Millis, key: u32) -> bool {
        if self.out.mqtt.events.is_empty() {
            return false;
        }
        let mut events = std::mem::take(&mut self.out.mqtt.events);
        for event in events.drain(..) {
            self.on_mqtt_event(now, key, event);
        }
        if self.out.mqtt.events.is_empty() {
            self.out.mqtt.events = events;
        }
        true
    }

    fn on_mqtt_event(&mut self, now: Millis, key: u32, event: Event) {
        match event {
            Event::Authenticate(connect) => self.mqtt_connect(now, key, connect),
            Event::Subscribe { packet_id, filters } => {
                self.mqtt_subscribe(now, key, packet_id, filters);
            }
            Event::Unsubscribe(filters) => self.mqtt_unsubscribe(key, filters),
            Event::Uplink(uplink) => self.mqtt_uplink(key, uplink),
            Event::Acked { push_id, .. } => {
                self.stats.acks += 1;
                let user = self.conns.get(key as usize).and_then(|c| c.user.clone());
                if let Some(user) = user {
                    self.tell_owner(&user, Message::Acked(user.clone(), vec![push_id].into()));
                }
            }
            Event::Will(will) => self.mqtt_will_due(key, will),
            Event::Closed(reason) => {
                if reason.is_violation() {
                    self.stats.mqtt_protocol_errors += 1;
                } else if let MqttClose::Refused(_) = reason {
                    self.stats.mqtt_refused += 1;
                }
                match as_v1_close(reason) {
                    Some(v1) => {
                        self.count_close(key, &v1);
                        self.presence_closing(key, &v1);
                    }
                    None => self.stats.client_closes += 1,
                }
                // Only a persistent session (clean session 0) is parked: it
                // outlives its connection, DISCONNECT included (§3.1.2.4),
                // but not a kick, a violation or a refusal.
                let persistent = self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| self.mqtt_sessions.client_id(key, c.generation).is_some());
                let kept = persistent
                    && matches!(
                        reason,
                        MqttClose::ClientDisconnect
                            | MqttClose::ConnectionLost
                            | MqttClose::KeepAliveTimeout
                    );
                if let Some(conn) = self.conns.get_mut(key as usize) {
                    if kept {
                        conn.clear(flags::NO_RESUME);
                    } else {
                        conn.set(flags::NO_RESUME);
                    }
                }
                self.begin_close(now, key);
            }
        }
    }

    /// A will fell due: it goes to the events backend as a `will` event
    /// (see `backend::events`); the backend decides whether to push it.
    fn mqtt_will_due(&mut self, key: u32, will: Will) {
        self.stats.mqtt_wills += 1;
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        let will = crate::backend::events::WillDue {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos as u8,
            retain: will.retain,
        };
        self.actions
            .push(super::Action::Backend(Box::new(BackendCall::Will {
                key,
                generation,
                will: Box::new(will),
            })));
    }

    /// A CONNECT: authenticated as the Hello it amounts to.
    fn mqtt_connect(&mut self, now: Millis, key: u32, connect: ConnectRequest) {
        let token = connect
            .password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or_default()
            .to_string();
        let apps = apps_of(connect.username.as_deref());
        let limits = &self.settings.server;
        let too_many = apps.len() > limits.max_apps as usize
            || apps.iter().any(|a| a.len() > limits.max_app_len as usize);
        if token.is_empty() || too_many {
            let why = if too_many {
                "too many apps in the user name, or one too long"
            } else {
                "no token in the password"
            };
            return self.refuse_hello(now, key, ErrorCode::Unauthorized, why);
        }
        if let (Some(client_id), Some(generation)) = (
            connect.client_id.as_deref(),
            self.conns.get(key as usize).map(|c| c.generation),
        ) {
            self.mqtt_sessions
                .connecting(key, generation, client_id, !connect.clean_session);
        }
        let hello = Hello {
            version: 1,
            token,
            device: MQTT_DEVICE.to_string(),
            apps,
            heartbeat_ms: 0,
            resume: Bytes::new(),
        };
        self.authenticate(now, key, hello);
    }

    /// A SUBSCRIBE: exact filters join the topic index as v1 topics do,
    /// wildcard ones the shard's filter trie; filters under `$` (the
    /// gateway's `$gateway/...`) are granted and change nothing (those
    /// pushes arrive anyway). Every grant is at most QoS 1. Past
    /// `[protocol] max_topics` subscriptions a filter gets 0x80.
    fn mqtt_subscribe(
        &mut self,
        now: Millis,
        key: u32,
        packet_id: u16,
        filters: Vec<(String, QoS)>,
    ) {
        let max = self.settings.server.max_topics as usize;
        let mut held = self.conns.get(key as usize).map_or(0, |c| {
            c.topics.as_ref().map_or(0, |t| t.len()) + self.filters.held_by(key)
        });
        let mut codes = Vec::with_capacity(filters.len());
        let (mut exact, mut wild) = (Vec::new(), Vec::new());
        for (filter, qos) in filters {
            let granted = if qos == QoS::AtMostOnce {
                SubAckCode::GrantedQos0
            } else {
                SubAckCode::GrantedQos1
            };
            if filter.starts_with('$') {
                codes.push(granted);
                continue;
            }
            if held >= max {
                codes.push(SubAckCode::Failure);
                continue;
            }
            held += 1;
            if is_wildcard(&filter) {
                wild.push(filter);
            } else {
                exact.push(filter);
            }
            codes.push(granted);
        }
        self.join_filters(key, wild.iter().map(String::as_str));
        self.subscribe(now, key, exact);
        if let Some(m) = self
            .conns
            .get_mut(key as usize)
            .filter(|c| !c.has(flags::CLOSING))
            .and_then(|c| c.session.as_mqtt())
        {
            // The codes are one byte each: the SUBACK always fits.
            let _ = m.suback(packet_id, &codes, &mut self.out.mqtt);
        }
    }

    /// A resumed persistent session's subscriptions back: exact topics
    /// to the topic index, wildcard filters to the trie.
    pub(super) fn mqtt_resubscribe(&mut self, now: Millis, key: u32, topics: Vec<String>) {
        let (wild, exact): (Vec<String>, Vec<String>) =
            topics.into_iter().partition(|f| is_wildcard(f));
        self.join_filters(key, wild.iter().map(String::as_str));
        self.subscribe(now, key, exact);
    }

    /// Subscribes `key` (a session, or a parked session's stand-in) to
    /// wildcard `filters`; with the shard's first filter, every shard
    /// learns that topic pushes must visit this one.
    pub(super) fn join_filters<'a>(
        &mut self,
        key: u32,
        filters: impl IntoIterator<Item = &'a str>,
    ) {
        let mut joined = false;
        for f in filters {
            joined |= self.filters.subscribe(f, key);
        }
        if joined {
            self.routing(|router, out| router.join_wildcards(out));
        }
    }

    /// Drops every wildcard filter of `key`; with the shard's last, every
    /// shard learns that topic pushes need not visit this one.
    pub(super) fn leave_all_filters(&mut self, key: u32) {
        if self.filters.remove_session(key) {
            self.routing(|router, out| router.leave_wildcards(out));
        }
    }

    fn mqtt_unsubscribe(&mut self, key: u32, filters: Vec<String>) {
        let (wild, exact): (Vec<String>, Vec<String>) =
            filters.into_iter().partition(|f| is_wildcard(f));
        let mut left = false;
        for f in &wild {
            left |= self.filters.unsubscribe(f, key);
        }
        if left {
            self.routing(|router, out| router.leave_wildcards(out));
        }
        self.unsubscribe(key, exact);
    }

    /// A client PUBLISH: the uplink of route = its topic name, or the
    /// route of the longest `[[mqtt.route]]` prefix that matches it. Its
    /// request id is the QoS 1 packet id (0 at QoS 0), for the PUBACK.
    fn mqtt_uplink(&mut self, key: u32, uplink: Uplink) {
        let app = self
            .conns
            .get(key as usize)
            .and_then(|c| {
                super::names::app_names(&self.app_names, c.apps)
                    .into_iter()
                    .next()
            })
            .unwrap_or_default();
        let route = self
            .settings
            .config
            .mqtt
            .route_for(&uplink.topic)
            .to_string();
        let v1 = protocol::proto::Uplink {
            request_id: u64::from(uplink.packet_id),
            app,
            route,
            payload: uplink.payload,
        };
        self.forward_uplink(key, v1);
    }

    /// The backend answered MQTT connection `key`'s uplink `request_id`
    /// with `status`: a QoS 1 PUBLISH is PUBACKed on 2xx; on anything else
    /// the connection closes so that the client sends it again.
    pub(super) fn mqtt_uplink_answered(
        &mut self,
        now: Millis,
        key: u32,
        request_id: u64,
        status: u32,
    ) {
        let Ok(packet_id) = u16::try_from(request_id) else {
            return;
        };
        let Some(m) = self
            .conns
            .get_mut(key as usize)
            .and_then(|c| c.session.as_mqtt())
        else {
            return;
        };
        if packet_id == 0 {
            // QoS 0: nobody waits for the answer.
        } else if (200..300).contains(&status) {
            m.puback(packet_id, &mut self.out.mqtt);
        } else {
            self.stats.mqtt_uplinks_failed += 1;
            m.close(&mut self.out.mqtt);
        }
        self.handle_output(now, key);
    }

    /// Queues `publishes` to MQTT connection `key`; returns whether any
    /// was queued. A QoS 1 PUBLISH takes a packet id from the session's
    /// window; with the window full it is not sent now (the inbox sends it
    /// again after its Ack timeout).
    pub(super) fn mqtt_deliver(&mut self, now: Millis, key: u32, publishes: &[Publish]) -> bool {
        let mut queued = false;
        for p in publishes {
            let frame = match p {
                Publish::Qos0(bytes) => Frame::from(bytes.clone()),
                Publish::Qos1 {
                    publish,
                    push_id,
                    redelivery,
                } => {
                    let Some(m) = self
                        .conns
                        .get_mut(key as usize)
                        .and_then(|c| c.session.as_mqtt())
                    else {
                        return queued;
                    };
                    let id = match m.start_qos1(*push_id, &self.settings.mqtt) {
                        Ok(id) => id,
                        Err(StartError::WindowFull) => {
                            self.stats.mqtt_window_full += 1;
                            continue;
                        }
                        Err(_) => continue,
                    };
                    let mut bytes = Vec::with_capacity(publish.packet_len());
                    publish.write(id, *redelivery, &mut bytes);
                    Frame::from(Bytes::from(bytes))
                }
            };
            queued |= self.enqueue(now, key, frame);
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_list_apps() {
        assert_eq!(apps_of(None), Vec::<String>::new());
        assert_eq!(apps_of(Some("")), Vec::<String>::new());
        assert_eq!(apps_of(Some("chat, news,,")), vec!["chat", "news"]);
    }
}

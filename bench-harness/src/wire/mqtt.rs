//! The harness's MQTT 3.1.1 client, sans-IO: CONNECT/CONNACK,
//! SUBSCRIBE/SUBACK, PUBLISH at QoS 0 and 1 with PUBACK, PINGREQ/PINGRESP,
//! DISCONNECT. Only what the scenarios need. The packets are encoded and
//! decoded by `protocol::mqtt`, the codec the gateway's MQTT listener uses:
//! one codec, tested and fuzzed once.
//!
//! The same client speaks to a broker (`--peer mqtt|mqtt-qos1`: anonymous,
//! a SUBSCRIBE per topic) and to the gateway's MQTT listener (`--peer
//! gateway --transport mqtt`, [`MqttClient::for_gateway`]): there the
//! CONNECT carries the user's token as its password and an empty user name
//! (no apps; 3.1.1 wants a user name flag beside a password, §3.1.2.9),
//! and pushes to the user or to everyone arrive on `$gateway/user/{U}` and
//! `$gateway/all` without a SUBSCRIBE. Every PUBLISH carrying a stamp is a
//! delivery, whatever its topic.

use protocol::mqtt::encode::{
    encode_connect, encode_disconnect, encode_pingreq, encode_puback, encode_publish,
    encode_subscribe,
};
use protocol::mqtt::{
    Connect, ConnectReturnCode, DecodeError, Decoded, EncodeError, Packet, Publish, QoS,
    SubAckCode, decode_packet,
};
use protocol::time::Millis;

use super::{Identity, WireEvent};
use crate::stamp;

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 1 << 20;

/// The QoS numbered `qos` (the scenarios use 0 and 1; anything higher is 1:
/// the harness never speaks QoS 2).
fn qos_of(qos: u8) -> QoS {
    if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Writes a CONNECT (clean session) for `client_id` with `keepalive_s`;
/// with a `password` (the gateway's token) also an empty user name, which
/// 3.1.1 requires beside a password and the gateway reads as "no apps".
pub fn connect(
    client_id: &str,
    keepalive_s: u16,
    password: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_connect(
        &Connect {
            clean_session: true,
            keep_alive: keepalive_s,
            client_id,
            username: password.map(|_| ""),
            password,
            ..Connect::default()
        },
        out,
    )
}

/// Writes a PUBLISH of `payload` to `topic` at `qos` (packet id used when qos > 0).
pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let qos = qos_of(qos);
    encode_publish(
        &Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
            payload,
        },
        out,
    )
}

/// Writes a SUBSCRIBE to one topic filter.
pub fn subscribe(
    topic: &str,
    qos: u8,
    packet_id: u16,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_subscribe(packet_id, &[(topic, qos_of(qos))], out)
}

/// Decodes one packet from the broker at the start of `buf`: (packet,
/// bytes used), or `Ok(None)` when incomplete.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    match decode_packet(buf, MAX_PACKET)? {
        Decoded::Packet { packet, len } => Ok(Some((packet, len))),
        Decoded::NeedMore(_) => Ok(None),
    }
}

/// One MQTT subscriber/connection.
#[derive(Debug)]
pub struct MqttClient {
    client_id: String,
    qos: u8,
    keepalive_ms: u64,
    next_ping: Millis,
    pending: Vec<u8>,
    established: bool,
    closed: bool,
    next_packet_id: u16,
    handshake_deadline: Millis,
    /// The CONNECT's password (the gateway's token), until it is written.
    password: Option<String>,
    /// A packet that could not be encoded (a topic over 65535 bytes):
    /// reported as `Closed` by the next `input` or `tick`.
    fault: Option<EncodeError>,
}

/// How long a client waits for CONNACK.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

impl MqttClient {
    /// A client for `id` subscribing at `qos`.
    #[must_use]
    pub fn new(id: &Identity, qos: u8, now: Millis) -> Self {
        let keepalive_ms = u64::from(id.heartbeat_ms.max(1000));
        Self {
            client_id: id.user.clone(),
            qos,
            keepalive_ms,
            next_ping: now.saturating_add(keepalive_ms),
            pending: Vec::new(),
            established: false,
            closed: false,
            next_packet_id: 1,
            handshake_deadline: now.saturating_add(HANDSHAKE_TIMEOUT_MS),
            password: None,
            fault: None,
        }
    }

    /// A client of the gateway's MQTT listener for `id`: client id the
    /// user, password its token, subscriptions at QoS 0 (plain pushes).
    #[must_use]
    pub fn for_gateway(id: &Identity, now: Millis) -> Self {
        Self {
            password: Some(id.token.clone()),
            ..Self::new(id, 0, now)
        }
    }

    /// Whether the session is over (and has said why).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes CONNECT.
    pub fn start(&mut self, now: Millis, out: &mut Vec<u8>) {
        // The broker allows 1.5 × keepalive of silence; we ping every keepalive.
        let ka = u16::try_from(self.keepalive_ms.div_ceil(1000)).unwrap_or(u16::MAX);
        let password = self.password.take();
        let password = password.as_ref().map(String::as_bytes);
        if let Err(e) = connect(&self.client_id, ka, password, out) {
            self.fault = Some(e);
        }
        self.next_ping = now.saturating_add(self.keepalive_ms);
        self.handshake_deadline = now.saturating_add(HANDSHAKE_TIMEOUT_MS);
    }

    /// Writes SUBSCRIBE.
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        if let Err(e) = subscribe(topic, self.qos, id, out) {
            self.fault = Some(e);
        }
    }

    /// Reports a packet that could not be encoded as the end of the session.
    fn report_fault(&mut self, ev: &mut Vec<WireEvent>) -> bool {
        let Some(e) = self.fault.take() else {
            return false;
        };
        self.closed = true;
        ev.push(WireEvent::Closed(format!("mqtt: cannot encode: {e}")));
        true
    }

    /// Feeds bytes from the broker.
    pub fn input(&mut self, _now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        if self.closed || self.report_fault(ev) {
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            match decode(&buf[at..]) {
                Ok(Some((pkt, n))) => {
                    at += n;
                    self.on_packet(pkt, ev, out);
                    if self.closed {
                        return;
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    self.closed = true;
                    ev.push(WireEvent::Closed(format!("mqtt: {why}")));
                    return;
                }
            }
        }
        buf.drain(..at);
        self.pending = buf;
    }

    fn on_packet(&mut self, pkt: Packet<'_>, ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        match pkt {
            Packet::ConnAck(ack)
                if ack.code == ConnectReturnCode::Accepted && !self.established =>
            {
                self.established = true;
                ev.push(WireEvent::Established);
            }
            Packet::ConnAck(ack) => {
                self.closed = true;
                ev.push(WireEvent::Closed(format!(
                    "mqtt: CONNACK refused (code {}{})",
                    ack.code as u8,
                    refusal_name(ack.code)
                )));
            }
            // One filter per SUBSCRIBE: 0x80 is the server saying no
            // (§3.9.3), which leaves the connection without its topic.
            Packet::SubAck(ack) if ack.codes().any(|c| c == SubAckCode::Failure) => {
                self.closed = true;
                ev.push(WireEvent::Closed(
                    "mqtt: SUBACK refused the subscription (0x80)".into(),
                ));
            }
            Packet::SubAck(_) => ev.push(WireEvent::Subscribed),
            Packet::Publish(p) => {
                if p.qos != QoS::AtMostOnce {
                    // A decoded QoS 1 PUBLISH has a non-zero id: this writes.
                    let _ = encode_puback(p.packet_id, out);
                }
                ev.push(WireEvent::Delivery(stamp::decode(p.payload)));
            }
            _ => {}
        }
    }

    /// Sends PINGREQ every keepalive once established; before that, closes
    /// when no CONNACK came in [`HANDSHAKE_TIMEOUT_MS`]. Returns when to
    /// call again.
    pub fn tick(
        &mut self,
        now: Millis,
        ev: &mut Vec<WireEvent>,
        out: &mut Vec<u8>,
    ) -> Option<Millis> {
        if self.closed || self.report_fault(ev) {
            return None;
        }
        if !self.established {
            if now >= self.handshake_deadline {
                self.closed = true;
                ev.push(WireEvent::Closed(
                    "mqtt: no CONNACK (handshake timeout)".into(),
                ));
                return None;
            }
            return Some(self.handshake_deadline);
        }
        if now >= self.next_ping {
            encode_pingreq(out);
            self.next_ping = now.saturating_add(self.keepalive_ms);
        }
        Some(self.next_ping)
    }

    /// Writes DISCONNECT.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        if !self.closed {
            encode_disconnect(out);
            self.closed = true;
        }
    }
}

/// A CONNACK refusal's meaning (§3.2.2.3), for the failure counts.
fn refusal_name(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Accepted => "",
        ConnectReturnCode::UnacceptableProtocolVersion => ", unacceptable protocol version",
        ConnectReturnCode::IdentifierRejected => ", identifier rejected",
        ConnectReturnCode::ServerUnavailable => ", server unavailable",
        ConnectReturnCode::BadUsernameOrPassword => ", bad user name or password",
        ConnectReturnCode::NotAuthorized => ", not authorized",
    }
}

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;

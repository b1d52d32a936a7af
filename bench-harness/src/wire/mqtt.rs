//! The harness's MQTT 3.1.1 client, sans-IO: CONNECT/CONNACK,
//! SUBSCRIBE/SUBACK, PUBLISH at QoS 0 and 1 with PUBACK, PINGREQ/PINGRESP,
//! DISCONNECT. Only what the scenarios need. The packets are encoded and
//! decoded by `protocol::mqtt`, the codec the gateway's MQTT listener uses:
//! one codec, tested and fuzzed once.

use protocol::mqtt::encode::{
    encode_connect, encode_disconnect, encode_pingreq, encode_puback, encode_publish,
    encode_subscribe,
};
use protocol::mqtt::{
    Connect, ConnectReturnCode, DecodeError, Decoded, EncodeError, Packet, Publish, QoS,
    decode_packet,
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

/// Writes a CONNECT (clean session) for `client_id` with `keepalive_s`.
pub fn connect(client_id: &str, keepalive_s: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_connect(
        &Connect {
            clean_session: true,
            keep_alive: keepalive_s,
            client_id,
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
            fault: None,
        }
    }

    /// Writes CONNECT.
    pub fn start(&mut self, now: Millis, out: &mut Vec<u8>) {
        // The broker allows 1.5 × keepalive of silence; we ping every keepalive.
        let ka = u16::try_from(self.keepalive_ms.div_ceil(1000)).unwrap_or(u16::MAX);
        if let Err(e) = connect(&self.client_id, ka, out) {
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
                    "mqtt: CONNACK refused (code {})",
                    ack.code as u8
                )));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            user: "c1".into(),
            token: String::new(),
            heartbeat_ms: 30_000,
        }
    }

    #[test]
    fn connect_bytes_match_the_spec() {
        let mut out = Vec::new();
        connect("c1", 30, &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'c', b'1'
            ]
        );
    }

    #[test]
    fn publish_lengths_cross_the_varint_boundaries() {
        // Body = 2 + 1 (topic "t") + payload: remaining lengths 127, 128, 16383, 16384.
        for (body, header) in [(127usize, 2usize), (128, 3), (16_383, 3), (16_384, 4)] {
            let mut out = Vec::new();
            publish("t", &vec![1u8; body - 3], 0, 0, &mut out).unwrap();
            assert_eq!(out.len(), header + body, "{body}");
            let (pkt, n) = decode(&out).unwrap().unwrap();
            assert_eq!(n, out.len());
            assert!(matches!(pkt, Packet::Publish(p) if p.payload.len() == body - 3));
        }
    }

    #[test]
    fn publish_round_trips_at_both_qos() {
        for qos in [0u8, 1] {
            let mut out = Vec::new();
            publish("t/x", &[7u8; 300], qos, 9, &mut out).unwrap();
            let (pkt, n) = decode(&out).unwrap().unwrap();
            assert_eq!(n, out.len());
            assert_eq!(
                pkt,
                Packet::Publish(Publish {
                    dup: false,
                    qos: qos_of(qos),
                    retain: false,
                    topic: "t/x",
                    packet_id: if qos > 0 { 9 } else { 0 },
                    payload: &[7u8; 300]
                })
            );
            assert_eq!(decode(&out[..out.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn a_topic_that_cannot_be_encoded_closes_the_client() {
        let mut c = MqttClient::new(&id(), 0, Millis(0));
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.start(Millis(0), &mut out);
        out.clear();
        c.subscribe(&"x".repeat(70_000), &mut out);
        assert!(out.is_empty());
        assert_eq!(c.tick(Millis(1), &mut ev, &mut out), None);
        assert!(matches!(&ev[0], WireEvent::Closed(m) if m.contains("cannot encode")));
    }

    #[test]
    fn client_session_flow_split_bytes_and_puback() {
        let mut c = MqttClient::new(&id(), 1, Millis(0));
        let mut out = Vec::new();
        c.start(Millis(0), &mut out);
        c.subscribe("t", &mut out);
        let mut from_broker = vec![0x20, 2, 0, 0, 0x90, 3, 0, 1, 1];
        let s = stamp::Stamp {
            seq: 3,
            intended_us: 99,
        };
        publish("t", stamp::encode(s, 64).as_bytes(), 1, 5, &mut from_broker).unwrap();
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        for chunk in from_broker.chunks(3) {
            c.input(Millis(1), chunk, &mut ev, &mut out);
        }
        assert_eq!(
            ev,
            vec![
                WireEvent::Established,
                WireEvent::Subscribed,
                WireEvent::Delivery(Some(s))
            ]
        );
        assert_eq!(out, [0x40, 2, 0, 5]);
        out.clear();
        assert_eq!(
            c.tick(Millis(30_000), &mut ev, &mut out),
            Some(Millis(60_000))
        );
        assert_eq!(out, [0xc0, 0]);
        // No CONNACK: the deadline is the handshake timeout, then it closes.
        let mut slow = MqttClient::new(&id(), 0, Millis(0));
        slow.start(Millis(0), &mut out);
        ev.clear();
        assert_eq!(
            slow.tick(Millis(50_000 - 40_001), &mut ev, &mut out),
            Some(Millis(10_000))
        );
        assert_eq!(slow.tick(Millis(10_000), &mut ev, &mut out), None);
        assert!(matches!(&ev[0], WireEvent::Closed(m) if m.contains("handshake timeout")));
    }

    #[test]
    fn refused_and_garbage_close() {
        let mut c = MqttClient::new(&id(), 0, Millis(0));
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.input(Millis(0), &[0x20, 2, 0, 5], &mut ev, &mut out);
        assert!(matches!(&ev[0], WireEvent::Closed(m) if m.contains("code 5")));
        let mut c = MqttClient::new(&id(), 0, Millis(0));
        ev.clear();
        c.input(
            Millis(0),
            &[0x30, 0xff, 0xff, 0xff, 0xff],
            &mut ev,
            &mut out,
        );
        assert!(matches!(&ev[0], WireEvent::Closed(_)));
    }
}

//! A minimal MQTT 3.1.1 client codec, sans-IO: CONNECT/CONNACK,
//! SUBSCRIBE/SUBACK, PUBLISH at QoS 0 and 1 with PUBACK, PINGREQ/PINGRESP,
//! DISCONNECT. Only what the scenarios need; written here because the
//! maintained MQTT crates are tied to an async runtime and own the socket.

use protocol::time::Millis;

use super::{Identity, WireEvent};
use crate::stamp;

/// Packet types (upper nibble of the fixed header).
mod ptype {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 1 << 20;

/// Appends the MQTT variable-length "remaining length".
fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&s[..usize::from(n)]);
}

/// A decoded fixed header: (first byte, header length, remaining length);
/// `Ok(None)` when more bytes are needed.
fn parse_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, &'static str> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut mult = 1usize;
    for i in 1..=4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len += usize::from(b & 0x7f) * mult;
        if b & 0x80 == 0 {
            if len > MAX_PACKET {
                return Err("packet too large");
            }
            return Ok(Some((first, i + 1, len)));
        }
        mult *= 128;
    }
    Err("bad remaining length")
}

/// Writes a CONNECT (clean session) for `client_id` with `keepalive_s`.
pub fn connect(client_id: &str, keepalive_s: u16, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(16 + client_id.len());
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&keepalive_s.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    out.push(ptype::CONNECT << 4);
    put_len(out, body.len());
    out.extend_from_slice(&body);
}

/// Writes a PUBLISH of `payload` to `topic` at `qos` (packet id used when qos > 0).
pub fn publish(topic: &str, payload: &[u8], qos: u8, packet_id: u16, out: &mut Vec<u8>) {
    let id_len = if qos > 0 { 2 } else { 0 };
    out.push((ptype::PUBLISH << 4) | ((qos & 3) << 1));
    put_len(out, 2 + topic.len() + id_len + payload.len());
    put_str(out, topic.as_bytes());
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Writes a SUBSCRIBE to one topic filter.
pub fn subscribe(topic: &str, qos: u8, packet_id: u16, out: &mut Vec<u8>) {
    out.push((ptype::SUBSCRIBE << 4) | 0x02);
    put_len(out, 2 + 2 + topic.len() + 1);
    out.extend_from_slice(&packet_id.to_be_bytes());
    put_str(out, topic.as_bytes());
    out.push(qos);
}

/// A packet the client cares about.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet<'a> {
    /// CONNACK with its return code.
    ConnAck(u8),
    /// SUBACK with its packet id.
    SubAck(u16),
    /// PUBLISH: topic, qos, packet id (0 at QoS 0), payload.
    Publish {
        /// Topic name.
        topic: &'a [u8],
        /// Delivery QoS.
        qos: u8,
        /// Packet id (QoS > 0).
        packet_id: u16,
        /// Application payload.
        payload: &'a [u8],
    },
    /// PUBACK with its packet id.
    PubAck(u16),
    /// PINGRESP.
    PingResp,
    /// Anything else (ignored).
    Other(u8),
}

/// Decodes one packet at the start of `buf`: (packet, bytes used), or
/// `Ok(None)` when incomplete.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, &'static str> {
    let Some((first, hlen, rlen)) = parse_header(buf)? else {
        return Ok(None);
    };
    let total = hlen + rlen;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[hlen..total];
    let u16_at = |i: usize| -> Result<u16, &'static str> {
        body.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or("short packet")
    };
    let pkt = match first >> 4 {
        ptype::CONNACK => Packet::ConnAck(*body.get(1).ok_or("short CONNACK")?),
        ptype::SUBACK => Packet::SubAck(u16_at(0)?),
        ptype::PUBACK => Packet::PubAck(u16_at(0)?),
        ptype::PINGRESP => Packet::PingResp,
        ptype::PUBLISH => {
            let qos = (first >> 1) & 3;
            let tlen = usize::from(u16_at(0)?);
            let topic = body.get(2..2 + tlen).ok_or("short PUBLISH topic")?;
            let mut at = 2 + tlen;
            let packet_id = if qos > 0 {
                let id = u16_at(at)?;
                at += 2;
                id
            } else {
                0
            };
            let payload = body.get(at..).ok_or("short PUBLISH")?;
            Packet::Publish {
                topic,
                qos,
                packet_id,
                payload,
            }
        }
        other => Packet::Other(other),
    };
    Ok(Some((pkt, total)))
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
        }
    }

    /// Writes CONNECT.
    pub fn start(&mut self, now: Millis, out: &mut Vec<u8>) {
        // The broker allows 1.5 × keepalive of silence; we ping every keepalive.
        let ka = u16::try_from(self.keepalive_ms.div_ceil(1000)).unwrap_or(u16::MAX);
        connect(&self.client_id, ka, out);
        self.next_ping = now.saturating_add(self.keepalive_ms);
        self.handshake_deadline = now.saturating_add(HANDSHAKE_TIMEOUT_MS);
    }

    /// Writes SUBSCRIBE.
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        subscribe(topic, self.qos, id, out);
    }

    /// Feeds bytes from the broker.
    pub fn input(&mut self, _now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        if self.closed {
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
            Packet::ConnAck(0) if !self.established => {
                self.established = true;
                ev.push(WireEvent::Established);
            }
            Packet::ConnAck(rc) => {
                self.closed = true;
                ev.push(WireEvent::Closed(format!(
                    "mqtt: CONNACK refused (code {rc})"
                )));
            }
            Packet::SubAck(_) => ev.push(WireEvent::Subscribed),
            Packet::Publish {
                qos,
                packet_id,
                payload,
                ..
            } => {
                if qos == 1 {
                    out.extend_from_slice(&[ptype::PUBACK << 4, 2]);
                    out.extend_from_slice(&packet_id.to_be_bytes());
                }
                ev.push(WireEvent::Delivery(stamp::decode(payload)));
            }
            Packet::PubAck(_) | Packet::PingResp | Packet::Other(_) => {}
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
        if self.closed {
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
        if self.established && now >= self.next_ping {
            out.extend_from_slice(&[ptype::PINGREQ << 4, 0]);
            self.next_ping = now.saturating_add(self.keepalive_ms);
        }
        Some(self.next_ping)
    }

    /// Writes DISCONNECT.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        if !self.closed {
            out.extend_from_slice(&[ptype::DISCONNECT << 4, 0]);
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
        connect("c1", 30, &mut out);
        assert_eq!(
            out,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'c', b'1'
            ]
        );
    }

    #[test]
    fn remaining_length_varint() {
        for (n, want) in [
            (0usize, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_len(&mut out, n);
            assert_eq!(out, want, "{n}");
        }
    }

    #[test]
    fn publish_round_trips_at_both_qos() {
        for qos in [0u8, 1] {
            let mut out = Vec::new();
            publish("t/x", &[7u8; 300], qos, 9, &mut out);
            let (pkt, n) = decode(&out).unwrap().unwrap();
            assert_eq!(n, out.len());
            assert_eq!(
                pkt,
                Packet::Publish {
                    topic: b"t/x",
                    qos,
                    packet_id: if qos > 0 { 9 } else { 0 },
                    payload: &[7u8; 300]
                }
            );
            assert_eq!(decode(&out[..out.len() - 1]).unwrap(), None);
        }
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
        publish("t", stamp::encode(s, 64).as_bytes(), 1, 5, &mut from_broker);
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

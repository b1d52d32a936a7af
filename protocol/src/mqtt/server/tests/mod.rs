//! Session tests, with simulated time and in-memory bytes.

mod handshake;
mod stock_clients;
mod traffic;
mod window;

use super::{CloseReason, Event, MqttConfig, MqttSession, Output, SessionState, Verdict};
use crate::mqtt::encode::{encode_connect, encode_publish, encode_subscribe};
use crate::mqtt::{Connect, Decoded, LastWill, Packet, Publish, QoS, decode_packet};
use crate::time::Millis;

fn cfg() -> MqttConfig {
    MqttConfig::default()
}

/// A CONNECT: client id "c1", clean session, keep-alive 30 s, user "alice"
/// with a token as password, and a will.
fn connect() -> Connect<'static> {
    Connect {
        clean_session: true,
        keep_alive: 30,
        client_id: "c1",
        will: Some(LastWill {
            topic: "status/c1",
            payload: b"offline",
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
        username: Some("alice"),
        password: Some(b"token"),
    }
}

fn connect_bytes(c: &Connect<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_connect(c, &mut out).unwrap();
    out
}

fn publish_bytes(topic: &str, qos: QoS, packet_id: u16, retain: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_publish(
        &Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id,
            payload: b"up",
        },
        &mut out,
    )
    .unwrap();
    out
}

fn subscribe_bytes(packet_id: u16, filters: &[(&str, QoS)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_subscribe(packet_id, filters, &mut out).unwrap();
    out
}

/// A session established at `now` from [`connect`], with an empty output.
fn established(now: Millis) -> (MqttSession, Output) {
    let cfg = cfg();
    let mut s = MqttSession::new(now, &cfg);
    let mut out = Output::new();
    s.handle_input(now, &connect_bytes(&connect()), &cfg, &mut out);
    assert!(matches!(out.events.as_slice(), [Event::Authenticate(_)]));
    s.verdict(
        now,
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    assert_eq!(out.transmit, [0x20, 2, 0, 0]);
    assert_eq!(s.state(), SessionState::Established);
    out.clear();
    (s, out)
}

/// The packets in `bytes` (the session's transmit), all whole.
fn sent(bytes: &[u8]) -> Vec<Packet<'_>> {
    let mut rest = bytes;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        match decode_packet(rest, usize::MAX) {
            Ok(Decoded::Packet { packet, len }) => {
                packets.push(packet);
                rest = &rest[len..];
            }
            other => panic!("session output is not whole packets: {other:?}"),
        }
    }
    packets
}

/// The reason of the one `Closed` event, which must be last.
fn closed_with(out: &Output) -> CloseReason {
    let closes = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closes, 1, "exactly one Closed: {:?}", out.events);
    match out.events.last() {
        Some(Event::Closed(reason)) => *reason,
        other => panic!("Closed is not last: {other:?}"),
    }
}

/// Whether a `Will` event came just before the close.
fn will_was_due(out: &Output) -> bool {
    let n = out.events.len();
    n >= 2 && matches!(out.events[n - 2], Event::Will(_))
}

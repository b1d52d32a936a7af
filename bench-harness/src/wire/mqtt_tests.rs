//! Unit tests of the MQTT client adapter: bytes against the spec, the
//! broker and gateway flows, refusals.

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
    connect("c1", 30, None, &mut out).unwrap();
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

/// `id()` with a token, as the shards make it for the gateway.
fn gateway_id() -> Identity {
    Identity {
        token: "a.jwt.token".into(),
        ..id()
    }
}

#[test]
fn a_gateway_client_connects_with_its_token_and_an_empty_user_name() {
    let mut c = MqttClient::for_gateway(&gateway_id(), Millis(0));
    let mut out = Vec::new();
    c.start(Millis(0), &mut out);
    // As the gateway's listener reads it.
    let Ok(Decoded::Packet {
        packet: Packet::Connect(connect),
        len,
    }) = decode_packet(&out, MAX_PACKET)
    else {
        panic!("not a CONNECT: {out:?}");
    };
    assert_eq!(len, out.len());
    assert_eq!(connect.client_id, "c1");
    assert!(connect.clean_session);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.username, Some(""));
    assert_eq!(connect.password, Some(&b"a.jwt.token"[..]));
    // The token is not kept once written; a broker client sends neither.
    assert_eq!(c.password, None);
    let mut out = Vec::new();
    MqttClient::new(&gateway_id(), 0, Millis(0)).start(Millis(0), &mut out);
    let Ok(Decoded::Packet {
        packet: Packet::Connect(connect),
        ..
    }) = decode_packet(&out, MAX_PACKET)
    else {
        panic!("not a CONNECT: {out:?}");
    };
    assert_eq!((connect.username, connect.password), (None, None));
}

#[test]
fn pushes_on_the_gateways_own_topics_are_deliveries() {
    let mut c = MqttClient::for_gateway(&gateway_id(), Millis(0));
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.start(Millis(0), &mut out);
    let mut from_gateway = vec![0x20, 2, 0, 0];
    let stamps: Vec<_> = (0..3)
        .map(|seq| stamp::Stamp {
            seq,
            intended_us: 7,
        })
        .collect();
    for (topic, s) in ["$gateway/user/c1", "$gateway/all", "news"]
        .iter()
        .zip(&stamps)
    {
        publish(
            topic,
            stamp::encode(*s, 64).as_bytes(),
            0,
            0,
            &mut from_gateway,
        )
        .unwrap();
    }
    out.clear();
    c.input(Millis(1), &from_gateway, &mut ev, &mut out);
    let mut want = vec![WireEvent::Established];
    want.extend(stamps.iter().map(|s| WireEvent::Delivery(Some(*s))));
    assert_eq!(ev, want);
    assert!(out.is_empty(), "QoS 0 needs no PUBACK: {out:?}");
}

#[test]
fn a_refused_subscription_or_connect_closes_with_its_reason() {
    let mut c = MqttClient::for_gateway(&gateway_id(), Millis(0));
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.start(Millis(0), &mut out);
    c.subscribe("news", &mut out);
    c.input(
        Millis(1),
        &[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0x80],
        &mut ev,
        &mut out,
    );
    assert_eq!(ev[0], WireEvent::Established);
    assert!(
        matches!(&ev[1..], [WireEvent::Closed(m)] if m.contains("SUBACK refused")),
        "{ev:?}"
    );
    // A granted one is the confirmation.
    let mut c = MqttClient::for_gateway(&gateway_id(), Millis(0));
    ev.clear();
    c.input(
        Millis(1),
        &[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0x00],
        &mut ev,
        &mut out,
    );
    assert_eq!(ev, [WireEvent::Established, WireEvent::Subscribed]);
    // A wrong token: CONNACK 5, named.
    let mut c = MqttClient::for_gateway(&gateway_id(), Millis(0));
    ev.clear();
    c.input(Millis(1), &[0x20, 2, 0, 5], &mut ev, &mut out);
    assert_eq!(
        ev,
        [WireEvent::Closed(
            "mqtt: CONNACK refused (code 5, not authorized)".into()
        )]
    );
}

#[test]
fn the_mqtt_transport_is_the_gateways_only() {
    use crate::wire::{PeerKind, Transport};
    assert_eq!(Transport::Mqtt.check(PeerKind::Gateway), Ok(()));
    let err = Transport::Mqtt.check(PeerKind::MqttQos1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--transport mqtt is for --peer gateway only (its MQTT listener); \
         --peer mqtt-qos1 runs over --transport tcp, ws, tls or wss"
    );
    // The gateway over its MQTT listener: a CONNECT, no layer.
    let mut wire = crate::wire::ClientWire::new(
        PeerKind::Gateway,
        Transport::Mqtt,
        &gateway_id(),
        Millis(0),
        0,
        None,
    )
    .unwrap();
    assert!(wire.link().is_plain());
    let mut out = Vec::new();
    wire.start(Millis(0), "127.0.0.1:1883", &mut out);
    assert_eq!(out[0], 0x10, "CONNECT first");
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

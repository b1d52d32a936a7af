//! An established session: keep-alive with simulated time, ping, subscribe
//! and unsubscribe, uplinks at each QoS, retain, the ends of a session,
//! packets a client may not send, limits, and chunked input.

use super::*;
use crate::mqtt::encode::{encode_disconnect, encode_pingreq, encode_unsubscribe};
use crate::mqtt::server::{Limit, RetainPolicy, Uplink};
use crate::mqtt::{PacketType, SubAckCode};

#[test]
fn keep_alive_expires_at_one_and_a_half_times_it() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(1_000));
    assert_eq!(s.keep_alive_ms(), 30_000);
    assert_eq!(s.deadline(&cfg), Some(Millis(46_000)));
    // Any packet restarts the clock.
    let mut ping = Vec::new();
    encode_pingreq(&mut ping);
    s.handle_input(Millis(40_000), &ping, &cfg, &mut out);
    assert_eq!(s.deadline(&cfg), Some(Millis(85_000)));
    s.handle_timeout(Millis(84_999), &cfg, &mut out);
    assert!(!s.is_closed());
    out.clear();
    s.handle_timeout(Millis(85_000), &cfg, &mut out);
    assert_eq!(closed_with(&out), CloseReason::KeepAliveTimeout);
    assert!(will_was_due(&out), "a timed-out client's will is due");
}

#[test]
fn keep_alive_is_clamped_to_the_bounds() {
    let cfg = cfg();
    for (asked_s, granted_ms) in [
        (30u16, 30_000u32),
        (1, 5_000),
        (0, 300_000),
        (65_535, 300_000),
        (300, 300_000),
    ] {
        assert_eq!(cfg.grant_keep_alive(asked_s), granted_ms, "{asked_s}");
        let mut s = MqttSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        let c = Connect {
            keep_alive: asked_s,
            ..connect()
        };
        s.handle_input(Millis(0), &connect_bytes(&c), &cfg, &mut out);
        s.verdict(
            Millis(0),
            &cfg,
            Verdict::Accept {
                session_present: false,
            },
            &mut out,
        );
        assert_eq!(
            s.deadline(&cfg),
            Some(Millis(u64::from(granted_ms) * 3 / 2)),
            "{asked_s}"
        );
    }
    // A misconfigured min > max does not panic: max wins.
    let odd = MqttConfig {
        keep_alive_min_ms: 10_000,
        keep_alive_max_ms: 1_000,
        ..cfg
    };
    assert_eq!(odd.grant_keep_alive(5), 1_000);
}

#[test]
fn pingreq_gets_pingresp() {
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(Millis(1), &[0xc0, 0, 0xc0, 0], &cfg(), &mut out);
    assert_eq!(out.transmit, [0xd0, 0, 0xd0, 0]);
    assert!(out.events.is_empty());
}

#[test]
fn subscribe_is_an_event_and_suback_carries_the_grants() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(0));
    let filters = [
        ("sport/+/score", QoS::AtLeastOnce),
        ("news/#", QoS::AtMostOnce),
        ("x", QoS::ExactlyOnce),
    ];
    s.handle_input(Millis(1), &subscribe_bytes(7, &filters), &cfg, &mut out);
    assert!(out.transmit.is_empty(), "SUBACK waits for the grants");
    let [
        Event::Subscribe {
            packet_id,
            filters: got,
        },
    ] = out.events.as_slice()
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(*packet_id, 7);
    let want: Vec<(String, QoS)> = filters.iter().map(|(f, q)| (f.to_string(), *q)).collect();
    assert_eq!(got, &want);
    s.suback(
        7,
        &[
            SubAckCode::GrantedQos1,
            SubAckCode::GrantedQos0,
            SubAckCode::Failure,
        ],
        &mut out,
    )
    .unwrap();
    assert_eq!(out.transmit, [0x90, 5, 0, 7, 0x01, 0x00, 0x80]);
}

#[test]
fn unsubscribe_is_answered_at_once() {
    let (mut s, mut out) = established(Millis(0));
    let mut bytes = Vec::new();
    encode_unsubscribe(9, &["a/+", "b/#"], &mut bytes).unwrap();
    s.handle_input(Millis(1), &bytes, &cfg(), &mut out);
    assert_eq!(out.transmit, [0xb0, 2, 0, 9]);
    assert_eq!(
        out.events,
        [Event::Unsubscribe(vec!["a/+".into(), "b/#".into()])]
    );
}

#[test]
fn uplinks_qos0_and_qos1_with_puback_on_confirmation() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(
        Millis(1),
        &publish_bytes("dev/1/temp", QoS::AtMostOnce, 0, false),
        &cfg,
        &mut out,
    );
    assert_eq!(
        out.events,
        [Event::Uplink(Uplink {
            topic: "dev/1/temp".into(),
            payload: bytes::Bytes::from_static(b"up"),
            qos: QoS::AtMostOnce,
            packet_id: 0,
            retain: false,
            dup: false,
        })]
    );
    out.clear();
    s.handle_input(
        Millis(2),
        &publish_bytes("dev/1/temp", QoS::AtLeastOnce, 12, false),
        &cfg,
        &mut out,
    );
    assert!(
        out.transmit.is_empty(),
        "no PUBACK before the backend answered"
    );
    assert!(matches!(
        out.events.as_slice(),
        [Event::Uplink(Uplink {
            packet_id: 12,
            qos: QoS::AtLeastOnce,
            ..
        })]
    ));
    assert_eq!(s.uplinks_in_flight(), 1);
    s.puback(12, &mut out);
    assert_eq!(out.transmit, [0x40, 2, 0, 12]);
    assert_eq!(s.uplinks_in_flight(), 0);
}

#[test]
fn unconfirmed_uplinks_are_bounded() {
    let cfg = MqttConfig {
        max_uplinks_in_flight: 2,
        ..cfg()
    };
    let (mut s, mut out) = established(Millis(0));
    for id in 1..=2 {
        s.handle_input(
            Millis(1),
            &publish_bytes("t", QoS::AtLeastOnce, id, false),
            &cfg,
            &mut out,
        );
    }
    assert!(!s.is_closed());
    s.handle_input(
        Millis(1),
        &publish_bytes("t", QoS::AtLeastOnce, 3, false),
        &cfg,
        &mut out,
    );
    assert_eq!(
        closed_with(&out),
        CloseReason::LimitExceeded(Limit::UplinksInFlight)
    );
}

#[test]
fn qos2_publish_is_not_supported() {
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(
        Millis(1),
        &publish_bytes("t", QoS::ExactlyOnce, 1, false),
        &cfg(),
        &mut out,
    );
    assert!(out.transmit.is_empty(), "no PUBREC");
    assert_eq!(closed_with(&out), CloseReason::Qos2Unsupported);
    assert!(will_was_due(&out));
}

#[test]
fn retain_is_refused_or_passed_through_per_policy() {
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(
        Millis(1),
        &publish_bytes("t", QoS::AtMostOnce, 0, true),
        &cfg(),
        &mut out,
    );
    assert_eq!(closed_with(&out), CloseReason::RetainRefused);

    let pass = MqttConfig {
        retain: RetainPolicy::PassThrough,
        ..cfg()
    };
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(
        Millis(1),
        &publish_bytes("t", QoS::AtMostOnce, 0, true),
        &pass,
        &mut out,
    );
    assert!(matches!(
        out.events.as_slice(),
        [Event::Uplink(Uplink { retain: true, .. })]
    ));
}

#[test]
fn disconnect_is_clean_and_discards_the_will() {
    let (mut s, mut out) = established(Millis(0));
    let mut bytes = Vec::new();
    encode_disconnect(&mut bytes);
    bytes.extend_from_slice(&[0xc0, 0]); // ignored: after the end
    s.handle_input(Millis(1), &bytes, &cfg(), &mut out);
    assert_eq!(out.events, [Event::Closed(CloseReason::ClientDisconnect)]);
    assert!(out.transmit.is_empty());
}

#[test]
fn lost_connections_and_server_closes_make_the_will_due() {
    let (mut s, mut out) = established(Millis(0));
    s.connection_lost(&mut out);
    assert_eq!(closed_with(&out), CloseReason::ConnectionLost);
    let Event::Will(will) = &out.events[0] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(
        (will.topic.as_str(), &will.payload[..], will.qos),
        ("status/c1", &b"offline"[..], QoS::AtLeastOnce)
    );

    let (mut s, mut out) = established(Millis(0));
    s.close(&mut out);
    assert_eq!(closed_with(&out), CloseReason::ServerClosed);
    assert!(will_was_due(&out));

    // No will in the CONNECT: none at the close.
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let c = Connect {
        will: None,
        ..connect()
    };
    s.handle_input(Millis(0), &connect_bytes(&c), &cfg, &mut out);
    s.verdict(
        Millis(0),
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    out.clear();
    s.connection_lost(&mut out);
    assert_eq!(out.events, [Event::Closed(CloseReason::ConnectionLost)]);
}

#[test]
fn packets_only_servers_send_or_qos2_steps_close() {
    for (bytes, kind) in [
        (vec![0x20, 2, 0, 0], PacketType::ConnAck),
        (vec![0x90, 3, 0, 1, 0], PacketType::SubAck),
        (vec![0xb0, 2, 0, 1], PacketType::UnsubAck),
        (vec![0xd0, 0], PacketType::PingResp),
        (vec![0x50, 2, 0, 1], PacketType::PubRec),
        (vec![0x62, 2, 0, 1], PacketType::PubRel),
        (vec![0x70, 2, 0, 1], PacketType::PubComp),
    ] {
        let (mut s, mut out) = established(Millis(0));
        s.handle_input(Millis(1), &bytes, &cfg(), &mut out);
        assert_eq!(closed_with(&out), CloseReason::UnexpectedPacket(kind));
        assert!(closed_with(&out).is_violation());
    }
}

#[test]
fn filter_count_and_topic_length_are_bounded() {
    let cfg = MqttConfig {
        max_filters: 2,
        max_topic_len: 8,
        ..cfg()
    };
    let cases: [(Vec<u8>, Limit); 3] = [
        (
            subscribe_bytes(1, &[("a", QoS::AtMostOnce); 3]),
            Limit::Filters,
        ),
        (
            subscribe_bytes(1, &[("123456789", QoS::AtMostOnce)]),
            Limit::TopicLength,
        ),
        (
            publish_bytes("123456789", QoS::AtMostOnce, 0, false),
            Limit::TopicLength,
        ),
    ];
    for (bytes, limit) in cases {
        let (mut s, mut out) = established(Millis(0));
        s.handle_input(Millis(1), &bytes, &cfg, &mut out);
        assert_eq!(closed_with(&out), CloseReason::LimitExceeded(limit));
    }
    // At the bounds: fine.
    let (mut s, mut out) = established(Millis(0));
    let ok = subscribe_bytes(1, &[("12345678", QoS::AtMostOnce); 2]);
    s.handle_input(Millis(1), &ok, &cfg, &mut out);
    assert!(matches!(out.events.as_slice(), [Event::Subscribe { .. }]));
}

#[test]
fn oversize_packets_are_refused_from_their_header() {
    let cfg = MqttConfig {
        max_packet: 100,
        ..cfg()
    };
    let (mut s, mut out) = established(Millis(0));
    // A PUBLISH header announcing 1000 bytes, fed alone.
    s.handle_input(Millis(1), &[0x30, 0xe8, 0x07], &cfg, &mut out);
    assert!(matches!(
        closed_with(&out),
        CloseReason::Malformed(crate::mqtt::DecodeError::TooLarge { .. })
    ));
    assert_eq!(s.pending_input(), 0);
}

/// Everything a session produced, with time and chunking the only variables.
fn run_chunked(stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<Event>) {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    for piece in stream.chunks(chunk) {
        s.handle_input(Millis(1), piece, &cfg, &mut out);
        if matches!(out.events.last(), Some(Event::Authenticate(_))) {
            s.verdict(
                Millis(1),
                &cfg,
                Verdict::Accept {
                    session_present: false,
                },
                &mut out,
            );
        }
    }
    (out.transmit, out.events)
}

#[test]
fn byte_at_a_time_equals_whole_buffer() {
    let mut stream = connect_bytes(&connect());
    stream.extend_from_slice(&subscribe_bytes(3, &[("a/#", QoS::AtLeastOnce)]));
    stream.extend_from_slice(&[0xc0, 0]);
    stream.extend_from_slice(&publish_bytes("a/b", QoS::AtLeastOnce, 5, false));
    stream.extend_from_slice(&publish_bytes("a/c", QoS::AtMostOnce, 0, false));
    stream.extend_from_slice(&[0x40, 2, 0, 99]); // PUBACK, nothing in flight
    stream.extend_from_slice(&[0xe0, 0]);
    let whole = run_chunked(&stream, stream.len());
    assert_eq!(whole.1.len(), 5, "{:?}", whole.1);
    assert_eq!(
        whole.1.last(),
        Some(&Event::Closed(CloseReason::ClientDisconnect))
    );
    for chunk in [1, 2, 3, 5, 16] {
        assert_eq!(run_chunked(&stream, chunk), whole, "chunk {chunk}");
    }
}

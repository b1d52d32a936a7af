//! From the first byte to CONNACK: the CONNECT rules, the verdicts and
//! their return codes, the handshake timeout, held input, and the size of a
//! session at rest.

use super::*;
use crate::mqtt::encode::encode_pingreq;
use crate::mqtt::{ConnectReturnCode, PacketType};

#[test]
fn a_session_at_rest_is_40_bytes() {
    let size = std::mem::size_of::<MqttSession>();
    assert!(size <= 40, "MqttSession is {size} bytes");
    // Established and idle: nothing on the heap.
    let (s, _) = established(Millis(0));
    assert_eq!(s.pending_input(), 0);
    assert_eq!(s.in_flight_len(), 0);
}

/// A connection slot holds a v1 or an MQTT session: the enum stays 40
/// bytes (the MQTT session's state leaves room for the tag).
#[test]
fn a_slot_for_either_protocol_is_40_bytes() {
    #[allow(dead_code)] // only measured
    enum Either {
        V1(crate::server::ServerSession),
        Mqtt(MqttSession),
    }
    let size = std::mem::size_of::<Either>();
    assert!(size <= 40, "{size} bytes");
}

#[test]
fn the_connect_fields_reach_the_caller() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(5), &connect_bytes(&connect()), &cfg, &mut out);
    assert!(out.transmit.is_empty(), "no CONNACK before the verdict");
    assert_eq!(s.state(), SessionState::Authenticating);
    let [Event::Authenticate(req)] = out.events.as_slice() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(req.client_id.as_deref(), Some("c1"));
    assert_eq!(req.username.as_deref(), Some("alice"));
    assert_eq!(req.password.as_deref(), Some(&b"token"[..]));
    assert!(req.clean_session);
    assert_eq!(req.keep_alive_s, 30);
    let will = req.will.as_ref().unwrap();
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("status/c1", &b"offline"[..])
    );
    assert_eq!(s.keep_alive_ms(), 30_000);
}

#[test]
fn accept_sends_connack_0_with_session_present() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let resume = Connect {
        clean_session: false,
        ..connect()
    };
    s.handle_input(Millis(0), &connect_bytes(&resume), &cfg, &mut out);
    out.clear();
    s.verdict(
        Millis(1),
        &cfg,
        Verdict::Accept {
            session_present: true,
        },
        &mut out,
    );
    assert_eq!(out.transmit, [0x20, 2, 1, 0]);
    assert_eq!(s.state(), SessionState::Established);
    assert!(out.events.is_empty());
}

#[test]
fn refusals_send_their_connack_code_and_close() {
    for (verdict, code) in [
        (
            Verdict::BadCredentials,
            ConnectReturnCode::BadUsernameOrPassword,
        ),
        (Verdict::NotAuthorized, ConnectReturnCode::NotAuthorized),
        (
            Verdict::IdentifierRejected,
            ConnectReturnCode::IdentifierRejected,
        ),
        (
            Verdict::ServerUnavailable,
            ConnectReturnCode::ServerUnavailable,
        ),
    ] {
        let cfg = cfg();
        let mut s = MqttSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        s.handle_input(Millis(0), &connect_bytes(&connect()), &cfg, &mut out);
        out.clear();
        s.verdict(Millis(0), &cfg, verdict, &mut out);
        assert_eq!(out.transmit, [0x20, 2, 0, code as u8], "{verdict:?}");
        assert_eq!(closed_with(&out), CloseReason::Refused(code));
        assert!(!will_was_due(&out), "a refused client has no will");
        assert!(s.is_closed());
    }
}

#[test]
fn an_unsupported_protocol_level_gets_connack_1() {
    // MQTT 5 (level 5) and 3.1 ("MQIsdp", level 3).
    for (name, level) in [(&b"MQTT"[..], 5u8), (&b"MQIsdp"[..], 3)] {
        let mut body = (name.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, 0x02, 0, 60, 0, 0]);
        let mut bytes = vec![0x10, body.len() as u8];
        bytes.extend_from_slice(&body);
        let cfg = cfg();
        let mut s = MqttSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        s.handle_input(Millis(0), &bytes, &cfg, &mut out);
        assert_eq!(out.transmit, [0x20, 2, 0, 1]);
        assert_eq!(
            closed_with(&out),
            CloseReason::Refused(ConnectReturnCode::UnacceptableProtocolVersion)
        );
    }
}

#[test]
fn client_id_rules() {
    let cfg = cfg();
    let run = |c: Connect<'_>| {
        let mut s = MqttSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        s.handle_input(Millis(0), &connect_bytes(&c), &cfg, &mut out);
        out
    };
    // Empty id, persistent session: nothing to key it by (§3.1.3-8).
    let out = run(Connect {
        client_id: "",
        clean_session: false,
        ..connect()
    });
    assert_eq!(out.transmit, [0x20, 2, 0, 2]);
    assert_eq!(
        closed_with(&out),
        CloseReason::Refused(ConnectReturnCode::IdentifierRejected)
    );
    // Empty id, clean session: the server assigns one (the caller names it).
    let out = run(Connect {
        client_id: "",
        clean_session: true,
        ..connect()
    });
    let [Event::Authenticate(req)] = out.events.as_slice() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(req.client_id, None);
    // Over the configured length.
    let long = "x".repeat(cfg.max_client_id_len + 1);
    let out = run(Connect {
        client_id: &long,
        ..connect()
    });
    assert_eq!(out.transmit, [0x20, 2, 0, 2]);
    // 23 bytes must be allowed (§3.1.3-5).
    let out = run(Connect {
        client_id: "0123456789abcdefghijklm",
        ..connect()
    });
    assert!(matches!(out.events.as_slice(), [Event::Authenticate(_)]));
}

#[test]
fn a_first_packet_other_than_connect_closes_at_its_first_byte() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(0), &[0x30], &cfg, &mut out);
    assert!(out.transmit.is_empty());
    assert_eq!(
        closed_with(&out),
        CloseReason::NotConnect(PacketType::Publish)
    );
    // Garbage as a first byte is malformed.
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(0), &[0x00, 0x00], &cfg, &mut out);
    assert!(matches!(closed_with(&out), CloseReason::Malformed(_)));
}

#[test]
fn no_connect_or_no_verdict_within_the_handshake_timeout_closes() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(1_000), &cfg);
    let mut out = Output::new();
    assert_eq!(s.deadline(&cfg), Some(Millis(11_000)));
    s.handle_timeout(Millis(10_999), &cfg, &mut out);
    assert!(out.is_empty());
    s.handle_timeout(Millis(11_000), &cfg, &mut out);
    assert_eq!(closed_with(&out), CloseReason::HandshakeTimeout);
    assert_eq!(s.deadline(&cfg), None);

    // CONNECT arrived, the verdict did not: same deadline, no will.
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(9_000), &connect_bytes(&connect()), &cfg, &mut out);
    assert_eq!(s.deadline(&cfg), Some(Millis(10_000)));
    out.clear();
    s.handle_timeout(Millis(10_000), &cfg, &mut out);
    assert_eq!(closed_with(&out), CloseReason::HandshakeTimeout);
    assert!(!will_was_due(&out));
}

#[test]
fn input_behind_connect_waits_for_the_verdict() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let mut bytes = connect_bytes(&connect());
    bytes.extend_from_slice(&subscribe_bytes(4, &[("a/#", QoS::AtLeastOnce)]));
    encode_pingreq(&mut bytes);
    bytes.extend_from_slice(&[0x30]); // the start of a PUBLISH
    s.handle_input(Millis(0), &bytes, &cfg, &mut out);
    assert_eq!(out.events.len(), 1);
    assert!(s.pending_input() > 0);
    out.clear();
    s.verdict(
        Millis(1),
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    // CONNACK first, then the answers to what was held, in order.
    assert_eq!(
        sent(&out.transmit)[..2],
        [
            Packet::ConnAck(crate::mqtt::ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted
            }),
            Packet::PingResp
        ]
    );
    assert!(matches!(
        out.events.as_slice(),
        [Event::Subscribe { packet_id: 4, .. }]
    ));
    assert_eq!(s.pending_input(), 1, "the partial PUBLISH is kept");
}

#[test]
fn too_much_input_behind_connect_closes() {
    let cfg = MqttConfig {
        max_packet: 64,
        ..cfg()
    };
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(0), &connect_bytes(&connect()), &cfg, &mut out);
    out.clear();
    s.handle_input(Millis(0), &[0xc0, 0].repeat(64), &cfg, &mut out);
    assert!(out.events.is_empty(), "exactly the bound is held");
    s.handle_input(Millis(0), &[0xc0], &cfg, &mut out);
    assert_eq!(
        closed_with(&out),
        CloseReason::LimitExceeded(super::super::Limit::PendingInput)
    );
}

#[test]
fn a_second_connect_closes_and_the_will_is_due() {
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(Millis(1), &connect_bytes(&connect()), &cfg(), &mut out);
    assert!(out.transmit.is_empty());
    assert_eq!(closed_with(&out), CloseReason::SecondConnect);
    assert!(will_was_due(&out));
    let Event::Will(will) = &out.events[0] else {
        panic!()
    };
    assert_eq!(will.topic, "status/c1");
    // Pipelined behind the first: found once the first is accepted.
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let twice = [connect_bytes(&connect()), connect_bytes(&connect())].concat();
    s.handle_input(Millis(0), &twice, &cfg, &mut out);
    out.clear();
    s.verdict(
        Millis(0),
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    assert_eq!(closed_with(&out), CloseReason::SecondConnect);
}

#[test]
fn a_malformed_connect_closes_without_connack() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let mut bytes = connect_bytes(&connect());
    bytes[9] |= 0x01; // the reserved CONNECT flag
    s.handle_input(Millis(0), &bytes, &cfg, &mut out);
    assert!(out.transmit.is_empty());
    assert!(matches!(closed_with(&out), CloseReason::Malformed(_)));
    assert!(closed_with(&out).is_violation());
}

#[test]
fn calls_after_the_close_are_ignored() {
    let (mut s, mut out) = established(Millis(0));
    s.connection_lost(&mut out);
    out.clear();
    let cfg = cfg();
    s.handle_input(Millis(1), &[0xc0, 0], &cfg, &mut out);
    s.handle_timeout(Millis(1_000_000), &cfg, &mut out);
    s.verdict(
        Millis(1),
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    s.puback(1, &mut out);
    s.suback(1, &[], &mut out).unwrap();
    s.close(&mut out);
    s.connection_lost(&mut out);
    assert!(out.is_empty());
}

//! Unit tests of the WebSocket layer under the gateway's v1 adapter against
//! the bytes a gateway sends: its Upgrade answer (from the protocol crate's
//! server side), v1 frames as unmasked binary messages, pings, fragments
//! and close frames; and under the MQTT adapter, as a byte stream.

use protocol::codec::{decode_frame, encode_frame, frame};
use protocol::proto::frame::Kind;
use protocol::proto::{Error as V1Error, ErrorCode, Push, Welcome};
use protocol::ws::encode::{write_binary, write_close, write_header};
use protocol::ws::handshake::{Handshake, HandshakeConfig, read_upgrade};
use protocol::ws::{FrameDecoder, WsOutput};

use super::ws::{WsLayer, close_label};
use super::*;
use crate::stamp::{self, Stamp};
use protocol::ws::{CloseCode, Opcode};

/// A gateway v1 client over WebSocket.
fn ws_client(seed: u64) -> ClientWire {
    ClientWire::new(
        PeerKind::Gateway,
        Transport::Ws,
        &identity(),
        Millis(0),
        seed,
        None,
    )
    .unwrap()
}

fn identity() -> Identity {
    Identity {
        user: "u1".into(),
        token: "tok".into(),
        heartbeat_ms: 30_000,
    }
}

/// One v1 frame as the gateway sends it over WebSocket: a binary message
/// holding the protobuf, no length prefix.
fn message(kind: Kind) -> Vec<u8> {
    let mut v1 = Vec::new();
    encode_frame(&frame(kind), &mut v1);
    let mut out = Vec::new();
    write_binary(&v1[protocol::codec::LENGTH_PREFIX..], &mut out);
    out
}

fn welcome() -> Kind {
    Kind::Welcome(Welcome {
        session: "s".into(),
        user: "u1".into(),
        heartbeat_ms: 30_000,
        ..Welcome::default()
    })
}

fn push(seq: u64) -> Kind {
    Kind::Push(Push {
        id: seq + 1,
        app: "bench".into(),
        topic: "news".into(),
        payload: stamp::encode(
            Stamp {
                seq,
                intended_us: 5,
            },
            32,
        )
        .into_bytes()
        .into(),
        ..Push::default()
    })
}

/// The v1 frames in the client's masked WebSocket frames, as the gateway's
/// own decoder reads them.
fn client_frames(wire: &[u8]) -> Vec<Kind> {
    let (mut dec, mut out) = (FrameDecoder::new(), WsOutput::new());
    dec.decode(wire, 65_536, &mut out);
    assert_eq!(out.end, None, "the client's frames are valid");
    let mut rest = &out.v1[..];
    let mut kinds = Vec::new();
    while let Some((f, used)) = decode_frame(rest, 65_536).ok().flatten() {
        kinds.extend(f.kind);
        rest = &rest[used..];
    }
    kinds
}

/// A client that sent its Upgrade and got the gateway's `101`; the masked
/// frames it wrote on the answer (the queued Hello).
fn upgraded() -> (ClientWire, Vec<u8>) {
    let mut c = ws_client(42);
    let mut out = Vec::new();
    c.start(Millis(0), "127.0.0.1:7102", &mut out);
    let Handshake::Accept(accepted) = read_upgrade(&out, &HandshakeConfig::default()) else {
        panic!("the gateway's side refused the Upgrade request");
    };
    assert!(
        out.ends_with(b"\r\n\r\n"),
        "nothing but the request before the answer"
    );
    let (mut ev, mut sent) = (Vec::new(), Vec::new());
    // The answer in two reads: a partial head is held.
    let (a, b) = accepted.response.split_at(20);
    c.input(Millis(1), a, &mut ev, &mut sent);
    assert!(sent.is_empty() && ev.is_empty());
    c.input(Millis(1), b, &mut ev, &mut sent);
    assert!(ev.is_empty(), "{ev:?}");
    (c, sent)
}

/// A client past its Welcome.
fn established() -> ClientWire {
    let (mut c, _) = upgraded();
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.input(Millis(2), &message(welcome()), &mut ev, &mut out);
    assert_eq!(ev, [WireEvent::Established]);
    c
}

#[test]
fn the_upgrade_comes_first_then_the_queued_frames_masked() {
    let mut c = ws_client(7);
    let mut out = Vec::new();
    c.start(Millis(0), "gw:1", &mut out);
    c.subscribe("news", &mut out);
    let head = String::from_utf8(out.clone()).unwrap();
    assert!(
        head.starts_with("GET / HTTP/1.1\r\nHost: gw:1\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Protocol: gateway.v1\r\n"));
    let Handshake::Accept(accepted) = read_upgrade(&out, &HandshakeConfig::default()) else {
        panic!("refused");
    };
    let (mut ev, mut sent) = (Vec::new(), Vec::new());
    c.input(Millis(1), &accepted.response, &mut ev, &mut sent);
    // Hello, Subscribe and the Ping that confirms it, each one masked
    // binary message.
    assert_eq!(sent[0], 0x82);
    assert_ne!(sent[1] & 0x80, 0, "client frames are masked");
    let kinds = client_frames(&sent);
    assert!(
        matches!(
            kinds[..],
            [Kind::Hello(_), Kind::Subscribe(_), Kind::Ping(_)]
        ),
        "{kinds:?}"
    );
    let Kind::Hello(h) = &kinds[0] else {
        unreachable!()
    };
    assert_eq!(h.token, "tok");
}

#[test]
fn an_answer_with_the_welcome_in_the_same_read_establishes() {
    let mut c = ws_client(1);
    let mut out = Vec::new();
    c.start(Millis(0), "gw:1", &mut out);
    let Handshake::Accept(accepted) = read_upgrade(&out, &HandshakeConfig::default()) else {
        panic!("refused");
    };
    let mut answer = accepted.response.clone();
    answer.extend(message(welcome()));
    let (mut ev, mut sent) = (Vec::new(), Vec::new());
    c.input(Millis(1), &answer, &mut ev, &mut sent);
    assert_eq!(ev, [WireEvent::Established]);
}

#[test]
fn a_push_message_is_a_delivery_and_nothing_is_held_at_rest() {
    let mut c = established();
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.input(Millis(3), &message(push(9)), &mut ev, &mut out);
    assert_eq!(
        ev,
        [WireEvent::Delivery(Some(Stamp {
            seq: 9,
            intended_us: 5
        }))]
    );
    assert!(out.is_empty());
    assert_eq!(c.link().ws_open_at_rest(), Some(true));
    // A message split over reads: held (boxed) until it completes.
    let wire = message(push(10));
    c.input(Millis(4), &wire[..5], &mut ev, &mut out);
    assert_eq!(c.link().ws_open_at_rest(), Some(false));
    c.input(Millis(4), &wire[5..], &mut ev, &mut out);
    assert_eq!(c.link().ws_open_at_rest(), Some(true));
    assert_eq!(ev.len(), 2);
}

#[test]
fn the_websocket_layer_adds_little_to_a_connection() {
    assert!(
        std::mem::size_of::<WsLayer>() <= 24,
        "{}",
        std::mem::size_of::<WsLayer>()
    );
}

#[test]
fn a_ping_gets_a_masked_pong_with_its_payload() {
    let mut c = established();
    let mut ping = Vec::new();
    write_header(Opcode::Ping, true, 3, None, &mut ping);
    ping.extend_from_slice(b"abc");
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.input(Millis(3), &ping, &mut ev, &mut out);
    assert!(ev.is_empty());
    assert_eq!(out.len(), 2 + 4 + 3);
    assert_eq!(out[0], 0x8a, "FIN + pong");
    assert_eq!(out[1], 0x80 | 3, "masked, 3 bytes");
    let mask = [out[2], out[3], out[4], out[5]];
    let payload: Vec<u8> = out[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    assert_eq!(payload, b"abc");
}

#[test]
fn a_fragmented_push_is_one_delivery() {
    let mut c = established();
    let mut v1 = Vec::new();
    encode_frame(&frame(push(3)), &mut v1);
    let body = &v1[protocol::codec::LENGTH_PREFIX..];
    let (a, b) = body.split_at(body.len() / 2);
    let mut wire = Vec::new();
    write_header(Opcode::Binary, false, a.len(), None, &mut wire);
    wire.extend_from_slice(a);
    // A ping between the fragments is allowed (RFC 6455 §5.4).
    write_header(Opcode::Ping, true, 0, None, &mut wire);
    write_header(Opcode::Continuation, true, b.len(), None, &mut wire);
    wire.extend_from_slice(b);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    // Fragments in separate reads.
    let cut = 2 + a.len();
    c.input(Millis(3), &wire[..cut], &mut ev, &mut out);
    assert!(ev.is_empty());
    c.input(Millis(3), &wire[cut..], &mut ev, &mut out);
    assert_eq!(
        ev,
        [WireEvent::Delivery(Some(Stamp {
            seq: 3,
            intended_us: 5
        }))]
    );
    assert_eq!(out[0], 0x8a, "the ping answered");
    assert_eq!(c.link().ws_open_at_rest(), Some(true));
}

#[test]
fn a_close_frame_ends_the_session_with_its_code_and_is_echoed() {
    let mut c = established();
    let mut close = Vec::new();
    write_close(CloseCode::GOING_AWAY, "drain", &mut close);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.input(Millis(3), &close, &mut ev, &mut out);
    assert_eq!(
        ev,
        [WireEvent::Closed(
            "websocket close 1001 (going away)".into()
        )]
    );
    assert_eq!(out[0], 0x88, "FIN + close");
    assert_eq!(out[1], 0x80 | 2, "masked, the code only");
    let code = [out[6] ^ out[2], out[7] ^ out[3]];
    assert_eq!(u16::from_be_bytes(code), 1001);
    // Over: nothing more is read, written or timed.
    ev.clear();
    out.clear();
    c.input(Millis(4), &message(push(1)), &mut ev, &mut out);
    assert!(ev.is_empty() && out.is_empty());
    assert_eq!(c.tick(Millis(100_000), &mut ev, &mut out), None);
    assert!(ev.is_empty() && out.is_empty());
}

#[test]
fn an_error_then_a_close_is_reported_once_by_the_error() {
    let (mut c, _) = upgraded();
    let mut wire = message(Kind::Error(V1Error::new(ErrorCode::Unauthorized, "no")));
    write_close(CloseCode::POLICY_VIOLATION, "", &mut wire);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.input(Millis(3), &wire, &mut ev, &mut out);
    assert_eq!(
        ev,
        [WireEvent::Closed(
            "gateway error: ERROR_CODE_UNAUTHORIZED (6)".into()
        )]
    );
}

#[test]
fn a_refused_upgrade_and_a_broken_frame_close_the_session() {
    let mut c = ws_client(3);
    let mut out = Vec::new();
    c.start(Millis(0), "gw:1", &mut out);
    let (mut ev, mut sent) = (Vec::new(), Vec::new());
    c.input(
        Millis(1),
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        &mut ev,
        &mut sent,
    );
    assert_eq!(
        ev,
        [WireEvent::Closed(
            "websocket upgrade refused: status 400".into()
        )]
    );
    assert!(sent.is_empty(), "the queued Hello is never sent");

    let mut c = established();
    ev.clear();
    // A masked frame from the server.
    c.input(Millis(3), &[0x82, 0x81, 1, 2, 3, 4, 5], &mut ev, &mut sent);
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(&ev[0], WireEvent::Closed(w) if w.starts_with("websocket: ")),
        "{ev:?}"
    );
}

#[test]
fn close_codes_are_named() {
    assert_eq!(close_label(None), "websocket close without a code");
    assert_eq!(
        close_label(Some(CloseCode(1013))),
        "websocket close 1013 (try again later)"
    );
    assert_eq!(close_label(Some(CloseCode(4001))), "websocket close 4001");
}

#[test]
fn mqtt_is_the_gateways_only_and_tls_needs_nothing_more_to_check() {
    use crate::wire::TransportError;
    for t in [
        Transport::Ws,
        Transport::Tls,
        Transport::Wss,
        Transport::Tcp,
    ] {
        for p in [
            PeerKind::Gateway,
            PeerKind::Mqtt,
            PeerKind::MqttQos1,
            PeerKind::Nats,
        ] {
            assert_eq!(t.check(p), Ok(()), "{t:?} {p:?}");
        }
    }
    assert_eq!(Transport::Mqtt.check(PeerKind::Gateway), Ok(()));
    let err = Transport::Mqtt.check(PeerKind::MqttQos1).unwrap_err();
    assert_eq!(
        err,
        TransportError::NeedsGateway {
            transport: "mqtt",
            listener: "MQTT",
            peer: "mqtt-qos1".into()
        }
    );
    assert!(
        err.to_string()
            .ends_with("--peer mqtt-qos1 runs over --transport tcp, ws, tls or wss"),
        "{err}"
    );
}

#[test]
fn a_tls_transport_without_settings_is_an_error_not_a_plain_connection() {
    let r = ClientWire::new(
        PeerKind::Gateway,
        Transport::Tls,
        &identity(),
        Millis(0),
        1,
        None,
    );
    assert_eq!(r.unwrap_err(), WireError::NoTlsSettings);
}

#[test]
fn mqtt_over_websocket_is_a_byte_stream_in_binary_messages() {
    let mut c = ClientWire::new(
        PeerKind::Mqtt,
        Transport::Ws,
        &identity(),
        Millis(0),
        9,
        None,
    )
    .unwrap();
    let mut out = Vec::new();
    c.start(Millis(0), "127.0.0.1:9001", &mut out);
    let head = String::from_utf8(out.clone()).unwrap();
    assert!(head.starts_with("GET /mqtt HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "CONNECT waits for the answer");
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        protocol::ws::handshake::accept_key(key.as_bytes())
    );
    // The answer, then a CONNACK split over two binary messages.
    let mut wire = answer.into_bytes();
    write_binary(&[0x20, 0x02], &mut wire);
    write_binary(&[0x00, 0x00], &mut wire);
    let (mut ev, mut sent) = (Vec::new(), Vec::new());
    c.input(Millis(1), &wire, &mut ev, &mut sent);
    assert_eq!(ev, [WireEvent::Established]);
    // The queued CONNECT went out as one masked binary message.
    assert_eq!(sent[0], 0x82);
    assert_ne!(sent[1] & 0x80, 0);
    let (mut dec, mut got) = (FrameDecoder::new(), WsOutput::new());
    dec.decode(&sent, 65_536, &mut got);
    assert_eq!(got.v1[4], 0x10, "an MQTT CONNECT: {:?}", got.v1);
}

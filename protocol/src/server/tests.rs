//! Unit tests of the server session, with simulated time.

use bytes::Bytes;

use super::*;
use crate::codec::{decode_frame, encode_frame, frame};
use crate::proto::{Ack, Bye, Hello, Ping, Push, Reply, Subscribe, Unsubscribe, Uplink};

fn cfg() -> ServerConfig {
    ServerConfig::default()
}

fn hello(heartbeat_ms: u32) -> Kind {
    Kind::Hello(Hello {
        version: 1,
        token: "tok".into(),
        device: "dev".into(),
        apps: vec!["chat".into()],
        heartbeat_ms,
        resume: Bytes::new(),
    })
}

fn bytes_of(kinds: &[Kind]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in kinds {
        encode_frame(&frame(k.clone()), &mut out);
    }
    out
}

/// Every frame in `buf` (which must hold only whole frames).
fn frames(buf: &[u8]) -> Vec<Kind> {
    let mut rest = buf;
    let mut got = Vec::new();
    while !rest.is_empty() {
        let (f, used) = decode_frame(rest, u32::MAX).unwrap().unwrap();
        got.push(f.kind.unwrap());
        rest = &rest[used..];
    }
    got
}

fn error_code_of(kind: &Kind) -> ErrorCode {
    match kind {
        Kind::Error(e) => ErrorCode::from_u32(e.code).unwrap(),
        other => panic!("not an error frame: {other:?}"),
    }
}

/// A session that has received Hello(heartbeat) at t=0 and been accepted at `at`.
fn established(heartbeat: u32, at: u64) -> (ServerSession, Output) {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    s.handle_input(Millis(0), &bytes_of(&[hello(heartbeat)]), &c, &mut out);
    assert!(matches!(out.events[..], [Event::Hello(_)]));
    out.clear();
    s.accept(Millis(at), &c, Welcome::default(), &mut out);
    assert_eq!(s.state(), SessionState::Established);
    out.clear();
    (s, out)
}

fn assert_closed_with(out: &Output, code: ErrorCode, reason: CloseReason) {
    let sent = frames(&out.transmit);
    assert_eq!(sent.len(), 1, "exactly one frame: {sent:?}");
    assert_eq!(error_code_of(&sent[0]), code);
    assert_eq!(out.events.last(), Some(&Event::Closed(reason)));
    assert_eq!(
        out.events
            .iter()
            .filter(|e| matches!(e, Event::Closed(_)))
            .count(),
        1
    );
}

#[test]
fn session_is_small() {
    assert!(
        std::mem::size_of::<ServerSession>() <= 64,
        "ServerSession is {} bytes",
        std::mem::size_of::<ServerSession>()
    );
}

#[test]
fn defaults_match_the_design() {
    let c = cfg();
    assert_eq!(c.max_frame, 65536);
    assert_eq!(c.handshake_timeout_ms, 10_000);
    assert_eq!(c.heartbeat_default_ms, 30_000);
    assert_eq!(c.heartbeat_min_ms, 5_000);
    assert_eq!(c.heartbeat_max_ms, 300_000);
    assert!((c.idle_factor - 2.5).abs() < f64::EPSILON);
    assert_eq!(c.max_topics, 64);
    assert_eq!(c.max_topic_len, 256);
    assert_eq!(c.max_apps, 16);
    assert_eq!(c.max_app_len, 64);
    assert_eq!(c.max_device_len, 128);
    assert_eq!(c.idle_timeout_ms(30_000), 75_000);
}

#[test]
fn handshake_then_welcome() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(100), &c);
    let mut out = Output::new();
    assert_eq!(s.state(), SessionState::AwaitingHello);
    assert_eq!(s.deadline(&c), Some(Millis(10_100)));

    s.handle_input(Millis(200), &bytes_of(&[hello(20_000)]), &c, &mut out);
    assert_eq!(s.state(), SessionState::Authenticating);
    assert!(out.transmit.is_empty());
    let Event::Hello(h) = &out.events[0] else {
        panic!("{:?}", out.events)
    };
    assert_eq!((h.token.as_str(), h.device.as_str()), ("tok", "dev"));
    // The handshake deadline still applies while authenticating.
    assert_eq!(s.deadline(&c), Some(Millis(10_100)));
    out.clear();

    let welcome = Welcome {
        session: "s1".into(),
        user: "alice".into(),
        heartbeat_ms: 1, // overwritten with the negotiated value
        resume: Bytes::from_static(b"r"),
        server_time_ms: 5,
        resumed: false,
        recovered: false,
    };
    s.accept(Millis(300), &c, welcome, &mut out);
    assert_eq!(s.state(), SessionState::Established);
    assert_eq!(s.heartbeat_ms(), 20_000);
    let sent = frames(&out.transmit);
    let [Kind::Welcome(w)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((w.session.as_str(), w.user.as_str()), ("s1", "alice"));
    assert_eq!(w.heartbeat_ms, 20_000);
    assert_eq!(w.resume, Bytes::from_static(b"r"));
    assert!(out.events.is_empty());
    assert_eq!(s.deadline(&c), Some(Millis(300 + 50_000)));
}

#[test]
fn heartbeat_is_clamped() {
    for (proposed, granted) in [
        (0, 30_000),
        (1, 5_000),
        (4_999, 5_000),
        (5_000, 5_000),
        (60_000, 60_000),
        (300_000, 300_000),
        (300_001, 300_000),
        (u32::MAX, 300_000),
    ] {
        let (s, _) = established(proposed, 0);
        assert_eq!(s.heartbeat_ms(), granted, "proposed {proposed}");
    }
    // A misconfigured range does not panic.
    let odd = ServerConfig {
        heartbeat_min_ms: 10,
        heartbeat_max_ms: 5,
        ..cfg()
    };
    assert_eq!(odd.negotiate_heartbeat(7), 5);
}

#[test]
fn frame_before_hello_is_refused() {
    let c = cfg();
    for first in [
        Kind::Ping(Ping { id: 1 }),
        Kind::Subscribe(Subscribe::default()),
        Kind::Bye(Bye {}),
        Kind::Push(Push::default()),
    ] {
        let mut s = ServerSession::new(Millis(0), &c);
        let mut out = Output::new();
        let mut input = bytes_of(&[first, hello(0)]);
        input.extend_from_slice(b"trailing garbage");
        s.handle_input(Millis(1), &input, &c, &mut out);
        assert_closed_with(
            &out,
            ErrorCode::HelloRequired,
            CloseReason::ProtocolError(ErrorCode::HelloRequired),
        );
        assert!(s.is_closed());
        assert_eq!(s.deadline(&c), None);
        assert_eq!(s.pending_input(), 0);
    }
}

#[test]
fn wrong_version_is_refused() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    let h = Kind::Hello(Hello {
        version: 2,
        ..Hello::default()
    });
    s.handle_input(Millis(1), &bytes_of(&[h]), &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::UnsupportedVersion,
        CloseReason::ProtocolError(ErrorCode::UnsupportedVersion),
    );
}

#[test]
fn handshake_timeout_closes() {
    let c = cfg();
    // Silent client.
    let mut s = ServerSession::new(Millis(1_000), &c);
    let mut out = Output::new();
    s.handle_timeout(Millis(10_999), &c, &mut out);
    assert!(out.is_empty());
    // A partial Hello does not extend the handshake.
    s.handle_input(Millis(5_000), &bytes_of(&[hello(0)])[..3], &c, &mut out);
    assert!(out.is_empty());
    s.handle_timeout(Millis(11_000), &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::HandshakeTimeout,
        CloseReason::HandshakeTimeout,
    );
    out.clear();
    s.handle_timeout(Millis(20_000), &c, &mut out);
    assert!(out.is_empty());

    // Hello received, but the gateway never answered.
    let mut s = ServerSession::new(Millis(0), &c);
    s.handle_input(Millis(10), &bytes_of(&[hello(0)]), &c, &mut out);
    out.clear();
    s.handle_timeout(Millis(10_000), &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::HandshakeTimeout,
        CloseReason::HandshakeTimeout,
    );
}

#[test]
fn idle_timeout_and_liveness() {
    let c = cfg();
    let (mut s, mut out) = established(10_000, 1_000); // idle after 25 s
    assert_eq!(s.deadline(&c), Some(Millis(26_000)));
    s.handle_timeout(Millis(25_999), &c, &mut out);
    assert!(out.is_empty());
    // Any frame refreshes liveness: a Pong here.
    s.handle_input(
        Millis(20_000),
        &bytes_of(&[Kind::Pong(Pong { id: 3 })]),
        &c,
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(s.deadline(&c), Some(Millis(45_000)));
    // A partial frame does not.
    let ping = bytes_of(&[Kind::Ping(Ping { id: 1 })]);
    s.handle_input(Millis(40_000), &ping[..2], &c, &mut out);
    assert_eq!(s.deadline(&c), Some(Millis(45_000)));
    s.handle_timeout(Millis(45_000), &c, &mut out);
    assert_closed_with(&out, ErrorCode::IdleTimeout, CloseReason::IdleTimeout);
    assert_eq!(s.pending_input(), 0);
    assert!(!s.pending.is_allocated());
}

#[test]
fn a_transport_keepalive_counts_as_liveness_once_established() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    // Before the Hello it does not hold the handshake timeout off.
    s.note_keepalive(Millis(4_000));
    assert_eq!(
        s.deadline(&c),
        Some(Millis(u64::from(c.handshake_timeout_ms)))
    );
    let (mut s, mut out) = established(10_000, 1_000); // idle after 25 s
    s.note_keepalive(Millis(20_000));
    assert_eq!(s.deadline(&c), Some(Millis(45_000)));
    // An older one never moves it back.
    s.note_keepalive(Millis(10_000));
    assert_eq!(s.deadline(&c), Some(Millis(45_000)));
    s.handle_timeout(Millis(44_999), &c, &mut out);
    assert!(out.is_empty());
}

#[test]
fn ping_gets_pong_with_same_id() {
    let c = cfg();
    let (mut s, mut out) = established(0, 0);
    let input = bytes_of(&[Kind::Ping(Ping { id: 42 }), Kind::Ping(Ping { id: 7 })]);
    s.handle_input(Millis(5), &input, &c, &mut out);
    assert_eq!(
        frames(&out.transmit),
        [Kind::Pong(Pong { id: 42 }), Kind::Pong(Pong { id: 7 })]
    );
    assert!(out.events.is_empty());
}

#[test]
fn requests_become_events_in_order() {
    let c = cfg();
    let (mut s, mut out) = established(0, 0);
    let uplink = Uplink {
        request_id: 9,
        app: "chat".into(),
        route: "send".into(),
        payload: Bytes::from_static(b"{}"),
    };
    let input = bytes_of(&[
        Kind::Subscribe(Subscribe {
            topics: vec!["a".into(), "b".into()],
        }),
        Kind::Ack(Ack { ids: vec![1, 2, 3] }),
        Kind::Uplink(uplink.clone()),
        Kind::Unsubscribe(Unsubscribe {
            topics: vec!["a".into()],
        }),
        Kind::Bye(Bye {}),
        Kind::Ping(Ping { id: 1 }), // after Bye: ignored
    ]);
    s.handle_input(Millis(5), &input, &c, &mut out);
    assert_eq!(
        out.events,
        [
            Event::Subscribe(vec!["a".into(), "b".into()]),
            Event::Ack(vec![1, 2, 3]),
            Event::Uplink(uplink),
            Event::Unsubscribe(vec!["a".into()]),
            Event::Closed(CloseReason::ClientBye),
        ]
    );
    assert!(out.transmit.is_empty(), "Bye is not answered");
    assert!(s.is_closed());
}

#[test]
fn too_many_topics_is_refused() {
    let c = ServerConfig {
        max_topics: 2,
        ..cfg()
    };
    let topics = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    for kind in [
        Kind::Subscribe(Subscribe { topics: topics(3) }),
        Kind::Unsubscribe(Unsubscribe { topics: topics(3) }),
    ] {
        let mut s = ServerSession::new(Millis(0), &c);
        let mut out = Output::new();
        s.handle_input(Millis(0), &bytes_of(&[hello(0)]), &c, &mut out);
        s.accept(Millis(0), &c, Welcome::default(), &mut out);
        out.clear();
        let ok = Kind::Subscribe(Subscribe { topics: topics(2) });
        s.handle_input(Millis(1), &bytes_of(&[ok, kind]), &c, &mut out);
        assert_eq!(out.events[0], Event::Subscribe(topics(2)));
        assert_closed_with(
            &out,
            ErrorCode::TooManyTopics,
            CloseReason::ProtocolError(ErrorCode::TooManyTopics),
        );
    }
}

/// A Hello over any of the limits is refused before anything of it is
/// handed on, so the gateway never interns or forwards oversized input.
#[test]
fn hellos_over_the_limits_are_refused() {
    let c = ServerConfig {
        max_apps: 2,
        max_app_len: 4,
        max_device_len: 5,
        ..cfg()
    };
    let with = |apps: &[&str], device: &str| {
        Kind::Hello(Hello {
            version: 1,
            token: "tok".into(),
            device: device.into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            heartbeat_ms: 0,
            resume: Bytes::new(),
        })
    };
    for bad in [
        with(&["a", "b", "c"], "dev"),
        with(&["chats"], "dev"),
        with(&["chat"], "device"),
    ] {
        let mut s = ServerSession::new(Millis(0), &c);
        let mut out = Output::new();
        s.handle_input(Millis(0), &bytes_of(&[bad]), &c, &mut out);
        assert_closed_with(
            &out,
            ErrorCode::LimitExceeded,
            CloseReason::ProtocolError(ErrorCode::LimitExceeded),
        );
    }
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    s.handle_input(
        Millis(0),
        &bytes_of(&[with(&["a", "chat"], "dev12")]),
        &c,
        &mut out,
    );
    assert!(
        matches!(out.events[..], [Event::Hello(_)]),
        "{:?}",
        out.events
    );
}

#[test]
fn topic_names_must_be_short_and_not_empty() {
    let c = ServerConfig {
        max_topic_len: 3,
        ..cfg()
    };
    for (topic, code) in [
        ("", ErrorCode::BadFrame),
        ("abcd", ErrorCode::LimitExceeded),
    ] {
        let mut s = ServerSession::new(Millis(0), &c);
        let mut out = Output::new();
        s.handle_input(Millis(0), &bytes_of(&[hello(0)]), &c, &mut out);
        s.accept(Millis(0), &c, Welcome::default(), &mut out);
        out.clear();
        let sub = Kind::Subscribe(Subscribe {
            topics: vec!["abc".into(), topic.into()],
        });
        s.handle_input(Millis(1), &bytes_of(&[sub]), &c, &mut out);
        assert_closed_with(&out, code, CloseReason::ProtocolError(code));
    }
}

#[test]
fn server_only_kinds_and_second_hello_are_refused() {
    let c = cfg();
    for kind in [
        hello(0),
        Kind::Welcome(Welcome::default()),
        Kind::Push(Push::default()),
        Kind::Reply(Reply::default()),
        Kind::Kick(Kick::default()),
        Kind::Error(proto::Error::default()),
    ] {
        let (mut s, mut out) = established(0, 0);
        s.handle_input(
            Millis(1),
            &bytes_of(std::slice::from_ref(&kind)),
            &c,
            &mut out,
        );
        assert_closed_with(
            &out,
            ErrorCode::UnknownKind,
            CloseReason::ProtocolError(ErrorCode::UnknownKind),
        );
    }
}

#[test]
fn reject_kick_and_fail() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    s.handle_input(Millis(0), &bytes_of(&[hello(0)]), &c, &mut out);
    out.clear();
    s.reject(ErrorCode::TokenExpired, "expired", &mut out);
    assert_closed_with(
        &out,
        ErrorCode::TokenExpired,
        CloseReason::Rejected(ErrorCode::TokenExpired),
    );
    out.clear();
    s.accept(Millis(1), &c, Welcome::default(), &mut out);
    s.kick(KickCode::Admin, "x", &[], 0, &mut out);
    s.fail(ErrorCode::Internal, "x", &mut out);
    s.reject(ErrorCode::Internal, "x", &mut out);
    assert!(out.is_empty(), "closed sessions ignore calls");

    let (mut s, mut out) = established(0, 0);
    let hints = vec!["10.0.0.2:7100".to_owned()];
    s.kick(KickCode::GoingAway, "restart", &hints, 1500, &mut out);
    let sent = frames(&out.transmit);
    assert_eq!(
        sent,
        [Kind::Kick(Kick {
            code: KickCode::GoingAway.as_u32(),
            reason: "restart".into(),
            reconnect: hints,
            retry_after_ms: 1500,
        })]
    );
    assert_eq!(
        out.events,
        [Event::Closed(CloseReason::Kicked(KickCode::GoingAway))]
    );

    let (mut s, mut out) = established(0, 0);
    s.fail(ErrorCode::SlowConsumer, "queue full", &mut out);
    assert_closed_with(
        &out,
        ErrorCode::SlowConsumer,
        CloseReason::ProtocolError(ErrorCode::SlowConsumer),
    );
}

#[test]
fn accept_outside_authenticating_is_ignored() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    s.accept(Millis(0), &c, Welcome::default(), &mut out);
    assert!(out.is_empty());
    assert_eq!(s.state(), SessionState::AwaitingHello);
    let (mut s, mut out) = established(0, 0);
    s.accept(Millis(0), &c, Welcome::default(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn idle_session_holds_no_heap() {
    let c = cfg();
    let (mut s, mut out) = established(0, 0);
    let ping = bytes_of(&[Kind::Ping(Ping { id: 1 })]);
    s.handle_input(Millis(1), &ping[..3], &c, &mut out);
    assert!(s.pending.is_allocated());
    s.handle_input(Millis(1), &ping[3..], &c, &mut out);
    assert!(!s.pending.is_allocated());
}

mod input;

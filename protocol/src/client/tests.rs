//! Unit tests of the client session, with simulated time.

use super::*;
use crate::codec::{decode_frame, encode_frame, frame};
use crate::proto::KickCode;

fn cfg() -> ClientConfig {
    ClientConfig {
        token: "tok".into(),
        device: "dev".into(),
        apps: vec!["chat".into()],
        heartbeat_ms: 10_000,
        ..ClientConfig::default()
    }
}

fn bytes_of(kinds: &[Kind]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in kinds {
        encode_frame(&frame(k.clone()), &mut out);
    }
    out
}

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

fn welcome(heartbeat_ms: u32) -> Kind {
    Kind::Welcome(Welcome {
        session: "s".into(),
        user: "alice".into(),
        heartbeat_ms,
        ..Welcome::default()
    })
}

/// A started client that received a Welcome(heartbeat) at `at`.
fn established(heartbeat_ms: u32, at: u64) -> ClientSession {
    let mut c = ClientSession::new(Millis(0), cfg());
    let mut out = Vec::new();
    let mut ev = Vec::new();
    c.start(&mut out);
    c.handle_input(
        Millis(at),
        &bytes_of(&[welcome(heartbeat_ms)]),
        &mut ev,
        &mut out,
    );
    assert!(c.is_established());
    c
}

#[test]
fn start_sends_hello_once() {
    let mut c = ClientSession::new(Millis(0), cfg());
    assert_eq!(c.state(), ClientState::Idle);
    assert_eq!(c.deadline(), None);
    let mut out = Vec::new();
    c.start(&mut out);
    c.start(&mut out);
    let sent = frames(&out);
    let [Kind::Hello(h)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(h.version, 1);
    assert_eq!((h.token.as_str(), h.device.as_str()), ("tok", "dev"));
    assert_eq!(h.apps, ["chat"]);
    assert_eq!(h.heartbeat_ms, 10_000);
    assert_eq!(c.state(), ClientState::AwaitingWelcome);
    assert_eq!(c.deadline(), Some(Millis(CLIENT_HANDSHAKE_TIMEOUT_MS)));
}

#[test]
fn welcome_establishes_and_pings_every_heartbeat() {
    let mut c = ClientSession::new(Millis(0), cfg());
    let mut out = Vec::new();
    let mut ev = Vec::new();
    c.start(&mut out);
    out.clear();
    c.handle_input(Millis(100), &bytes_of(&[welcome(8_000)]), &mut ev, &mut out);
    assert!(c.is_established());
    assert_eq!(c.heartbeat_ms(), 8_000);
    assert_eq!(c.welcome().map(|w| w.user.as_str()), Some("alice"));
    assert!(matches!(ev[..], [ClientEvent::Welcome(_)]));
    assert_eq!(c.deadline(), Some(Millis(8_100)));
    c.handle_timeout(Millis(8_099), &mut out);
    assert!(out.is_empty());
    c.handle_timeout(Millis(8_100), &mut out);
    assert_eq!(frames(&out), [Kind::Ping(Ping { id: 1 })]);
    out.clear();
    // The Pong refreshes liveness and is reported.
    ev.clear();
    c.handle_input(
        Millis(8_150),
        &bytes_of(&[Kind::Pong(Pong { id: 1 })]),
        &mut ev,
        &mut out,
    );
    assert_eq!(ev, [ClientEvent::Pong(Pong { id: 1 })]);
    assert_eq!(c.deadline(), Some(Millis(16_100)));
    c.handle_timeout(Millis(16_100), &mut out);
    assert_eq!(frames(&out), [Kind::Ping(Ping { id: 2 })]);
}

#[test]
fn zero_heartbeat_in_welcome_uses_default() {
    let c = established(0, 0);
    assert_eq!(c.heartbeat_ms(), CLIENT_DEFAULT_HEARTBEAT_MS);
}

#[test]
fn handshake_timeout() {
    let mut c = ClientSession::new(Millis(0), cfg());
    let mut out = Vec::new();
    c.handle_timeout(Millis(1_000_000), &mut out);
    assert!(!c.is_closed(), "not started: no deadline");
    c.start(&mut out);
    out.clear();
    c.handle_timeout(Millis(CLIENT_HANDSHAKE_TIMEOUT_MS - 1), &mut out);
    assert!(!c.is_closed());
    c.handle_timeout(Millis(CLIENT_HANDSHAKE_TIMEOUT_MS), &mut out);
    assert!(c.is_closed());
    assert_eq!(c.close_reason(), Some(ClientCloseReason::HandshakeTimeout));
    assert_eq!(c.deadline(), None);
    assert!(out.is_empty());
}

#[test]
fn idle_timeout_when_gateway_is_silent() {
    let mut c = established(4_000, 0); // idle after 10 s
    let mut out = Vec::new();
    c.handle_timeout(Millis(4_000), &mut out); // ping
    c.handle_timeout(Millis(8_000), &mut out); // ping
    assert_eq!(frames(&out).len(), 2);
    assert_eq!(c.deadline(), Some(Millis(10_000)));
    c.handle_timeout(Millis(10_000), &mut out);
    assert_eq!(c.close_reason(), Some(ClientCloseReason::IdleTimeout));
}

#[test]
fn pushes_replies_and_acks() {
    let mut c = established(0, 0);
    let mut out = Vec::new();
    let mut ev = Vec::new();
    let push = Push {
        id: 5,
        ack: true,
        payload: Bytes::from_static(b"x"),
        ..Push::default()
    };
    let reply = Reply {
        request_id: 1,
        status: 200,
        ..Reply::default()
    };
    c.handle_input(
        Millis(1),
        &bytes_of(&[Kind::Push(push.clone()), Kind::Reply(reply.clone())]),
        &mut ev,
        &mut out,
    );
    assert_eq!(
        ev,
        [ClientEvent::Push(push.clone()), ClientEvent::Reply(reply)]
    );
    assert!(out.is_empty(), "no auto-ack by default");
    c.set_auto_ack(true);
    ev.clear();
    let push = Push { id: 6, ..push };
    c.handle_input(
        Millis(2),
        &bytes_of(&[Kind::Push(push.clone())]),
        &mut ev,
        &mut out,
    );
    assert_eq!(frames(&out), [Kind::Ack(Ack { ids: vec![6] })]);
    out.clear();
    let no_ack = Push { ack: false, ..push };
    c.handle_input(
        Millis(3),
        &bytes_of(&[Kind::Push(no_ack)]),
        &mut ev,
        &mut out,
    );
    assert!(out.is_empty());
}

fn durable(id: u64, redelivery: bool) -> Kind {
    Kind::Push(Push {
        id,
        ack: true,
        redelivery,
        payload: Bytes::from_static(b"d"),
        ..Push::default()
    })
}

fn push_ids(ev: &[ClientEvent]) -> Vec<u64> {
    ev.iter()
        .filter_map(|e| match e {
            ClientEvent::Push(p) => Some(p.id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_redelivered_durable_push_reaches_the_app_once() {
    let mut c = established(0, 0);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.handle_input(
        Millis(1),
        &bytes_of(&[durable(1, false), durable(2, false), durable(1, true)]),
        &mut ev,
        &mut out,
    );
    assert_eq!(push_ids(&ev), [1, 2], "the copy of 1 is dropped");
    assert!(
        out.is_empty(),
        "not acked by the app yet: nothing to re-ack"
    );
    // The app acks 1; a later copy of 1 is acked again, not shown.
    c.ack(vec![1], &mut out);
    out.clear();
    ev.clear();
    c.handle_input(Millis(2), &bytes_of(&[durable(1, true)]), &mut ev, &mut out);
    assert!(push_ids(&ev).is_empty());
    assert_eq!(frames(&out), [Kind::Ack(Ack { ids: vec![1] })]);
    assert_eq!(c.duplicates_dropped(), 2);
    // Plain pushes are not deduplicated: their ids are not durable.
    ev.clear();
    let plain = Kind::Push(Push {
        id: 2,
        ..Push::default()
    });
    c.handle_input(Millis(3), &bytes_of(&[plain]), &mut ev, &mut out);
    assert_eq!(push_ids(&ev), [2]);
}

#[test]
fn with_auto_ack_a_copy_is_acked_again() {
    let mut c = established(0, 0);
    c.set_auto_ack(true);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.handle_input(
        Millis(1),
        &bytes_of(&[durable(9, false), durable(9, true)]),
        &mut ev,
        &mut out,
    );
    assert_eq!(push_ids(&ev), [9]);
    assert_eq!(
        frames(&out),
        [
            Kind::Ack(Ack { ids: vec![9] }),
            Kind::Ack(Ack { ids: vec![9] })
        ]
    );
}

#[test]
fn the_window_carries_over_to_the_next_connection() {
    let mut first = established(0, 0);
    first.set_auto_ack(true);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    first.handle_input(
        Millis(1),
        &bytes_of(&[durable(4, false)]),
        &mut ev,
        &mut out,
    );
    let window = first.take_dedup();
    assert_eq!(window.len(), 1);
    // A reconnect: the new session gets the window, and the gateway
    // redelivers 4 (the ack was lost with the connection).
    let mut second = ClientSession::new(Millis(10), cfg()).with_dedup(window);
    second.set_auto_ack(true);
    let mut hello = Vec::new();
    second.start(&mut hello);
    ev.clear();
    out.clear();
    second.handle_input(
        Millis(11),
        &bytes_of(&[welcome(0), durable(4, true), durable(5, false)]),
        &mut ev,
        &mut out,
    );
    assert_eq!(push_ids(&ev), [5], "4 was seen on the first connection");
    assert_eq!(
        frames(&out),
        [
            Kind::Ack(Ack { ids: vec![4] }),
            Kind::Ack(Ack { ids: vec![5] })
        ]
    );
}

#[test]
fn requests_are_encoded() {
    let mut c = ClientSession::new(Millis(0), cfg());
    let mut out = Vec::new();
    // Allowed before Welcome (the gateway holds them until it accepts).
    c.subscribe(vec!["a".into()], &mut out);
    c.unsubscribe(vec!["b".into()], &mut out);
    let id1 = c.uplink("chat", "send", Bytes::from_static(b"p"), &mut out);
    let id2 = c.uplink("chat", "send", Bytes::new(), &mut out);
    c.ack(vec![1, 2], &mut out);
    let p = c.ping(&mut out);
    assert_eq!((id1, id2, p), (1, 2, 1));
    let sent = frames(&out);
    assert_eq!(sent.len(), 6);
    assert_eq!(
        sent[0],
        Kind::Subscribe(Subscribe {
            topics: vec!["a".into()]
        })
    );
    assert_eq!(
        sent[1],
        Kind::Unsubscribe(Unsubscribe {
            topics: vec!["b".into()]
        })
    );
    assert!(matches!(&sent[2], Kind::Uplink(u) if u.request_id == 1 && u.route == "send"));
    assert_eq!(sent[4], Kind::Ack(Ack { ids: vec![1, 2] }));
    assert_eq!(sent[5], Kind::Ping(Ping { id: 1 }));
}

#[test]
fn bye_closes_and_silences() {
    let mut c = established(0, 0);
    let mut out = Vec::new();
    c.bye(&mut out);
    assert_eq!(frames(&out), [Kind::Bye(Bye {})]);
    assert_eq!(c.close_reason(), Some(ClientCloseReason::Bye));
    out.clear();
    c.bye(&mut out);
    c.subscribe(vec!["a".into()], &mut out);
    assert_eq!(c.uplink("a", "r", Bytes::new(), &mut out), 0);
    assert_eq!(c.ping(&mut out), 0);
    let mut ev = Vec::new();
    c.handle_input(
        Millis(1),
        &bytes_of(&[Kind::Ping(Ping { id: 1 })]),
        &mut ev,
        &mut out,
    );
    assert!(out.is_empty() && ev.is_empty());
}

#[test]
fn kick_and_error_close() {
    let kick = Kick {
        code: KickCode::Drain.as_u32(),
        reason: "drain".into(),
        reconnect: vec!["h:1".into()],
        retry_after_ms: 10,
    };
    let mut c = established(0, 0);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.handle_input(
        Millis(1),
        &bytes_of(&[Kind::Kick(kick.clone())]),
        &mut ev,
        &mut out,
    );
    assert_eq!(
        ev,
        [
            ClientEvent::Kick(kick),
            ClientEvent::Closed(ClientCloseReason::Kicked(5))
        ]
    );
    // An Error before Welcome (e.g. a rejected token).
    let mut c = ClientSession::new(Millis(0), cfg());
    c.start(&mut out);
    ev.clear();
    let err = Error::new(ErrorCode::Unauthorized, "no");
    c.handle_input(
        Millis(1),
        &bytes_of(&[Kind::Error(err.clone())]),
        &mut ev,
        &mut out,
    );
    assert_eq!(
        ev,
        [
            ClientEvent::Error(err),
            ClientEvent::Closed(ClientCloseReason::ServerError(6))
        ]
    );
}

#[test]
fn server_ping_is_answered() {
    let mut c = established(0, 0);
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    c.handle_input(
        Millis(1),
        &bytes_of(&[Kind::Ping(Ping { id: 9 })]),
        &mut ev,
        &mut out,
    );
    assert_eq!(frames(&out), [Kind::Pong(Pong { id: 9 })]);
    assert!(ev.is_empty());
}

#[test]
fn unexpected_frames_are_protocol_errors() {
    for (before_welcome, kind) in [
        (true, Kind::Push(Push::default())),
        (true, Kind::Reply(Reply::default())),
        (false, welcome(0)),
        (false, Kind::Hello(Hello::default())),
        (false, Kind::Subscribe(Subscribe::default())),
        (false, Kind::Bye(Bye {})),
    ] {
        let mut c = if before_welcome {
            let mut c = ClientSession::new(Millis(0), cfg());
            c.start(&mut Vec::new());
            c
        } else {
            established(0, 0)
        };
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.handle_input(
            Millis(1),
            &bytes_of(std::slice::from_ref(&kind)),
            &mut ev,
            &mut out,
        );
        assert_eq!(
            ev,
            [ClientEvent::Closed(ClientCloseReason::ProtocolError(
                ErrorCode::UnknownKind
            ))],
            "{kind:?}"
        );
    }
}

#[test]
fn garbage_and_oversize_close() {
    for (input, code) in [
        (&[0u8, 0, 0, 0][..], ErrorCode::BadFrame),
        (&[0, 1, 0, 1][..], ErrorCode::FrameTooLarge),
        (&[0, 0, 0, 2, 0xff, 0xff][..], ErrorCode::BadFrame),
    ] {
        let mut c = ClientSession::new(
            Millis(0),
            ClientConfig {
                max_frame: 1024,
                ..cfg()
            },
        );
        c.start(&mut Vec::new());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.handle_input(Millis(1), input, &mut ev, &mut out);
        assert_eq!(
            ev,
            [ClientEvent::Closed(ClientCloseReason::ProtocolError(code))]
        );
        assert_eq!(c.pending.capacity(), 0);
    }
}

#[test]
fn split_input_gives_the_same_events() {
    let input = bytes_of(&[
        welcome(5_000),
        Kind::Push(Push {
            id: 1,
            payload: Bytes::from(vec![1u8; 200]),
            ..Push::default()
        }),
        Kind::Pong(Pong { id: 3 }),
        Kind::Ping(Ping { id: 4 }),
        Kind::Kick(Kick::default()),
    ]);
    let run = |chunks: &[&[u8]]| {
        let mut c = ClientSession::new(Millis(0), cfg());
        c.start(&mut Vec::new());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        for chunk in chunks {
            c.handle_input(Millis(1), chunk, &mut ev, &mut out);
        }
        assert_eq!(c.pending.capacity(), 0);
        (ev, out)
    };
    let whole = run(&[&input]);
    assert_eq!(whole.0.len(), 5);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(run(&[a, b]), whole, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

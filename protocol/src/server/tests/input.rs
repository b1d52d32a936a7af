//! How the session takes its input: bad bytes, frames split across
//! reads at every boundary, and input held back while a Hello is
//! authenticated (bounded).

use super::*;

#[test]
fn bad_bytes_get_one_error_and_close() {
    let c = ServerConfig {
        max_frame: 100,
        ..cfg()
    };
    let cases: [(&[u8], ErrorCode); 4] = [
        // Oversize: decided from the header alone.
        (&[0, 0, 0, 101], ErrorCode::FrameTooLarge),
        (&[0xff, 0xff, 0xff, 0xff, 1, 2, 3], ErrorCode::FrameTooLarge),
        (&[0, 0, 0, 0, 0, 0, 0, 0], ErrorCode::BadFrame),
        (
            &[0, 0, 0, 3, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            ErrorCode::BadFrame,
        ),
    ];
    for (input, code) in cases {
        for established_first in [false, true] {
            let (mut s, mut out) = if established_first {
                established(0, 0)
            } else {
                (ServerSession::new(Millis(0), &c), Output::new())
            };
            s.handle_input(Millis(1), input, &c, &mut out);
            assert_closed_with(&out, code, CloseReason::ProtocolError(code));
            out.clear();
            s.handle_input(Millis(2), input, &c, &mut out);
            s.handle_timeout(Millis(u64::MAX), &c, &mut out);
            assert!(out.is_empty(), "closed sessions ignore input");
        }
    }
    // A frame with no kind set (unknown field only).
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    s.handle_input(Millis(1), &[0, 0, 0, 3, 0x98, 0x06, 0x01], &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::UnknownKind,
        CloseReason::ProtocolError(ErrorCode::UnknownKind),
    );
}

#[test]
fn oversize_header_split_across_inputs() {
    let c = ServerConfig {
        max_frame: 100,
        ..cfg()
    };
    let (mut s, mut out) = established(0, 0);
    s.handle_input(Millis(1), &[0, 0], &c, &mut out);
    assert!(out.is_empty());
    s.handle_input(Millis(1), &[1, 0], &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::FrameTooLarge,
        CloseReason::ProtocolError(ErrorCode::FrameTooLarge),
    );
}

/// Runs a whole conversation, delivering the client's bytes in the given
/// chunks; returns everything the server produced.
fn run_chunked(chunks: &[&[u8]]) -> (Vec<Kind>, Vec<Event>) {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        s.handle_input(Millis(1), chunk, &c, &mut out);
        if matches!(out.events.last(), Some(Event::Hello(_))) {
            s.accept(Millis(1), &c, Welcome::default(), &mut out);
        }
        sent.extend(frames(&out.transmit));
        events.append(&mut out.events);
        out.clear();
    }
    assert_eq!(s.pending_input(), 0);
    assert!(!s.pending.is_allocated(), "buffer released once drained");
    (sent, events)
}

fn conversation() -> Vec<u8> {
    bytes_of(&[
        hello(6_000),
        Kind::Ping(Ping { id: 1 }),
        Kind::Subscribe(Subscribe {
            topics: vec!["news".into()],
        }),
        Kind::Uplink(Uplink {
            request_id: 5,
            app: "chat".into(),
            route: "r".into(),
            payload: Bytes::from(vec![7u8; 300]),
        }),
        Kind::Ack(Ack { ids: vec![10] }),
        Kind::Ping(Ping { id: 2 }),
    ])
}

#[test]
fn input_split_at_every_boundary_gives_the_same_result() {
    let input = conversation();
    let whole = run_chunked(&[&input]);
    assert_eq!(whole.0.len(), 3, "Welcome + 2 Pongs: {:?}", whole.0);
    assert!(matches!(
        whole.0[0],
        Kind::Welcome(Welcome {
            heartbeat_ms: 6_000,
            ..
        })
    ));
    assert_eq!(whole.1.len(), 4, "{:?}", whole.1);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(run_chunked(&[a, b]), whole, "cut at {cut}");
    }
    for (i, j) in [(1, 2), (3, 40), (10, 380), (200, 201)] {
        let parts = [&input[..i], &input[i..j], &input[j..]];
        assert_eq!(run_chunked(&parts), whole, "cuts at {i}, {j}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunked(&bytes), whole, "byte by byte");
}

#[test]
fn input_behind_hello_waits_for_accept() {
    let c = cfg();
    let mut s = ServerSession::new(Millis(0), &c);
    let mut out = Output::new();
    let input = conversation();
    s.handle_input(Millis(1), &input, &c, &mut out);
    assert!(matches!(out.events[..], [Event::Hello(_)]));
    assert!(out.transmit.is_empty());
    let hello_len = bytes_of(&[hello(6_000)]).len();
    assert_eq!(s.pending_input(), input.len() - hello_len);
    out.clear();
    // More input while authenticating is held too.
    let more = bytes_of(&[Kind::Ping(Ping { id: 3 })]);
    s.handle_input(Millis(2), &more, &c, &mut out);
    assert!(out.is_empty());
    s.accept(Millis(3), &c, Welcome::default(), &mut out);
    let sent = frames(&out.transmit);
    assert!(matches!(sent[0], Kind::Welcome(_)));
    assert_eq!(
        sent[1..],
        [
            Kind::Pong(Pong { id: 1 }),
            Kind::Pong(Pong { id: 2 }),
            Kind::Pong(Pong { id: 3 })
        ]
    );
    assert_eq!(out.events.len(), 3);
    assert_eq!(s.pending_input(), 0);
}

#[test]
fn too_much_input_while_authenticating_is_refused() {
    let c = ServerConfig {
        max_frame: 16,
        ..cfg()
    };
    let mut out = Output::new();
    // The Hello itself would exceed the tiny max_frame: parse it with the default.
    let mut s2 = ServerSession::new(Millis(0), &cfg());
    s2.handle_input(Millis(0), &bytes_of(&[hello(0)]), &cfg(), &mut out);
    out.clear();
    s2.handle_input(Millis(0), &vec![0u8; c.max_pending_input()], &c, &mut out);
    assert!(out.is_empty());
    s2.handle_input(Millis(0), &[0], &c, &mut out);
    assert_closed_with(
        &out,
        ErrorCode::Overloaded,
        CloseReason::ProtocolError(ErrorCode::Overloaded),
    );
}

//! Property tests: encode→decode round-trips, and arbitrary bytes never panic
//! the decoder or either session state machine.

use bytes::Bytes;
use proptest::prelude::*;
use protocol::client::{ClientConfig, ClientSession};
use protocol::codec::{DEFAULT_MAX_FRAME, decode_frame, encode_frame, encoded_len, frame};
use protocol::proto::{
    Ack, Bye, Error, Frame, Hello, Kick, Ping, Pong, Push, Reply, Subscribe, Unsubscribe, Uplink,
    Welcome, frame::Kind,
};
use protocol::server::{Event, Output, ServerConfig, ServerSession};
use protocol::time::Millis;

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn blob() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..4)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (any::<u32>(), text(), text(), texts(), any::<u32>(), blob()).prop_map(
            |(version, token, device, apps, heartbeat_ms, resume)| Kind::Hello(Hello {
                version,
                token,
                device,
                apps,
                heartbeat_ms,
                resume
            })
        ),
        (
            text(),
            text(),
            any::<u32>(),
            blob(),
            any::<u64>(),
            any::<(bool, bool)>()
        )
            .prop_map(
                |(session, user, heartbeat_ms, resume, server_time_ms, (resumed, recovered))| {
                    Kind::Welcome(Welcome {
                        session,
                        user,
                        heartbeat_ms,
                        resume,
                        server_time_ms,
                        resumed,
                        recovered,
                    })
                }
            ),
        any::<u64>().prop_map(|id| Kind::Ping(Ping { id })),
        any::<u64>().prop_map(|id| Kind::Pong(Pong { id })),
        texts().prop_map(|topics| Kind::Subscribe(Subscribe { topics })),
        texts().prop_map(|topics| Kind::Unsubscribe(Unsubscribe { topics })),
        (
            any::<u64>(),
            text(),
            text(),
            blob(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(id, app, topic, payload, ack, ts_us)| Kind::Push(Push {
                id,
                app,
                topic,
                payload,
                ack,
                ts_us,
                redelivery: false,
            })),
        proptest::collection::vec(any::<u64>(), 0..8).prop_map(|ids| Kind::Ack(Ack { ids })),
        (any::<u64>(), text(), text(), blob()).prop_map(|(request_id, app, route, payload)| {
            Kind::Uplink(Uplink {
                request_id,
                app,
                route,
                payload,
            })
        }),
        (any::<u64>(), any::<u32>(), blob()).prop_map(|(request_id, status, payload)| {
            Kind::Reply(Reply {
                request_id,
                status,
                payload,
            })
        }),
        (any::<u32>(), text(), texts(), any::<u32>()).prop_map(
            |(code, reason, reconnect, retry_after_ms)| Kind::Kick(Kick {
                code,
                reason,
                reconnect,
                retry_after_ms
            })
        ),
        (any::<u32>(), text()).prop_map(|(code, message)| Kind::Error(Error { code, message })),
        Just(Kind::Bye(Bye {})),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(kinds in proptest::collection::vec(kind(), 1..6)) {
        let frames: Vec<Frame> = kinds.into_iter().map(frame).collect();
        let mut buf = Vec::new();
        for f in &frames {
            let before = buf.len();
            encode_frame(f, &mut buf);
            prop_assert_eq!(buf.len() - before, encoded_len(f));
        }
        let mut rest = &buf[..];
        for f in &frames {
            let (g, used) = decode_frame(rest, DEFAULT_MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(&g, f);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), max in 0u32..1024) {
        let mut rest = &data[..];
        while let Ok(Some((_, used))) = decode_frame(rest, max) {
            prop_assert!(used > 4 && used <= rest.len());
            rest = &rest[used..];
        }
    }

    #[test]
    fn server_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 0..8),
        valid_hello in any::<bool>(),
        times in proptest::collection::vec(0u64..100_000, 8),
    ) {
        let cfg = ServerConfig { max_frame: 256, ..ServerConfig::default() };
        let mut s = ServerSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        if valid_hello {
            let mut hello = Vec::new();
            encode_frame(&frame(Kind::Hello(Hello { version: 1, ..Hello::default() })), &mut hello);
            s.handle_input(Millis(0), &hello, &cfg, &mut out);
        }
        let mut closed = 0;
        for (chunk, t) in chunks.iter().zip(&times) {
            s.handle_input(Millis(*t), chunk, &cfg, &mut out);
            if matches!(out.events.last(), Some(Event::Hello(_))) {
                s.accept(Millis(*t), &cfg, Welcome::default(), &mut out);
            }
            closed += out.events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
            out.clear();
            s.handle_timeout(Millis(*t), &cfg, &mut out);
            closed += out.events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
            out.clear();
        }
        prop_assert!(closed <= 1);
        prop_assert_eq!(closed == 1, s.is_closed());
        prop_assert!(s.pending_input() <= cfg.max_pending_input());
    }

    #[test]
    fn server_handles_arbitrary_frame_sequences_split_anywhere(
        kinds in proptest::collection::vec(kind(), 0..10),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let cfg = ServerConfig::default();
        let mut input = Vec::new();
        encode_frame(&frame(Kind::Hello(Hello { version: 1, ..Hello::default() })), &mut input);
        for k in kinds {
            encode_frame(&frame(k), &mut input);
        }
        if let Some((at, byte)) = corrupt {
            let i = at.index(input.len());
            input[i] = byte;
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.push(0);
        points.push(input.len());
        points.sort_unstable();
        let mut s = ServerSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        let mut closed = 0;
        for w in points.windows(2) {
            s.handle_input(Millis(1), &input[w[0]..w[1]], &cfg, &mut out);
            if matches!(out.events.last(), Some(Event::Hello(_))) {
                s.accept(Millis(1), &cfg, Welcome::default(), &mut out);
            }
            closed += out.events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
            // Whatever the server sends is well-formed.
            let mut rest = &out.transmit[..];
            while !rest.is_empty() {
                let (_, used) = decode_frame(rest, u32::MAX).unwrap().unwrap();
                rest = &rest[used..];
            }
            out.clear();
        }
        prop_assert!(closed <= 1);
        prop_assert_eq!(closed == 1, s.is_closed());
    }

    #[test]
    fn client_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 0..8)) {
        let mut c = ClientSession::new(Millis(0), ClientConfig::default());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.start(&mut out);
        for (i, chunk) in chunks.iter().enumerate() {
            c.handle_input(Millis(i as u64), chunk, &mut ev, &mut out);
            c.handle_timeout(Millis(i as u64 * 1000), &mut out);
        }
    }
}

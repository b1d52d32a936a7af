//! Fuzzes everything that reads bytes from the network: the frame decoder,
//! and the server and client session state machines fed those bytes in
//! arbitrary chunks.
//!
//! Input layout: byte 0 is a control byte (max_frame choice, whether a valid
//! Hello is prepended for the server, the chunk size); the rest is the wire data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::client::{ClientConfig, ClientSession};
use protocol::codec::{self, DEFAULT_MAX_FRAME, decode_frame, encode_frame};
use protocol::proto::{Hello, Welcome, frame::Kind};
use protocol::server::{Event, Output, ServerConfig, ServerSession};
use protocol::time::Millis;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let max_frame = if ctl & 1 == 0 { DEFAULT_MAX_FRAME } else { 256 };
    let chunk = usize::from(ctl >> 3) + 1; // 1..=32

    // 1. Decoder: every decoded frame re-encodes to something that decodes equal.
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode_frame(rest, max_frame) {
        assert!(used > codec::LENGTH_PREFIX && used <= rest.len());
        let mut again = Vec::new();
        encode_frame(&frame, &mut again);
        let (twice, n) = decode_frame(&again, u32::MAX)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert_eq!(n, again.len());
        assert_eq!(twice, frame);
        rest = &rest[used..];
    }

    // 2. Server session, input in `chunk`-sized pieces.
    let cfg = ServerConfig {
        max_frame,
        ..ServerConfig::default()
    };
    let mut server = ServerSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let mut stream = Vec::new();
    if ctl & 2 != 0 {
        let hello = Kind::Hello(Hello {
            version: 1,
            ..Hello::default()
        });
        encode_frame(&codec::frame(hello), &mut stream);
    }
    stream.extend_from_slice(data);
    let mut closed = 0;
    for (i, piece) in stream.chunks(chunk).enumerate() {
        let now = Millis(i as u64 * 100);
        server.handle_input(now, piece, &cfg, &mut out);
        if matches!(out.events.last(), Some(Event::Hello(_))) {
            server.accept(now, &cfg, Welcome::default(), &mut out);
        }
        server.handle_timeout(now, &cfg, &mut out);
        closed += out
            .events
            .iter()
            .filter(|e| matches!(e, Event::Closed(_)))
            .count();
        // What the server sends is always well-formed.
        let mut sent = &out.transmit[..];
        while !sent.is_empty() {
            let (_, used) = decode_frame(sent, u32::MAX)
                .expect("server output decodes")
                .expect("server output is whole frames");
            sent = &sent[used..];
        }
        out.clear();
    }
    assert!(closed <= 1, "closed {closed} times");
    assert_eq!(closed == 1, server.is_closed());
    assert!(server.pending_input() <= cfg.max_pending_input());

    // 3. Client session, same bytes as if they came from a gateway.
    let mut client = ClientSession::new(
        Millis(0),
        ClientConfig {
            max_frame,
            ..ClientConfig::default()
        },
    );
    let (mut events, mut tx) = (Vec::new(), Vec::new());
    client.start(&mut tx);
    for (i, piece) in data.chunks(chunk).enumerate() {
        let now = Millis(i as u64 * 1000);
        client.handle_input(now, piece, &mut events, &mut tx);
        client.handle_timeout(now, &mut tx);
    }
});

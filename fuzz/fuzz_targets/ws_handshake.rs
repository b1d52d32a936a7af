//! Fuzzes the WebSocket opening handshake parser
//! (`protocol::ws::handshake::read_upgrade`) the way a listener drives it:
//! called on everything received so far after each read, until it answers.
//!
//! Input layout: byte 0 picks the config (bit 0: an Origin allow-list,
//! bit 1: a 256-byte head cap instead of the default) and the piece size
//! (bits 2..8, at least 1/64 of the data so one run parses at most about
//! 64 times); the rest is the wire data. Read whole or in pieces, the
//! answer is the same, except that a head still arriving may be refused
//! as too large (431) where the whole input fails some other way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::ws::handshake::{Handshake, HandshakeConfig, HandshakeError, read_upgrade};

/// What every answer must look like, for an input of `len` bytes.
fn check(answer: &Handshake, len: usize) {
    match answer {
        Handshake::NeedMore => {}
        Handshake::Accept(a) => {
            assert!(a.consumed > 0 && a.consumed <= len);
            assert!(
                a.response
                    .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n")
            );
            assert!(a.response.ends_with(b"\r\n\r\n"));
        }
        Handshake::Reject(r) => {
            assert!(
                [400, 403, 405, 426, 431].contains(&r.status),
                "{}",
                r.status
            );
            assert_eq!(r.status, r.error.status());
            let status_line = format!("HTTP/1.1 {} ", r.status);
            assert!(r.response.starts_with(status_line.as_bytes()));
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let cfg = HandshakeConfig {
        allowed_origins: if ctl & 1 == 0 {
            Vec::new()
        } else {
            vec!["https://app.example.com".into()]
        },
        max_head: if ctl & 2 == 0 {
            HandshakeConfig::default().max_head
        } else {
            256
        },
    };
    let piece = (usize::from(ctl >> 2) + 1).max(data.len() / 64);

    let whole = read_upgrade(data, &cfg);
    check(&whole, data.len());

    let mut end = 0;
    let mut last = Handshake::NeedMore;
    while end < data.len() {
        end = (end + piece).min(data.len());
        last = read_upgrade(&data[..end], &cfg);
        check(&last, end);
        if last != Handshake::NeedMore {
            break;
        }
    }
    match &last {
        Handshake::Reject(r) if matches!(r.error, HandshakeError::HeadTooLarge { .. }) => {
            assert!(matches!(whole, Handshake::Reject(_)), "{whole:?}");
        }
        _ => assert_eq!(last, whole),
    }
});

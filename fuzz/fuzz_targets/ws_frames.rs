//! Fuzzes the WebSocket client frame decoder (`protocol::ws::FrameDecoder`):
//! the same bytes fed whole and in pieces must give the same messages,
//! frames to send and end; what it holds stays within `max_message` and a
//! control frame; what it sends is well-formed.
//!
//! Input layout: byte 0 picks the message limit (bit 0: 64 bytes instead
//! of 64 KiB), whether the server already sent its close (bit 7), and the
//! piece size (bits 1..7: 1..=64 bytes); the rest is the wire data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::ws::close::parse_close_payload;
use protocol::ws::{FrameDecoder, MAX_CONTROL_PAYLOAD, WsEnd, WsOutput};

/// What a decoder made of some input, over all its calls.
#[derive(Debug, PartialEq)]
struct Outcome {
    v1: Vec<u8>,
    transmit: Vec<u8>,
    end: Option<WsEnd>,
}

fn run(data: &[u8], max: u32, piece: usize, close_sent: bool) -> Outcome {
    let mut dec = FrameDecoder::new();
    if close_sent {
        dec.close_sent();
    }
    let mut out = WsOutput::new();
    let mut got = Outcome {
        v1: Vec::new(),
        transmit: Vec::new(),
        end: None,
    };
    for chunk in data.chunks(piece) {
        dec.decode(chunk, max, &mut out);
        assert!(dec.held_capacity() <= max as usize + MAX_CONTROL_PAYLOAD);
        got.v1.extend_from_slice(&out.v1);
        got.transmit.extend_from_slice(&out.transmit);
        if let Some(end) = out.end.take() {
            assert!(got.end.is_none(), "ended twice");
            assert!(dec.is_closed());
            assert_eq!(dec.held_capacity(), 0);
            got.end = Some(end);
        }
        out.clear();
    }
    got
}

/// The v1 frames are whole and within the limit.
fn check_v1(mut v1: &[u8], max: u32) {
    while !v1.is_empty() {
        let len = u32::from_be_bytes(v1[..4].try_into().expect("a prefix"));
        assert!(len <= max);
        v1 = &v1[4 + len as usize..];
    }
}

/// The server's frames are unmasked, final, pongs or one close at the end,
/// with a valid code and a UTF-8 reason.
fn check_transmit(mut tx: &[u8], close_sent: bool) {
    assert!(
        !close_sent || tx.is_empty(),
        "nothing after the server's close"
    );
    let mut closed = false;
    while !tx.is_empty() {
        assert!(!closed, "a frame after the close");
        let (b0, b1) = (tx[0], tx[1]);
        assert_eq!(b1 & 0x80, 0, "unmasked");
        let len = usize::from(b1 & 0x7f);
        assert!(len <= MAX_CONTROL_PAYLOAD);
        let payload = &tx[2..2 + len];
        match b0 {
            0x8a => {}
            0x88 => {
                closed = true;
                assert!(parse_close_payload(payload).is_ok(), "{payload:?}");
            }
            other => panic!("unexpected server frame {other:#x}"),
        }
        tx = &tx[2 + len..];
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let max = if ctl & 1 == 0 { 65536 } else { 64 };
    let piece = usize::from((ctl >> 1) & 0x3f) + 1;
    let close_sent = ctl & 0x80 != 0;

    let whole = run(data, max, data.len().max(1), close_sent);
    let pieces = run(data, max, piece, close_sent);
    assert_eq!(whole, pieces, "piece size {piece}");
    check_v1(&whole.v1, max);
    check_transmit(&whole.transmit, close_sent);
});

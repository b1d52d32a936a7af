//! The frame decoder: the RFC's example frames, memory at rest and its
//! bound, split reads at every boundary, and the v1 session reading the
//! messages. The case groups of Autobahn|Testsuite are in `autobahn.rs`.
//!
//! Every input goes through [`outcome`], which feeds it whole and one byte
//! at a time and requires the same result both ways.

use proptest::prelude::*;

use super::*;
use crate::codec::{decode_frame, encode_frame, frame};
use crate::proto::{Hello, Ping, frame::Kind};
use crate::server::{Event, Output, ServerConfig, ServerSession};
use crate::time::Millis;
use crate::ws::encode::{write_masked, write_v1_as_binary};

mod autobahn;

/// The masking key of the frames built here (RFC 6455 §5.7's).
pub(super) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The default message limit of these tests.
pub(super) const MAX: u32 = 65536;

/// A masked client frame with first byte `b0` (FIN, RSV, opcode as given)
/// and the shortest length encoding. Masks on its own, without the
/// crate's `apply_mask`, so the two check each other.
pub(super) fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A one-frame binary message.
pub(super) fn bin(payload: &[u8]) -> Vec<u8> {
    raw(0x82, payload)
}

/// A frame with opcode `op`, FIN as `fin`.
pub(super) fn frag(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    raw(op | if fin { 0x80 } else { 0 }, payload)
}

/// A close frame from the client with `code` and `reason`.
pub(super) fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    raw(0x88, &payload)
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// What a decoder made of some input, gathered over all its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The messages, as the v1 frames' bodies.
    pub messages: Vec<Vec<u8>>,
    /// The frames to send back.
    pub sent: Vec<Sent>,
    pub end: Option<WsEnd>,
}

impl Outcome {
    /// The code of the last frame sent, if it is a close with a code.
    pub fn close_code(&self) -> Option<u16> {
        let last = self.sent.last()?;
        (last.opcode == 0x8 && last.payload.len() >= 2)
            .then(|| u16::from_be_bytes([last.payload[0], last.payload[1]]))
    }

    /// Asserts the connection failed with `error`, answered with a close
    /// carrying its code.
    pub fn assert_failed(&self, error: FrameError) {
        let code = error.close_code().0;
        assert_eq!(self.end, Some(WsEnd::Failed(error)), "{self:?}");
        assert_eq!(self.close_code(), Some(code), "{self:?}");
    }
}

/// The bodies of the v1 frames in `v1`.
fn v1_bodies(mut v1: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while !v1.is_empty() {
        let len = u32::from_be_bytes(v1[..4].try_into().unwrap()) as usize;
        bodies.push(v1[4..4 + len].to_vec());
        v1 = &v1[4 + len..];
    }
    bodies
}

/// The frames in `tx`, which must be unmasked final server frames.
pub(super) fn server_frames(mut tx: &[u8]) -> Vec<Sent> {
    let mut frames = Vec::new();
    while !tx.is_empty() {
        let (b0, b1) = (tx[0], tx[1]);
        assert_eq!(b0 & 0xf0, 0x80, "FIN set, no RSV bit");
        assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
        let (len, start) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([tx[2], tx[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(tx[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push(Sent {
            opcode: b0 & 0x0f,
            payload: tx[start..start + len].to_vec(),
        });
        tx = &tx[start + len..];
    }
    frames
}

/// Feeds `input` to a new decoder in pieces of `piece` bytes.
pub(super) fn feed(input: &[u8], max: u32, piece: usize) -> (Outcome, FrameDecoder) {
    feed_pieces(input.chunks(piece.max(1)), max)
}

fn feed_pieces<'a>(pieces: impl Iterator<Item = &'a [u8]>, max: u32) -> (Outcome, FrameDecoder) {
    let mut dec = FrameDecoder::new();
    let mut out = WsOutput::new();
    let (mut v1, mut tx, mut end) = (Vec::new(), Vec::new(), None);
    for piece in pieces {
        dec.decode(piece, max, &mut out);
        v1.extend_from_slice(&out.v1);
        tx.extend_from_slice(&out.transmit);
        if let Some(e) = out.end.take() {
            assert!(end.is_none(), "a second end: {e:?}");
            assert!(dec.is_closed());
            end = Some(e);
        }
        out.clear();
    }
    let outcome = Outcome {
        messages: v1_bodies(&v1),
        sent: server_frames(&tx),
        end,
    };
    (outcome, dec)
}

/// The outcome of `input`, the same whole and byte at a time.
pub(super) fn outcome(input: &[u8], max: u32) -> Outcome {
    let (whole, _) = feed(input, max, input.len());
    let (bytewise, _) = feed(input, max, 1);
    assert_eq!(whole, bytewise, "whole vs one byte at a time");
    whole
}

#[test]
fn rfc_masked_hello_examples() {
    // RFC 6455 §5.7: a single-frame masked text message "Hello"; text is
    // not in the v1 mapping.
    let text = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    outcome(&text, MAX).assert_failed(FrameError::TextMessage);
    // The same frame as binary is one message.
    let mut binary = text;
    binary[0] = 0x82;
    let o = outcome(&binary, MAX);
    assert_eq!(o.messages, [b"Hello".to_vec()]);
    assert!(o.sent.is_empty() && o.end.is_none());
    assert_eq!(bin(b"Hello"), binary);
}

#[test]
fn rfc_fragmented_and_ping_examples() {
    // §5.7's fragmented unmasked text "Hel" + "lo": unmasked from a client.
    let unmasked = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    outcome(&unmasked, MAX).assert_failed(FrameError::Unmasked);
    // Masked and binary, it is one message.
    let mut input = frag(0x2, false, b"Hel");
    input.extend(frag(0x0, true, b"lo"));
    assert_eq!(outcome(&input, MAX).messages, [b"Hello".to_vec()]);
    // §5.7's ping "Hello", masked as a client sends it: a pong "Hello",
    // exactly the RFC's unmasked pong bytes.
    let o = outcome(&raw(0x89, b"Hello"), MAX);
    let mut tx = Vec::new();
    crate::ws::encode::write_pong(b"Hello", &mut tx);
    assert_eq!(tx, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(o.sent, server_frames(&tx));
    assert!(o.messages.is_empty() && o.end.is_none());
}

#[test]
fn rfc_16_and_64_bit_lengths() {
    // §5.7: 256 bytes (16-bit length) and 64 KiB (64-bit length).
    let p256: Vec<u8> = (0..256).map(|i| i as u8).collect();
    let input = bin(&p256);
    assert_eq!(input[..4], [0x82, 0xfe, 0x01, 0x00]);
    assert_eq!(outcome(&input, MAX).messages, [p256]);
    let p64k: Vec<u8> = (0..65536).map(|i| (i * 7) as u8).collect();
    let input = bin(&p64k);
    assert_eq!(input[..10], [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(feed(&input, MAX, 1000).0.messages, [p64k]);
}

#[test]
fn a_non_minimal_length_is_accepted() {
    // 5 bytes announced in a 16-bit length field.
    let mut input = vec![0x82, 0x80 | 126, 0, 5];
    input.extend_from_slice(&MASK);
    input.extend(b"Hello".iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    assert_eq!(outcome(&input, MAX).messages, [b"Hello".to_vec()]);
}

#[test]
fn decoder_state_is_small_and_holds_nothing_at_rest() {
    let size = std::mem::size_of::<FrameDecoder>();
    println!("size_of::<FrameDecoder>() = {size} bytes");
    assert!(size <= 64, "FrameDecoder is {size} bytes");
    // A whole message in one read never touches the connection's buffer.
    let (o, dec) = feed(&bin(&[1; 1000]), MAX, usize::MAX);
    assert_eq!(o.messages.len(), 1);
    assert_eq!(dec.held_capacity(), 0);
    // A message split across reads is held while incomplete, released after.
    let input = bin(&[2; 1000]);
    let mut dec = FrameDecoder::new();
    let mut out = WsOutput::new();
    assert!(dec.is_at_rest());
    dec.decode(&input[..500], MAX, &mut out);
    assert!(out.is_empty());
    assert!(dec.held_capacity() >= 500 - 8);
    assert!(!dec.is_at_rest(), "in the middle of a frame");
    dec.decode(&input[500..], MAX, &mut out);
    assert_eq!(v1_bodies(&out.v1), [vec![2; 1000]]);
    assert_eq!(dec.held_capacity(), 0);
    assert!(dec.is_at_rest(), "a new decoder would do as well");
    // Half a header is not at rest either.
    dec.decode(&input[..1], MAX, &mut out);
    assert!(!dec.is_at_rest());
    dec.decode(&input[1..], MAX, &mut out);
    assert!(dec.is_at_rest());
    // A control frame split across reads, likewise.
    let ping = raw(0x89, b"ping");
    dec.decode(&ping[..8], MAX, &mut out);
    assert!(dec.held_capacity() > 0);
    dec.decode(&ping[8..], MAX, &mut out);
    assert_eq!(dec.held_capacity(), 0);
}

#[test]
fn what_is_held_stays_within_max_message_and_a_control_frame() {
    let max = 4096;
    let payload = vec![9u8; max as usize];
    // A maximal message in 64 fragments, a ping between each, fed a byte
    // at a time: the buffer never passes max + 125.
    let mut input = Vec::new();
    for (i, piece) in payload.chunks(64).enumerate() {
        let op = if i == 0 { 0x2 } else { 0x0 };
        input.extend(frag(op, i == 63, piece));
        input.extend(raw(0x89, &[7; 125]));
    }
    let mut dec = FrameDecoder::new();
    let mut out = WsOutput::new();
    let mut peak = 0;
    for byte in input.chunks(1) {
        dec.decode(byte, max, &mut out);
        peak = peak.max(dec.held_capacity());
    }
    assert!(peak <= max as usize + MAX_CONTROL_PAYLOAD, "peak {peak}");
    assert!(peak >= max as usize, "peak {peak}");
    assert_eq!(v1_bodies(&out.v1), [payload]);
    assert_eq!(server_frames(&out.transmit).len(), 64);
    assert_eq!(out.pings_in, 64);
    assert_eq!(dec.held_capacity(), 0);
}

/// A stream that uses every path: one-frame messages of each length
/// encoding, an empty one, fragments with control frames between them, a
/// pong, and a close at the end.
fn mixed_stream() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for len in [0, 1, 125, 126, 300, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        input.extend(bin(&payload));
        expected.push(payload);
    }
    input.extend(frag(0x2, false, b"frag"));
    input.extend(raw(0x89, b"p1"));
    input.extend(frag(0x0, false, b""));
    input.extend(raw(0x8a, b"unsolicited"));
    input.extend(frag(0x0, false, b"men"));
    input.extend(raw(0x89, b""));
    input.extend(frag(0x0, true, b"ted"));
    expected.push(b"fragmented".to_vec());
    input.extend(close(1000, b"bye"));
    (input, expected)
}

#[test]
fn every_two_piece_split_gives_the_same_outcome() {
    let (input, expected) = mixed_stream();
    let max = 100_000;
    let (whole, _) = feed(&input, max, input.len());
    assert_eq!(whole.messages, expected);
    assert_eq!(
        whole.sent,
        [
            Sent {
                opcode: 0xa,
                payload: b"p1".to_vec()
            },
            Sent {
                opcode: 0xa,
                payload: Vec::new()
            },
            Sent {
                opcode: 0x8,
                payload: 1000u16.to_be_bytes().to_vec()
            },
        ]
    );
    assert_eq!(whole.end, Some(WsEnd::PeerClosed(Some(CloseCode::NORMAL))));
    // Every cut in the small frames at the end and around the big one.
    let cuts = (0..2000)
        .chain(70_000..70_200)
        .chain(input.len() - 300..input.len());
    for cut in cuts {
        let (a, b) = input.split_at(cut);
        let (split, _) = feed_pieces([a, b].into_iter(), max);
        assert_eq!(split, whole, "cut {cut}");
    }
    assert_eq!(feed(&input, max, 1).0, whole);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Messages of random sizes in random fragments with random pings
    /// between, read in random pieces, come out whole and in order.
    #[test]
    fn random_fragments_and_pieces(
        messages in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..600), 1usize..5, any::<bool>()),
            1..8,
        ),
        pieces in prop::collection::vec(1usize..300, 1..20),
    ) {
        let mut input = Vec::new();
        let mut pings = 0;
        for (payload, parts, ping) in &messages {
            let size = payload.len().div_ceil(*parts).max(1);
            let chunks: Vec<&[u8]> = if payload.is_empty() {
                vec![&payload[..]]
            } else {
                payload.chunks(size).collect()
            };
            for (i, chunk) in chunks.iter().enumerate() {
                let op = if i == 0 { 0x2 } else { 0x0 };
                input.extend(frag(op, i + 1 == chunks.len(), chunk));
                if *ping {
                    input.extend(raw(0x89, &[i as u8]));
                    pings += 1;
                }
            }
        }
        // Cut the input into the random piece sizes, cycling.
        let mut cut = Vec::new();
        let mut at = 0;
        for size in pieces.iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + size).min(input.len());
            cut.push(&input[at..end]);
            at = end;
        }
        let (o, dec) = feed_pieces(cut.into_iter(), MAX);
        let expected: Vec<Vec<u8>> = messages.iter().map(|m| m.0.clone()).collect();
        prop_assert_eq!(o.messages, expected);
        prop_assert_eq!(o.sent.len(), pings);
        prop_assert!(o.sent.iter().all(|s| s.opcode == 0xa));
        prop_assert_eq!(o.end, None);
        prop_assert_eq!(dec.held_capacity(), 0);
    }
}

#[test]
fn nothing_is_read_after_the_end() {
    let mut input = close(1001, b"");
    input.extend(bin(b"late"));
    input.extend(raw(0x89, b"late"));
    let o = outcome(&input, MAX);
    assert!(o.messages.is_empty());
    assert_eq!(o.sent.len(), 1);
    assert_eq!(o.end, Some(WsEnd::PeerClosed(Some(CloseCode::GOING_AWAY))));
    // Nor after a violation; what came before it is delivered.
    let mut input = bin(b"before");
    input.extend(raw(0x83, b""));
    input.extend(bin(b"after"));
    let o = outcome(&input, MAX);
    assert_eq!(o.messages, [b"before".to_vec()]);
    o.assert_failed(FrameError::ReservedOpcode(3));
}

#[test]
fn after_the_server_closes_it_answers_nothing_more() {
    let mut dec = FrameDecoder::new();
    let mut out = WsOutput::new();
    dec.close_sent();
    let mut input = bin(b"dropped");
    input.extend(raw(0x89, b"no pong"));
    input.extend(close(1000, b""));
    dec.decode(&input, MAX, &mut out);
    assert!(out.v1.is_empty() && out.transmit.is_empty());
    assert_eq!(out.end, Some(WsEnd::PeerClosed(Some(CloseCode::NORMAL))));
    // A violation then ends it without a second close frame either.
    let mut dec = FrameDecoder::new();
    let mut out = WsOutput::new();
    dec.close_sent();
    dec.decode(&[0x82, 0x00], MAX, &mut out);
    assert!(out.transmit.is_empty());
    assert_eq!(out.end, Some(WsEnd::Failed(FrameError::Unmasked)));
}

#[test]
fn the_v1_session_reads_the_messages_and_its_output_maps_back() {
    // A Hello as one binary message (no length prefix), in two fragments.
    let hello = frame(Kind::Hello(Hello {
        version: 1,
        token: "tok".into(),
        ..Hello::default()
    }));
    let mut v1 = Vec::new();
    encode_frame(&hello, &mut v1);
    let body = &v1[4..];
    let mut input = Vec::new();
    write_masked(Opcode::Binary, false, MASK, &body[..3], &mut input);
    write_masked(
        Opcode::Continuation,
        true,
        [1, 2, 3, 4],
        &body[3..],
        &mut input,
    );

    let mut dec = FrameDecoder::new();
    let mut ws = WsOutput::new();
    dec.decode(&input, MAX, &mut ws);
    assert_eq!(ws.v1, v1, "the message comes out as the v1 frame");

    let cfg = ServerConfig::default();
    let mut session = ServerSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    session.handle_input(Millis(0), &ws.v1, &cfg, &mut out);
    assert!(matches!(out.events.as_slice(), [Event::Hello(h)] if h.token == "tok"));

    // The session's own frames go out as one binary message each.
    let mut reply = Vec::new();
    for id in [5, 6] {
        encode_frame(&frame(Kind::Ping(Ping { id })), &mut reply);
    }
    let mut tx = Vec::new();
    assert_eq!(write_v1_as_binary(&reply, &mut tx), reply.len());
    let sent = server_frames(&tx);
    assert_eq!(sent.len(), 2);
    for (s, id) in sent.iter().zip([5, 6]) {
        assert_eq!(s.opcode, 0x2);
        let mut prefixed = (s.payload.len() as u32).to_be_bytes().to_vec();
        prefixed.extend_from_slice(&s.payload);
        let (f, _) = decode_frame(&prefixed, MAX).unwrap().unwrap();
        assert_eq!(f.kind, Some(Kind::Ping(Ping { id })));
    }
}

#[test]
fn an_empty_message_is_an_empty_v1_frame_the_session_refuses() {
    let o = outcome(&bin(b""), MAX);
    assert_eq!(o.messages, [Vec::<u8>::new()]);
    let mut ws = WsOutput::new();
    FrameDecoder::new().decode(&bin(b""), MAX, &mut ws);
    assert_eq!(ws.v1, [0, 0, 0, 0]);
    let cfg = ServerConfig::default();
    let mut session = ServerSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    session.handle_input(Millis(0), &ws.v1, &cfg, &mut out);
    assert!(session.is_closed());
}

#[test]
fn errors_say_what_happened() {
    for e in [
        FrameError::Unmasked,
        FrameError::MessageTooLarge { len: 10, max: 5 },
        FrameError::ReservedOpcode(0xb),
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        FrameError::ReservedOpcode(0xb).to_string(),
        "reserved opcode 0xb"
    );
}

//! Frame encoding: unmasked server frames (RFC 6455 §5.1: a server never
//! masks), and masked client frames for tests and the load harness.
//!
//! Every function appends to a caller-owned buffer, except
//! [`encode_binary`] and [`encode_v1_as_binary`], which make the one shared
//! copy of a broadcast: a server frame does not depend on its recipient, so
//! the same bytes go to every WebSocket connection.

use bytes::{BufMut, Bytes};

use super::close::{CloseCode, fit_reason};
use super::frame::{MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::codec::LENGTH_PREFIX;

/// Length of the header of an unmasked frame with `payload_len` bytes:
/// 2 bytes, plus 2 for a 16-bit length (126–65535), or 8 for a 64-bit one.
#[must_use]
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Appends a frame header: FIN set when `fin`, no RSV bit, `opcode`, the
/// shortest length encoding of `payload_len`, and `mask` if given.
pub fn write_header(
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
    mask: Option<[u8; 4]>,
    out: &mut impl BufMut,
) {
    let b0 = if fin { 0x80 } else { 0 } | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.put_u8(b0);
    match payload_len {
        // The match arms bound the values: the casts cannot truncate.
        0..=125 => out.put_u8(mask_bit | payload_len as u8),
        126..=0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(payload_len as u16);
        }
        _ => {
            out.put_u8(mask_bit | 127);
            out.put_u64(payload_len as u64);
        }
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
}

/// Appends one unmasked binary message (a single frame) carrying `payload`.
pub fn write_binary(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(header_len(payload.len()) + payload.len());
    write_header(Opcode::Binary, true, payload.len(), None, out);
    out.extend_from_slice(payload);
}

/// One binary message carrying `payload`, as shared bytes: made once per
/// broadcast and handed to every WebSocket recipient.
#[must_use]
pub fn encode_binary(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    write_binary(payload, &mut out);
    Bytes::from(out)
}

/// Appends each length-prefixed v1 frame at the front of `v1` as one binary
/// message (the v1 mapping: one `Frame` per message, no length prefix), and
/// returns how many bytes of `v1` were converted.
///
/// The conversion stops before an incomplete frame: a session's output is
/// always whole frames, so the count is `v1.len()` unless the caller passed
/// a cut buffer.
pub fn write_v1_as_binary(v1: &[u8], out: &mut Vec<u8>) -> usize {
    let mut used = 0;
    while let Some(prefix) = v1
        .get(used..)
        .and_then(<[u8]>::first_chunk::<LENGTH_PREFIX>)
    {
        let len = u32::from_be_bytes(*prefix) as usize;
        let start = used + LENGTH_PREFIX;
        let Some(body) = v1.get(start..start.saturating_add(len)) else {
            break;
        };
        write_binary(body, out);
        used = start + len;
    }
    used
}

/// Like [`write_v1_as_binary`], into shared bytes: the one WebSocket copy
/// of a push's v1 frame (or run of frames) that every recipient gets.
#[must_use]
pub fn encode_v1_as_binary(v1: &[u8]) -> Bytes {
    // Each frame trades a 4-byte prefix for a header of at most 10 bytes.
    let mut out = Vec::with_capacity(v1.len() + v1.len() / 2 + 16);
    write_v1_as_binary(v1, &mut out);
    Bytes::from(out)
}

/// Appends a pong carrying `payload` (the ping's payload, RFC 6455 §5.5.3).
/// Control payloads are at most 125 bytes: a longer one is cut.
pub fn write_pong(payload: &[u8], out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    write_header(Opcode::Pong, true, payload.len(), None, out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit at a
/// character boundary, see [`fit_reason`]).
pub fn write_close(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let reason = fit_reason(reason);
    write_header(Opcode::Close, true, 2 + reason.len(), None, out);
    out.put_u16(code.0);
    out.extend_from_slice(reason.as_bytes());
}

/// Appends a close frame without a payload (the answer to a peer's close
/// that carried no code).
pub fn write_empty_close(out: &mut Vec<u8>) {
    write_header(Opcode::Close, true, 0, None, out);
}

/// Appends a frame as a client sends it: masked with `mask`. For tests, the
/// load harness and the fuzz seeds; the gateway never sends one. Any
/// opcode, FIN value and length is written as asked, so tests can build
/// invalid frames too.
pub fn write_masked(opcode: Opcode, fin: bool, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    write_header(opcode, fin, payload.len(), Some(mask), out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, frame};
    use crate::proto::{Ping, frame::Kind};

    #[test]
    fn rfc_unmasked_hello_and_pong_examples() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        let mut out = Vec::new();
        write_header(Opcode::Text, true, 5, None, &mut out);
        out.extend_from_slice(b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // §5.7: an unmasked pong whose body is "Hello".
        out.clear();
        write_pong(b"Hello", &mut out);
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_masked_hello_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let mut out = Vec::new();
        write_masked(
            Opcode::Text,
            true,
            [0x37, 0xfa, 0x21, 0x3d],
            b"Hello",
            &mut out,
        );
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn lengths_use_7_16_and_64_bits() {
        // RFC 6455 §5.7: 256 bytes in one unmasked binary frame, and 64 KiB.
        let mut out = Vec::new();
        write_binary(&[0u8; 256], &mut out);
        assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        out.clear();
        write_binary(&vec![0u8; 65536], &mut out);
        assert_eq!(
            out[..10],
            [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(out.len(), 10 + 65536);
        // The boundaries.
        for (len, header) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            assert_eq!(header_len(len), header, "{len}");
            out.clear();
            write_binary(&vec![7u8; len], &mut out);
            assert_eq!(out.len(), header + len, "{len}");
        }
    }

    #[test]
    fn shared_binary_matches_the_appended_one() {
        let mut out = Vec::new();
        write_binary(b"frame", &mut out);
        assert_eq!(&encode_binary(b"frame")[..], &out[..]);
        assert_eq!(&encode_binary(b"")[..], &[0x82, 0x00]);
    }

    #[test]
    fn v1_frames_become_one_binary_message_each() {
        let mut v1 = Vec::new();
        for id in [1, 300] {
            encode_frame(&frame(Kind::Ping(Ping { id })), &mut v1);
        }
        let mut expected = Vec::new();
        let first = 4 + usize::from(v1[3]);
        write_binary(&v1[4..first], &mut expected);
        write_binary(&v1[first + 4..], &mut expected);

        let mut out = Vec::new();
        assert_eq!(write_v1_as_binary(&v1, &mut out), v1.len());
        assert_eq!(out, expected);
        assert_eq!(&encode_v1_as_binary(&v1)[..], &expected[..]);

        // A cut buffer converts its whole frames only.
        out.clear();
        assert_eq!(write_v1_as_binary(&v1[..v1.len() - 1], &mut out), first);
        assert_eq!(write_v1_as_binary(&v1[..2], &mut Vec::new()), 0);
    }

    #[test]
    fn close_frames_carry_code_and_fitted_reason() {
        let mut out = Vec::new();
        write_close(CloseCode::MESSAGE_TOO_BIG, "too big", &mut out);
        assert_eq!(out[..4], [0x88, 9, 0x03, 0xf1]);
        assert_eq!(&out[4..], b"too big");
        out.clear();
        write_close(CloseCode::NORMAL, &"x".repeat(300), &mut out);
        assert_eq!(out[1] as usize, MAX_CONTROL_PAYLOAD);
        assert_eq!(out.len(), 2 + MAX_CONTROL_PAYLOAD);
        out.clear();
        write_empty_close(&mut out);
        assert_eq!(out, [0x88, 0x00]);
        out.clear();
        write_pong(&[1u8; 200], &mut out);
        assert_eq!(out.len(), 2 + MAX_CONTROL_PAYLOAD);
    }
}

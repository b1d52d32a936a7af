//! WebSocket (RFC 6455), server side, sans-IO: the opening handshake, the
//! frame decoder for client frames and the encoder for server frames.
//!
//! The mapping of wire protocol v1 onto WebSocket (`DESIGN.md` §3): the
//! client offers the subprotocol [`SUBPROTOCOL`] (`gateway.v1`), and every
//! binary message is exactly one protobuf `Frame`, without the 4-byte length
//! prefix of raw v1. The session rules are the v1 ones.
//!
//! - [`handshake`]: an HTTP/1.1 Upgrade request in, `101 Switching
//!   Protocols` or a 4xx out ([`handshake::read_upgrade`]).
//! - [`decode`]: client frames in ([`FrameDecoder`]), and out of them whole
//!   binary messages as v1 frames (length prefix put back), so the bytes go
//!   to [`ServerSession::handle_input`](crate::server::ServerSession::handle_input)
//!   unchanged; pongs and close frames to send; the end of the connection.
//! - [`encode`]: unmasked server frames: a binary message (once per
//!   broadcast, shared by every WebSocket recipient), a run of v1 frames as
//!   binary messages, pong and close; masked client frames for tests and the
//!   load harness.
//! - [`close`]: close codes ([`CloseCode`]) and close frame payloads.
//!
//! # What this codec decides
//!
//! - No extension is negotiated (no `permessage-deflate`): a frame with an
//!   RSV bit set is a protocol error (1002).
//! - Text messages are not part of the mapping: the first frame of one is
//!   answered with close 1003 (unsupported data).
//! - A message (all its fragments together) may be at most `max_message`
//!   bytes, the v1 `max_frame`: one byte more is close 1009, decided from a
//!   frame header alone.
//! - An empty binary message becomes an empty v1 frame, which the session
//!   refuses like an empty raw v1 frame (`Error(BAD_FRAME)`).
//!
//! # Memory
//!
//! A connection between messages holds no buffer: [`FrameDecoder`] is a
//! fixed-size value (at most 64 bytes, checked by a test) whose `Vec` has
//! no capacity at rest. Bytes are held only while a message or a control
//! frame is incomplete at the end of a read, at most `max_message + 125`,
//! and released when it completes. A message whose last frame is whole in
//! one read is unmasked straight into the caller's [`WsOutput`], never
//! through the connection's own buffer.

pub mod close;
pub mod decode;
pub mod encode;
pub mod handshake;

pub use close::CloseCode;
pub use decode::{FrameDecoder, FrameError, WsEnd, WsOutput};

/// The subprotocol of the v1 mapping, offered by the client in
/// `Sec-WebSocket-Protocol` and echoed by the server.
pub const SUBPROTOCOL: &str = "gateway.v1";

/// Largest control frame payload (RFC 6455 §5.5): pings, pongs and closes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest frame header: 2 bytes, an 8-byte extended length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// A frame's opcode (RFC 6455 §5.2). Values 3–7 and 11–15 are reserved and
/// refused by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// A later fragment of a fragmented message.
    Continuation = 0x0,
    /// The first frame of a text message (refused by this mapping).
    Text = 0x1,
    /// The first frame of a binary message.
    Binary = 0x2,
    /// Close (control).
    Close = 0x8,
    /// Ping (control).
    Ping = 0x9,
    /// Pong (control).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for the low 4 bits `bits`, or `None` for a reserved value.
    #[must_use]
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    #[must_use]
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// XORs `buf` with the 4-byte `mask`, `buf[0]` being the payload byte at
/// `offset` (RFC 6455 §5.3). Masking and unmasking are the same operation.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    // A simple indexed loop: LLVM vectorises it.
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_reserved_ones_are_none() {
        for op in [
            Opcode::Continuation,
            Opcode::Text,
            Opcode::Binary,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ] {
            assert_eq!(Opcode::from_bits(op as u8), Some(op));
        }
        for bits in (3..=7).chain(11..=15) {
            assert_eq!(Opcode::from_bits(bits), None, "{bits}");
        }
        assert!(Opcode::Ping.is_control() && !Opcode::Binary.is_control());
    }

    #[test]
    fn masking_at_any_offset_matches_bytewise() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for (i, (&d, &w)) in data.iter().zip(&whole).enumerate() {
            assert_eq!(d ^ mask[i % 4], w);
        }
        // Unmasking in pieces at every split point gives the same bytes.
        for cut in 0..data.len() {
            let mut pieces = whole.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, cut);
            assert_eq!(pieces, data, "cut {cut}");
        }
    }
}

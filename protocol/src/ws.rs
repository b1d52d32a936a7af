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
//! - [`frame`]: opcodes, header and control frame limits, masking.
//! - [`client`]: the client side (Upgrade request and answer, server
//!   frames in, masked frames out) for the load harness and tests.
//! - [`session_close`]: the close code for a v1 session's end (`Bye`,
//!   kick, error), for the close frame the server sends after it.
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
//! and released when it completes. A one-frame message that arrives whole
//! in one read (the common case) is unmasked straight into the caller's
//! [`WsOutput`], never through the connection's own buffer.
//!
//! # Example: an upgrade, then a client's message
//!
//! ```
//! use protocol::ws::encode::write_masked;
//! use protocol::ws::handshake::{read_upgrade, Handshake, HandshakeConfig};
//! use protocol::ws::{FrameDecoder, Opcode, WsOutput};
//!
//! let request = b"GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: gateway.v1\r\n\r\n";
//! let Handshake::Accept(accepted) = read_upgrade(request, &HandshakeConfig::default()) else {
//!     panic!("refused");
//! };
//! assert!(accepted.response.starts_with(b"HTTP/1.1 101 Switching Protocols"));
//! assert_eq!(accepted.consumed, request.len());
//!
//! // A binary message as a browser sends it (masked) comes out as a v1
//! // frame: the 4-byte length, then the protobuf bytes.
//! let mut wire = Vec::new();
//! write_masked(Opcode::Binary, true, [1, 2, 3, 4], &[0x1a, 0x00], &mut wire);
//! let (mut decoder, mut out) = (FrameDecoder::new(), WsOutput::new());
//! decoder.decode(&wire, 65536, &mut out);
//! assert_eq!(out.v1, [0, 0, 0, 2, 0x1a, 0x00]);
//! assert_eq!(decoder.held_capacity(), 0);
//! ```

pub mod client;
pub mod close;
pub mod decode;
pub mod encode;
pub mod frame;
pub mod handshake;
pub mod session_close;

pub use close::{CloseCode, CloseError};
pub use decode::{FrameDecoder, FrameError, WsEnd, WsOutput};
pub use frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER, Opcode};
pub use handshake::SUBPROTOCOL;

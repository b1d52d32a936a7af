//! The incremental decoder of client frames (RFC 6455 §5), server side.
//!
//! A [`FrameDecoder`] per connection is fed the bytes the client sent, in
//! pieces of any size ([`FrameDecoder::decode`]), and writes into a
//! caller-owned [`WsOutput`] shared by every connection of a shard:
//!
//! - each complete binary message, as one v1 frame (4-byte big-endian
//!   length, then the payload), into [`WsOutput::v1`]: those bytes go to the
//!   v1 session unchanged, which decodes the protobuf and applies the same
//!   limits and rules as on raw TCP;
//! - the frames to send back, into [`WsOutput::transmit`]: a pong for each
//!   ping (same payload), the echo of a peer's close, or the close frame
//!   that answers a protocol violation;
//! - the end of the connection, once, into [`WsOutput::end`].
//!
//! Feeding the same bytes in one piece or one byte at a time gives the same
//! output (tested at every split point).
//!
//! # Rules
//!
//! | input | answer |
//! |---|---|
//! | an unmasked frame (§5.1) | close 1002 |
//! | an RSV bit set (no extension is negotiated) | close 1002 |
//! | a reserved opcode (3–7, 11–15) | close 1002 |
//! | a control frame fragmented or over 125 bytes (§5.5) | close 1002 |
//! | a continuation with no message to continue, a new message inside a fragmented one (§5.4) | close 1002 |
//! | a 64-bit length with its top bit set | close 1002 |
//! | a text message (not in the v1 mapping) | close 1003 |
//! | a message over `max_message` bytes, fragments together | close 1009, from the header |
//! | a close with a 1-byte payload or a code not valid on the wire (§7.4) | close 1002 |
//! | a close whose reason is not UTF-8 | close 1007 |
//! | a close | the same code echoed (an empty close for an empty one), then the end |
//! | a ping | a pong with the same payload |
//! | a pong | ignored |
//!
//! A non-minimal length encoding (say 5 in a 16-bit field) is accepted: the
//! RFC asks senders for the minimal one, and refusing it buys nothing.
//! After the end every call is ignored.

use bytes::BufMut;

use super::close::{CloseCode, CloseError, parse_close_payload};
use super::encode::{write_close, write_empty_close, write_pong};
use super::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER, Opcode, apply_mask};

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const OPCODE: u8 = 0x0f;
const MASKED: u8 = 0x80;
const LEN7: u8 = 0x7f;

/// A violation of RFC 6455 (or of the v1 mapping) by the client. Every
/// variant ends the connection with a close frame carrying
/// [`FrameError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A client frame without the mask bit (§5.1).
    #[error("client frame is not masked")]
    Unmasked,
    /// An RSV bit is set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode the RFC reserves (3–7, 11–15).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A continuation frame while no fragmented message is open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is open.
    #[error("new message inside a fragmented message")]
    ExpectedContinuation,
    /// A text message: the v1 mapping carries binary messages only.
    #[error("text messages are not part of the gateway.v1 mapping; send binary")]
    TextMessage,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("payload length has its most significant bit set")]
    BadLength,
    /// The message (its fragments so far and this frame) is over the limit.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Bytes of the message announced so far.
        len: u64,
        /// The limit, `max_message`.
        max: u32,
    },
    /// A close frame whose payload is invalid: 1 byte long, a code that
    /// may not be sent, or a reason that is not UTF-8.
    #[error(transparent)]
    BadClose(#[from] CloseError),
}

impl FrameError {
    /// The code of the close frame that answers this violation.
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TextMessage => CloseCode::UNSUPPORTED_DATA,
            FrameError::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            FrameError::BadClose(e) => e.close_code(),
            FrameError::Unmasked
            | FrameError::ReservedBits
            | FrameError::ReservedOpcode(_)
            | FrameError::FragmentedControl
            | FrameError::ControlTooLong
            | FrameError::UnexpectedContinuation
            | FrameError::ExpectedContinuation
            | FrameError::BadLength => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// How a WebSocket connection ended, as the decoder saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsEnd {
    /// The client sent a close frame with this code (`None`: it gave no
    /// code). The echo, unless the server had already sent its own close,
    /// is in [`WsOutput::transmit`]: send it, then close the stream.
    PeerClosed(Option<CloseCode>),
    /// The client broke the protocol. The close frame answering it, unless
    /// the server had already sent its own, is in [`WsOutput::transmit`]:
    /// send it, then close the stream.
    Failed(FrameError),
}

/// What the decoder produced during one call. Owned by the caller and
/// shared by every connection of a shard: call [`WsOutput::clear`] before
/// handing it to the next connection.
#[derive(Debug, Default)]
pub struct WsOutput {
    /// Complete binary messages, in order, each as a v1 frame: a 4-byte
    /// big-endian length, then the message. Feed them to the v1 session.
    pub v1: Vec<u8>,
    /// WebSocket frames to send to the client, in order (pongs, a close).
    pub transmit: Vec<u8>,
    /// Set once, when the connection ends; nothing follows it.
    pub end: Option<WsEnd>,
    /// Complete binary messages decoded (a running count the caller may
    /// read and reset; [`WsOutput::clear`] leaves it alone).
    pub messages_in: u64,
    /// Pings received (a running count, as `messages_in`).
    pub pings_in: u64,
}

impl WsOutput {
    /// An empty output.
    #[must_use]
    pub fn new() -> WsOutput {
        WsOutput::default()
    }

    /// Empties `v1`, `transmit` and `end`, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.v1.clear();
        self.transmit.clear();
        self.end = None;
    }

    /// Whether nothing was produced.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v1.is_empty() && self.transmit.is_empty() && self.end.is_none()
    }
}

/// What the decoder is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// A frame header (possibly none of it yet).
    #[default]
    Header,
    /// The payload of the frame whose header was read last.
    Payload,
    /// Over: every further call is ignored.
    Closed,
}

/// The per-connection state of the client frame decoder. See the
/// [module docs](self).
///
/// At most 64 bytes, and no heap at rest: `held` has capacity only while a
/// message or control frame is incomplete at the end of a read.
#[derive(Debug)]
pub struct FrameDecoder {
    /// The unmasked bytes of an incomplete message (and behind them those of
    /// an incomplete control frame). Without capacity when nothing is held.
    held: Vec<u8>,
    /// Payload length of the frame being read.
    frame_len: u32,
    /// Payload bytes of that frame still to come.
    remaining: u32,
    /// Its masking key.
    mask: [u8; 4],
    /// The header read so far, while it is incomplete.
    head: [u8; MAX_HEADER],
    /// Bytes of `head` filled.
    head_len: u8,
    /// The opcode of the frame being read.
    opcode: Opcode,
    /// Whether that frame has FIN set.
    fin: bool,
    phase: Phase,
    /// A fragmented message is open: its first frame came without FIN.
    in_message: bool,
    /// The server sent its own close frame ([`FrameDecoder::close_sent`]).
    close_sent: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder for a connection whose opening handshake just completed.
    #[must_use]
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            held: Vec::new(),
            frame_len: 0,
            remaining: 0,
            mask: [0; 4],
            head: [0; MAX_HEADER],
            head_len: 0,
            opcode: Opcode::Binary,
            fin: false,
            phase: Phase::Header,
            in_message: false,
            close_sent: false,
        }
    }

    /// Whether the connection has ended (a close, or a violation).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the decoder is between frames with nothing held, in the state
    /// [`FrameDecoder::new`] makes: a caller may drop it and start a new one
    /// on the next read, so an idle connection need not keep one at all.
    #[must_use]
    pub fn is_at_rest(&self) -> bool {
        self.phase == Phase::Header
            && self.head_len == 0
            && !self.in_message
            && !self.close_sent
            && self.held.capacity() == 0
    }

    /// Bytes of heap the decoder holds (0 between messages).
    #[must_use]
    pub fn held_capacity(&self) -> usize {
        self.held.capacity()
    }

    /// Tells the decoder the server sent its own close frame (a kick, a
    /// drain, a v1 error): from now on binary messages are dropped, pings
    /// get no pong, and the client's close ends the connection without an
    /// echo (RFC 6455 §5.5.1: the close handshake is one frame each way).
    pub fn close_sent(&mut self) {
        self.close_sent = true;
    }

    /// Feeds bytes received from the client. They may hold part of a
    /// frame, several frames, or garbage; `max_message` is the largest
    /// message accepted, fragments together (the v1 `max_frame`).
    pub fn decode(&mut self, mut input: &[u8], max_message: u32, out: &mut WsOutput) {
        loop {
            let step = match self.phase {
                Phase::Header if !input.is_empty() => self.read_header(input, max_message),
                // An empty payload completes with no input left.
                Phase::Payload if !input.is_empty() || self.remaining == 0 => {
                    self.read_payload(input, max_message, out)
                }
                _ => return,
            };
            match step {
                Ok(used) => input = input.get(used..).unwrap_or_default(),
                Err(e) => return self.fail(e, out),
            }
        }
    }

    /// Reads header bytes from the front of `input` and returns how many it
    /// took. Each part is checked as soon as it is complete, so a bad first
    /// two bytes or an oversize length fail before the rest arrives.
    fn read_header(&mut self, input: &[u8], max_message: u32) -> Result<usize, FrameError> {
        let mut used = 0;
        if !self.fill(2, input, &mut used) {
            return Ok(used);
        }
        let (b0, b1) = (self.head[0], self.head[1]);
        let opcode = self.check_start(b0, b1)?;
        let ext = match b1 & LEN7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if !self.fill(2 + ext, input, &mut used) {
            return Ok(used);
        }
        let len = self.payload_len(b1, ext, opcode, max_message)?;
        if !self.fill(2 + ext + 4, input, &mut used) {
            return Ok(used);
        }
        self.mask.copy_from_slice(&self.head[2 + ext..6 + ext]);
        self.frame_len = len;
        self.remaining = len;
        self.opcode = opcode;
        self.fin = b0 & FIN != 0;
        self.head_len = 0;
        self.phase = Phase::Payload;
        if opcode == Opcode::Binary && b0 & FIN == 0 {
            self.in_message = true;
        }
        Ok(used)
    }

    /// Copies bytes from `input[*used..]` into `head` until it holds
    /// `upto`; whether it does.
    fn fill(&mut self, upto: usize, input: &[u8], used: &mut usize) -> bool {
        let have = usize::from(self.head_len);
        if have >= upto {
            return true;
        }
        let rest = input.get(*used..).unwrap_or_default();
        let take = (upto - have).min(rest.len());
        self.head[have..have + take].copy_from_slice(&rest[..take]);
        // `take <= MAX_HEADER`: fits a u8.
        self.head_len += take as u8;
        *used += take;
        have + take == upto
    }

    /// Checks the first two header bytes against the RFC and the state.
    fn check_start(&self, b0: u8, b1: u8) -> Result<Opcode, FrameError> {
        if b0 & RSV != 0 {
            return Err(FrameError::ReservedBits);
        }
        if b1 & MASKED == 0 {
            return Err(FrameError::Unmasked);
        }
        let bits = b0 & OPCODE;
        let opcode = Opcode::from_bits(bits).ok_or(FrameError::ReservedOpcode(bits))?;
        if opcode.is_control() {
            if b0 & FIN == 0 {
                return Err(FrameError::FragmentedControl);
            }
            if usize::from(b1 & LEN7) > MAX_CONTROL_PAYLOAD {
                return Err(FrameError::ControlTooLong);
            }
            return Ok(opcode);
        }
        match (opcode, self.in_message) {
            (Opcode::Continuation, false) => Err(FrameError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, true) => Err(FrameError::ExpectedContinuation),
            (Opcode::Text, false) => Err(FrameError::TextMessage),
            _ => Ok(opcode),
        }
    }

    /// The payload length from a header whose length bytes are all in
    /// `head`, checked against `max_message` for data frames.
    fn payload_len(
        &self,
        b1: u8,
        ext: usize,
        opcode: Opcode,
        max_message: u32,
    ) -> Result<u32, FrameError> {
        let len = match ext {
            0 => u64::from(b1 & LEN7),
            2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            _ => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(bytes)
            }
        };
        if len >> 63 != 0 {
            return Err(FrameError::BadLength);
        }
        let total = if opcode.is_control() {
            len
        } else {
            (self.held.len() as u64).saturating_add(len)
        };
        if !opcode.is_control() && total > u64::from(max_message) {
            return Err(FrameError::MessageTooLarge {
                len: total,
                max: max_message,
            });
        }
        // Within max_message (a u32) or at most 125: fits.
        u32::try_from(len).map_err(|_| FrameError::MessageTooLarge {
            len: total,
            max: max_message,
        })
    }

    /// Reads payload bytes of the current frame from the front of `input`
    /// and returns how many it took; completes the frame when they are all in.
    fn read_payload(
        &mut self,
        input: &[u8],
        max_message: u32,
        out: &mut WsOutput,
    ) -> Result<usize, FrameError> {
        let n = input.len().min(self.remaining as usize);
        let chunk = &input[..n];
        let opcode = self.opcode;
        let whole = n == self.frame_len as usize;
        if whole && opcode.is_control() {
            // The whole control frame is in this read: unmask on the stack.
            let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
            let payload = &mut payload[..n];
            payload.copy_from_slice(chunk);
            apply_mask(payload, self.mask, 0);
            self.phase = Phase::Header;
            self.on_control(opcode, payload, out)?;
        } else if whole && opcode == Opcode::Binary && self.fin {
            // A one-frame message whole in this read: straight into `out`.
            self.phase = Phase::Header;
            if !self.close_sent {
                deliver(chunk, Some(self.mask), out);
            }
        } else {
            let offset = (self.frame_len - self.remaining) as usize;
            self.hold(chunk, offset, max_message);
            self.remaining -= n as u32;
            if self.remaining == 0 {
                self.phase = Phase::Header;
                self.complete_held(opcode, out)?;
            }
        }
        Ok(n)
    }

    /// Appends `chunk`, unmasked, to `held`. The capacity grows by doubling
    /// but never past `max_message + 125` (or what this frame needs).
    fn hold(&mut self, chunk: &[u8], offset: usize, max_message: u32) {
        let need = self.held.len() + self.remaining as usize;
        if self.held.capacity() < need {
            let cap = (self.held.capacity() * 2).min(max_message as usize + MAX_CONTROL_PAYLOAD);
            self.held.reserve_exact(need.max(cap) - self.held.len());
        }
        let start = self.held.len();
        self.held.extend_from_slice(chunk);
        apply_mask(&mut self.held[start..], self.mask, offset);
    }

    /// Completes a frame whose payload was gathered in `held`.
    fn complete_held(&mut self, opcode: Opcode, out: &mut WsOutput) -> Result<(), FrameError> {
        if opcode.is_control() {
            // The control payload is at the end of `held`, behind any open
            // message; take it out onto the stack.
            let start = self.held.len() - self.frame_len as usize;
            let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
            let payload = &mut payload[..self.frame_len as usize];
            payload.copy_from_slice(&self.held[start..]);
            self.held.truncate(start);
            if self.held.is_empty() {
                self.held = Vec::new();
            }
            return self.on_control(opcode, payload, out);
        }
        if self.fin {
            self.in_message = false;
            let message = std::mem::take(&mut self.held);
            if !self.close_sent {
                deliver(&message, None, out);
            }
        }
        Ok(())
    }

    /// Acts on a complete control frame.
    fn on_control(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        out: &mut WsOutput,
    ) -> Result<(), FrameError> {
        match opcode {
            Opcode::Ping => {
                out.pings_in += 1;
                if !self.close_sent {
                    write_pong(payload, &mut out.transmit);
                }
            }
            Opcode::Close => {
                let code = parse_close_payload(payload)?;
                if !self.close_sent {
                    match code {
                        Some(code) => write_close(code, "", &mut out.transmit),
                        None => write_empty_close(&mut out.transmit),
                    }
                }
                self.finish(WsEnd::PeerClosed(code), out);
            }
            // Pong (and, never reached, the data opcodes).
            _ => {}
        }
        Ok(())
    }

    /// Ends the connection on a violation: the answering close frame (unless
    /// the server already sent one), then the end.
    fn fail(&mut self, error: FrameError, out: &mut WsOutput) {
        if !self.close_sent {
            write_close(error.close_code(), &error.to_string(), &mut out.transmit);
        }
        self.finish(WsEnd::Failed(error), out);
    }

    fn finish(&mut self, end: WsEnd, out: &mut WsOutput) {
        self.phase = Phase::Closed;
        self.held = Vec::new();
        self.in_message = false;
        out.end = Some(end);
    }
}

/// Appends a complete message to `out.v1` as a v1 frame, unmasking it with
/// `mask` if given.
fn deliver(message: &[u8], mask: Option<[u8; 4]>, out: &mut WsOutput) {
    out.v1.reserve(crate::codec::LENGTH_PREFIX + message.len());
    // At most max_message (a u32) bytes: fits.
    out.v1.put_u32(message.len() as u32);
    let start = out.v1.len();
    out.v1.extend_from_slice(message);
    if let Some(mask) = mask {
        apply_mask(&mut out.v1[start..], mask, 0);
    }
    out.messages_in += 1;
}

#[cfg(test)]
mod tests;

//! One TLS connection's state, driven by the shard core: ciphertext from
//! the socket in, plaintext for the transport above (raw v1 or WebSocket)
//! out; plaintext to send in, ciphertext for the socket out. The record
//! layer, the handshake and alerts are rustls's; this only moves bytes
//! between it and caller-owned buffers, and never does I/O.
//!
//! It is built on rustls's unbuffered connection, which keeps no buffer of
//! its own: the buffered `ServerConnection` keeps a 4 KiB read buffer for
//! the life of the connection (its deframer shrinks to one read, never to
//! nothing), which alone is the whole idle budget. Here a connection holds
//! bytes only while they are in motion, the way `protocol::ws::FrameDecoder`
//! does:
//!
//! - `held_in`: ciphertext received but not yet consumed, that is an
//!   incomplete record (or, during the handshake, records of a handshake
//!   message still incomplete). Freed as soon as it is consumed.
//! - `pending_out`: records rustls produced by itself (the handshake's
//!   flights, a KeyUpdate, an alert) until the next [`TlsStream::seal`]
//!   takes them. Freed when taken.
//! - `early_plain`: plaintext sealed before the handshake allows sending
//!   application data (the core does not do this: it answers only after
//!   the `Hello`, which comes behind the client's Finished).
//!
//! Ciphertext for pushes goes straight into the caller's buffer (the
//! frame the core is about to send), so a broadcast is encoded once and
//! only encrypted per recipient.

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ServerConfig, SupportedCipherSuite};

/// Upper bound on what one record adds to its plaintext (header, explicit
/// nonce, tag, inner content type), used to size the output before an
/// encryption; rustls says how much it needs when this falls short.
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1;
/// The largest plaintext in one record.
const MAX_FRAGMENT: usize = 16384;

/// A server-side TLS connection.
pub struct TlsStream {
    conn: UnbufferedServerConnection,
    /// Ciphertext not yet consumed (an incomplete record); no capacity
    /// when empty.
    held_in: Vec<u8>,
    /// Records rustls produced by itself, not yet taken by `seal`; no
    /// capacity when empty.
    pending_out: Vec<u8>,
    /// Plaintext sealed before application data could be sent; no
    /// capacity when empty.
    early_plain: Vec<u8>,
    /// The error that ended the connection: every later read returns it.
    /// Boxed: it is rare, and inline it would take 64 bytes of every
    /// connection.
    failed: Option<Box<rustls::Error>>,
    /// The handshake is done (rustls offered application-data writes).
    established: bool,
    /// A close_notify is to follow the last plaintext sealed.
    closing: bool,
    /// The close_notify has gone into the output.
    close_sent: bool,
    /// The peer sent its close_notify: nothing more is read.
    peer_closed: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("held_in", &self.held_in.len())
            .field("pending_out", &self.pending_out.len())
            .field("early_plain", &self.early_plain.len())
            .field("failed", &self.failed)
            .field("established", &self.established)
            .field("closing", &self.closing)
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

/// What one step of rustls's state machine asked for.
enum Step {
    /// Go on: call rustls again.
    Again,
    /// Nothing more can happen until more input or output is given.
    Stop,
}

impl TlsStream {
    /// A connection just accepted, to be handshaken with `config` (the
    /// acceptor's current config, so a reload never changes it later).
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsStream {
            conn: UnbufferedServerConnection::new(config)?,
            held_in: Vec::new(),
            pending_out: Vec::new(),
            early_plain: Vec::new(),
            failed: None,
            established: false,
            closing: false,
            close_sent: false,
            peer_closed: false,
        })
    }

    /// Whether the handshake is still going on (it counts against the
    /// session's `handshake_timeout`): true until both sides' Finished
    /// messages have been exchanged, and still true after a handshake that
    /// failed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether records wait to be sent without any plaintext (handshake
    /// messages, an alert, a close_notify, plaintext held from before the
    /// handshake ended): call [`TlsStream::seal`] with no plaintext.
    pub fn wants_write(&self) -> bool {
        !self.pending_out.is_empty()
            || (self.closing && !self.close_sent && self.established)
            || (!self.early_plain.is_empty() && self.established)
    }

    /// Whether the peer has sent its close_notify (it will send nothing
    /// more; what it sent before has been read).
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The cipher suite agreed, once the handshake has chosen one.
    pub fn cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }

    /// The protocol version agreed, once the handshake has chosen one.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Bytes this connection holds in its own buffers now (input not yet
    /// consumed, output not yet taken); their capacity is zero when this is.
    pub fn held_bytes(&self) -> usize {
        self.held_in.capacity() + self.pending_out.capacity() + self.early_plain.capacity()
    }

    /// Ciphertext received: the plaintext it carried is appended to
    /// `plain`. An error is the end of the connection: the alert that says
    /// why is pending ([`TlsStream::wants_write`]); send it, then close.
    pub fn read(&mut self, data: &[u8], plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        if let Some(e) = &self.failed {
            return Err((**e).clone());
        }
        if self.peer_closed || (data.is_empty() && self.held_in.is_empty()) {
            return Ok(());
        }
        self.held_in.extend_from_slice(data);
        // Each step consumes a record or hands out something it produced,
        // so the steps are bounded by the input; the bound only guards
        // against a state machine that would stop making progress.
        let mut steps = self.held_in.len() + 64;
        let result = loop {
            match self.step(plain) {
                Ok(Step::Again) if steps > 0 => steps -= 1,
                Ok(Step::Again) => {
                    break Err(rustls::Error::General("TLS input did not settle".into()));
                }
                Ok(Step::Stop) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        if self.held_in.is_empty() || self.failed.is_some() || self.peer_closed {
            // Nothing is kept at rest, nor after an end (rustls reads no
            // more input then, so it keeps no offsets into this buffer).
            self.held_in = Vec::new();
        } else if self.held_in.capacity() > 2 * self.held_in.len() + 4096 {
            // A large read left a small incomplete record: keep only it
            // (the bytes stay in order, so rustls's offsets stay valid).
            self.held_in.shrink_to(self.held_in.len());
        }
        result
    }

    /// One call into rustls with the input held, and what it asked for.
    fn step(&mut self, plain: &mut Vec<u8>) -> Result<Step, rustls::Error> {
        let UnbufferedStatus { mut discard, state } =
            self.conn.process_tls_records(&mut self.held_in);
        let step = match state {
            Err(e) => Err(e),
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                while let Some(record) = records.next_record() {
                    let record = record?;
                    discard += record.discard;
                    plain.extend_from_slice(record.payload);
                }
                Ok(Step::Again)
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(&mut self.pending_out, |buf| encode.encode(buf))?;
                Ok(Step::Again)
            }
            Ok(ConnectionState::TransmitTlsData(mut transmit)) => {
                // The records are in `pending_out`; `seal` sends them.
                if let Some(mut write) = transmit.may_encrypt_app_data() {
                    self.established = true;
                    let early = std::mem::take(&mut self.early_plain);
                    if !early.is_empty() {
                        encrypt_into(&mut self.pending_out, sealed_len(early.len()), |buf| {
                            write.encrypt(&early, buf)
                        })
                        .map_err(|e| rustls::Error::General(e.to_string()))?;
                    }
                }
                transmit.done();
                Ok(Step::Again)
            }
            Ok(ConnectionState::WriteTraffic(_)) => {
                self.established = true;
                Ok(Step::Stop)
            }
            Ok(ConnectionState::PeerClosed) => {
                self.peer_closed = true;
                Ok(Step::Again)
            }
            Ok(ConnectionState::ReadEarlyData(mut records)) => {
                // 0-RTT is not enabled (max_early_data_size is 0); if it
                // ever is, early data is the session's input like any.
                while let Some(record) = records.next_record() {
                    let record = record?;
                    discard += record.discard;
                    plain.extend_from_slice(record.payload);
                }
                Ok(Step::Again)
            }
            // BlockedHandshake (more input needed), Closed, and states a
            // later rustls may add: nothing to do until more input comes.
            Ok(_) => Ok(Step::Stop),
        };
        let discard = discard.min(self.held_in.len());
        self.held_in.drain(..discard);
        step
    }

    /// The connection failed with `e`: the alert rustls queued (if any) is
    /// taken into `pending_out`, and no input is read any more.
    ///
    /// rustls is called only while it has records queued, which it hands
    /// out before looking at any input: calling it further would parse the
    /// bad input again (and queue a second fatal alert).
    fn fail(&mut self, e: rustls::Error) {
        self.failed = Some(Box::new(e));
        self.early_plain = Vec::new();
        for _ in 0..16 {
            if !self.conn.wants_write() {
                break;
            }
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.held_in);
            let encoded = match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.pending_out, |buf| encode.encode(buf)).is_ok()
                }
                _ => false,
            };
            let discard = discard.min(self.held_in.len());
            self.held_in.drain(..discard);
            if !encoded {
                break;
            }
        }
        self.held_in = Vec::new();
    }

    /// Encrypts `plain` and appends to `out` every record there is to
    /// send: first what rustls produced by itself (handshake messages, an
    /// alert), then `plain`'s records. `last`: nothing else is waiting to
    /// be sealed, so a close asked for by [`TlsStream::close`] goes out
    /// behind it. Plaintext sealed before the handshake allows it is held
    /// and sent once it does; after a failure it is dropped.
    pub fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) {
        if !self.pending_out.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut self.pending_out);
            } else {
                out.extend_from_slice(&self.pending_out);
            }
            self.pending_out = Vec::new();
        }
        if self.failed.is_some() || self.close_sent {
            return;
        }
        let want_close = self.closing && last;
        if plain.is_empty() && self.early_plain.is_empty() && !want_close {
            return;
        }
        if let Err(e) = self.write(plain, want_close, out) {
            // Only a sequence number run out (after 2^64 records) gets
            // here: the connection is over (rustls queued a close_notify,
            // which goes out behind what was sealed).
            self.fail(e);
            out.append(&mut self.pending_out);
            self.pending_out = Vec::new();
        }
    }

    /// Encrypts held and new plaintext, and the close_notify when asked,
    /// into `out` (or holds the plaintext while the handshake goes on).
    fn write(&mut self, plain: &[u8], close: bool, out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        let general = |e: EncryptError| rustls::Error::General(e.to_string());
        // `read` leaves only an incomplete record in `held_in` and nothing
        // to read, so rustls consumes nothing here; records it produced by
        // itself since (none are expected) go out first.
        for _ in 0..8 {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.held_in);
            let done = match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(out, |buf| encode.encode(buf))?;
                    false
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    self.established = true;
                    if !self.early_plain.is_empty() {
                        let early = std::mem::take(&mut self.early_plain);
                        encrypt_into(out, sealed_len(early.len()), |buf| {
                            write.encrypt(&early, buf)
                        })
                        .map_err(general)?;
                    }
                    if !plain.is_empty() {
                        encrypt_into(out, sealed_len(plain.len()), |buf| {
                            write.encrypt(plain, buf)
                        })
                        .map_err(general)?;
                    }
                    if close {
                        encrypt_into(out, RECORD_OVERHEAD + 2, |buf| {
                            write.queue_close_notify(buf)
                        })
                        .map_err(general)?;
                        self.close_sent = true;
                        self.closing = false;
                    }
                    true
                }
                Err(e) => return Err(e),
                _ => {
                    // Still handshaking: hold the plaintext until it is done.
                    self.early_plain.extend_from_slice(plain);
                    true
                }
            };
            let discard = discard.min(self.held_in.len());
            self.held_in.drain(..discard);
            if done {
                return Ok(());
            }
        }
        Err(rustls::Error::General("TLS output did not settle".into()))
    }

    /// Asks for a close_notify alert behind the last plaintext (sent by
    /// the [`TlsStream::seal`] that has nothing left behind it). A
    /// connection still handshaking just closes.
    pub fn close(&mut self) {
        self.closing = true;
    }
}

/// Runs `encode` on the spare end of `out`, grown to what it needs: the
/// first call, on an empty slice, says how much room the record takes; the
/// second writes it.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let need = match encode(&mut []) {
        Ok(_) | Err(EncodeError::AlreadyEncoded) => return Ok(()),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
    };
    out.resize(start + need, 0);
    match encode(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(rustls::Error::General(e.to_string()))
        }
    }
}

/// Runs `encrypt` on the spare end of `out`, sized `room` first and grown
/// to what rustls says it needs if that falls short.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut room: usize,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let start = out.len();
    for _ in 0..2 {
        out.resize(start + room, 0);
        match encrypt(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    out.truncate(start);
    Err(EncryptError::InsufficientSize(InsufficientSizeError {
        required_size: room,
    }))
}

/// Room the records of `len` bytes of plaintext take at most.
fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(MAX_FRAGMENT).max(1) * RECORD_OVERHEAD
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

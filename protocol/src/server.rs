//! The gateway side of a connection, as a sans-IO state machine.
//!
//! A [`ServerSession`] is fed the bytes a client sent ([`ServerSession::handle_input`])
//! and the passing of time ([`ServerSession::handle_timeout`]); it writes the
//! bytes to send back and the [`Event`]s for the gateway into a caller-owned
//! [`Output`]. It never touches a socket or a clock.
//!
//! # Memory
//!
//! The gateway holds millions of idle sessions, so a session is small (at
//! most 64 bytes, checked by a test): the [`ServerConfig`] is passed by
//! reference to each call instead of being stored, output goes into an
//! [`Output`] shared by every session of a shard, and the buffer for a
//! partially received frame is one null pointer (no heap) whenever nothing
//! is pending; it is freed as soon as it drains.
//!
//! # Life cycle
//!
//! ```text
//! AwaitingHello --Hello--> Authenticating --accept()--> Established
//!       |                        |                          |
//!       +------ error, timeout, reject(), kick(), fail(), Bye ------> Closed
//! ```
//!
//! - The first frame must be a `Hello` with `version == 1`: any other first
//!   frame is answered with `Error(HELLO_REQUIRED)`, another version with
//!   `Error(UNSUPPORTED_VERSION)`, and the session closes.
//! - On `Hello` the session emits [`Event::Hello`] and stops parsing: bytes
//!   that follow are kept until the caller has authenticated the token and
//!   called [`ServerSession::accept`] (which sends `Welcome` and then processes
//!   them) or [`ServerSession::reject`].
//! - Established: `Ping` is answered with `Pong` (same id); `Pong` only counts
//!   as liveness; `Subscribe`, `Unsubscribe`, `Uplink` and `Ack` become events;
//!   `Bye` closes with [`CloseReason::ClientBye`].
//! - A client sending a server-only kind (`Welcome`, `Push`, `Reply`, `Kick`,
//!   `Error`) or a second `Hello` gets `Error(UNKNOWN_KIND)` and is closed.
//! - Bad input of any sort produces exactly one `Error` frame, then
//!   [`Event::Closed`]; once closed, a session ignores every further call.
//! - Deadlines: until `Welcome`, the handshake deadline (`handshake_timeout_ms`
//!   after creation); after it, `idle_factor × heartbeat` after the last
//!   complete inbound frame.

use crate::codec::{self, LENGTH_PREFIX};
use crate::held::HeldInput;
use crate::proto::{self, ErrorCode, Kick, KickCode, Pong, Welcome, frame::Kind};
use crate::time::Millis;

mod config;
mod limits;
mod output;

pub use config::ServerConfig;
pub use output::{CloseReason, Event, Output};

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where a session is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Waiting for the client's `Hello`.
    AwaitingHello,
    /// `Hello` received; waiting for the gateway to accept or reject it.
    Authenticating,
    /// `Welcome` sent; the session is live.
    Established,
    /// Over; every further call is ignored.
    Closed,
}

/// The gateway side of one client connection. See the [module docs](self).
#[derive(Debug)]
pub struct ServerSession {
    /// Unprocessed input: a partial frame, or (while authenticating) the bytes
    /// behind the `Hello`. Empty, without capacity, when nothing is pending.
    pending: HeldInput,
    /// Before `Welcome`: when the session was created (handshake deadline base).
    /// After: when the last complete frame arrived (idle deadline base).
    mark: Millis,
    /// While authenticating: the client's proposal. After `Welcome`: the
    /// negotiated heartbeat.
    heartbeat_ms: u32,
    state: SessionState,
}

/// Whether to keep parsing the input after a frame.
enum Flow {
    Continue,
    Stop,
}

impl ServerSession {
    /// A new session for a connection accepted at `now`.
    #[must_use]
    pub fn new(now: Millis, _cfg: &ServerConfig) -> ServerSession {
        ServerSession {
            pending: HeldInput::default(),
            mark: now,
            heartbeat_ms: 0,
            state: SessionState::AwaitingHello,
        }
    }

    /// Where the session is in its life cycle.
    #[must_use]
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether the session is over.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    /// The negotiated heartbeat once established; before that, the client's
    /// proposal (0 until the `Hello`).
    #[must_use]
    pub fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_ms
    }

    /// Counts a transport's own keep-alive at `now` (a WebSocket ping, which
    /// carries no v1 frame) as input for the idle timeout, as any v1 frame
    /// is. Before the `Welcome` it changes nothing: the handshake timeout
    /// waits for the `Hello` itself.
    pub fn note_keepalive(&mut self, now: Millis) {
        if self.state == SessionState::Established {
            self.mark = self.mark.max(now);
        }
    }

    /// Bytes of input held for later (a partial frame, or input behind the `Hello`).
    #[must_use]
    pub fn pending_input(&self) -> usize {
        self.pending.len()
    }

    /// When [`ServerSession::handle_timeout`] must next be called: the
    /// handshake deadline before `Welcome`, the idle deadline after; `None`
    /// once closed.
    #[must_use]
    pub fn deadline(&self, cfg: &ServerConfig) -> Option<Millis> {
        match self.state {
            SessionState::AwaitingHello | SessionState::Authenticating => Some(
                self.mark
                    .saturating_add(u64::from(cfg.handshake_timeout_ms)),
            ),
            SessionState::Established => Some(
                self.mark
                    .saturating_add(cfg.idle_timeout_ms(self.heartbeat_ms)),
            ),
            SessionState::Closed => None,
        }
    }

    /// Closes the session if its deadline has passed at `now`, with an
    /// `Error(HANDSHAKE_TIMEOUT)` or `Error(IDLE_TIMEOUT)` frame.
    pub fn handle_timeout(&mut self, now: Millis, cfg: &ServerConfig, out: &mut Output) {
        let Some(deadline) = self.deadline(cfg) else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.state == SessionState::Established {
            self.close_with_error(
                ErrorCode::IdleTimeout,
                "no frame within the idle timeout",
                CloseReason::IdleTimeout,
                out,
            );
        } else {
            self.close_with_error(
                ErrorCode::HandshakeTimeout,
                "no Hello within the handshake timeout",
                CloseReason::HandshakeTimeout,
                out,
            );
        }
    }

    /// Feeds bytes received from the client at `now`. They may hold part of
    /// a frame, several frames, or garbage.
    pub fn handle_input(&mut self, now: Millis, data: &[u8], cfg: &ServerConfig, out: &mut Output) {
        match self.state {
            SessionState::Closed => {}
            SessionState::Authenticating => self.hold(data, cfg, out),
            SessionState::AwaitingHello | SessionState::Established => {
                if self.pending.is_empty() {
                    self.process(now, data, cfg, out);
                } else {
                    self.resume_partial(now, data, cfg, out);
                }
            }
        }
    }

    /// Accepts the `Hello` at `now`: sends `welcome` with `heartbeat_ms` set
    /// to the negotiated value, then processes any input that arrived behind
    /// the `Hello`. The caller fills `session`, `user`, `resume`,
    /// `server_time_ms` and `resumed`.
    ///
    /// Ignored unless the session is [`SessionState::Authenticating`].
    pub fn accept(&mut self, now: Millis, cfg: &ServerConfig, welcome: Welcome, out: &mut Output) {
        if self.state != SessionState::Authenticating {
            return;
        }
        self.heartbeat_ms = cfg.negotiate_heartbeat(self.heartbeat_ms);
        self.state = SessionState::Established;
        self.mark = now;
        let welcome = Welcome {
            heartbeat_ms: self.heartbeat_ms,
            ..welcome
        };
        send(out, Kind::Welcome(welcome));
        let held = self.pending.take();
        if !held.is_empty() {
            self.process(now, &held, cfg, out);
        }
    }

    /// Refuses the `Hello` (or the connection): sends `Error(code, message)`
    /// and closes with [`CloseReason::Rejected`].
    pub fn reject(&mut self, code: ErrorCode, message: &str, out: &mut Output) {
        if !self.is_closed() {
            self.close_with_error(code, message, CloseReason::Rejected(code), out);
        }
    }

    /// Ends the session from the gateway side: sends a `Kick` frame and
    /// closes with [`CloseReason::Kicked`].
    pub fn kick(
        &mut self,
        code: KickCode,
        reason: &str,
        reconnect: &[String],
        retry_after_ms: u32,
        out: &mut Output,
    ) {
        if self.is_closed() {
            return;
        }
        send(
            out,
            Kind::Kick(Kick {
                code: code.as_u32(),
                reason: reason.to_owned(),
                reconnect: reconnect.to_vec(),
                retry_after_ms,
            }),
        );
        self.close(CloseReason::Kicked(code), out);
    }

    /// Ends the session for a gateway-side reason (e.g. `OVERLOADED`,
    /// `SLOW_CONSUMER`, `FORBIDDEN`): sends `Error(code, message)` and closes
    /// with [`CloseReason::ProtocolError`].
    pub fn fail(&mut self, code: ErrorCode, message: &str, out: &mut Output) {
        if !self.is_closed() {
            self.close_with_error(code, message, CloseReason::ProtocolError(code), out);
        }
    }

    /// While authenticating: keep the bytes for after `accept()`, within bounds.
    fn hold(&mut self, data: &[u8], cfg: &ServerConfig, out: &mut Output) {
        if self.pending.len().saturating_add(data.len()) > cfg.max_pending_input() {
            self.fail(
                ErrorCode::Overloaded,
                "too much input before the handshake completed",
                out,
            );
            return;
        }
        self.pending.extend(data);
    }

    /// Completes the pending partial frame with the head of `data`, handles
    /// it, then processes the rest of `data` in place.
    fn resume_partial(&mut self, now: Millis, data: &[u8], cfg: &ServerConfig, out: &mut Output) {
        let mut data = data;
        // 1. Complete the length prefix.
        if self.pending.len() < LENGTH_PREFIX {
            let take = (LENGTH_PREFIX - self.pending.len()).min(data.len());
            self.pending.extend(&data[..take]);
            data = &data[take..];
        }
        let len = match codec::peek_length(self.pending.as_slice(), cfg.max_frame) {
            Ok(Some(len)) => len as usize,
            Ok(None) => return,
            Err(e) => return self.codec_error(&e, out),
        };
        // 2. Complete the body (`pending` never holds more than one frame here).
        let total = LENGTH_PREFIX + len;
        let take = total.saturating_sub(self.pending.len()).min(data.len());
        self.pending.extend(&data[..take]);
        data = &data[take..];
        if self.pending.len() < total {
            return;
        }
        // 3. Handle it, release the buffer, go on with the rest.
        let frame = self.pending.take();
        match codec::decode_frame(&frame, cfg.max_frame) {
            Ok(Some((frame, _))) => {
                if let Flow::Stop = self.on_frame(now, frame.kind, cfg, out) {
                    return self.stash_after_stop(data, cfg, out);
                }
            }
            Ok(None) => return, // unreachable: the frame is complete
            Err(e) => return self.codec_error(&e, out),
        }
        self.process(now, data, cfg, out);
    }

    /// Parses whole frames out of `data` (with nothing pending before it);
    /// keeps a trailing partial frame.
    fn process(&mut self, now: Millis, data: &[u8], cfg: &ServerConfig, out: &mut Output) {
        let mut rest = data;
        while !rest.is_empty() {
            match codec::decode_frame(rest, cfg.max_frame) {
                Ok(Some((frame, used))) => {
                    rest = &rest[used..];
                    if let Flow::Stop = self.on_frame(now, frame.kind, cfg, out) {
                        return self.stash_after_stop(rest, cfg, out);
                    }
                }
                Ok(None) => {
                    // Room for exactly the partial frame; grows as it completes.
                    self.pending.set(rest);
                    return;
                }
                Err(e) => return self.codec_error(&e, out),
            }
        }
    }

    /// Parsing stopped (Hello awaiting authentication, or closed): keep the
    /// rest only if the session will parse it later.
    fn stash_after_stop(&mut self, rest: &[u8], cfg: &ServerConfig, out: &mut Output) {
        if self.state == SessionState::Authenticating && !rest.is_empty() {
            self.hold(rest, cfg, out);
        }
    }

    fn codec_error(&mut self, e: &codec::CodecError, out: &mut Output) {
        let code = e.error_code();
        self.close_with_error(code, &e.to_string(), CloseReason::ProtocolError(code), out);
    }

    fn on_frame(
        &mut self,
        now: Millis,
        kind: Option<Kind>,
        cfg: &ServerConfig,
        out: &mut Output,
    ) -> Flow {
        out.frames_in += 1;
        let Some(kind) = kind else {
            // The codec never yields a frame without a kind; be safe anyway.
            self.protocol_error(ErrorCode::UnknownKind, "frame has no kind", out);
            return Flow::Stop;
        };
        if self.state == SessionState::AwaitingHello {
            return self.on_first_frame(kind, cfg, out);
        }
        self.mark = now;
        match kind {
            Kind::Ping(ping) => send(out, Kind::Pong(Pong { id: ping.id })),
            Kind::Pong(_) => {}
            Kind::Subscribe(sub) => {
                if !self.check_topics(sub.topics.len(), cfg, out)
                    || !self.check_topic_names(&sub.topics, cfg, out)
                {
                    return Flow::Stop;
                }
                out.events.push(Event::Subscribe(sub.topics));
            }
            Kind::Unsubscribe(unsub) => {
                if !self.check_topics(unsub.topics.len(), cfg, out) {
                    return Flow::Stop;
                }
                out.events.push(Event::Unsubscribe(unsub.topics));
            }
            Kind::Ack(ack) => out.events.push(Event::Ack(ack.ids)),
            Kind::Uplink(uplink) => out.events.push(Event::Uplink(uplink)),
            Kind::Bye(_) => {
                self.close(CloseReason::ClientBye, out);
                return Flow::Stop;
            }
            Kind::Hello(_) => {
                self.protocol_error(ErrorCode::UnknownKind, "Hello sent twice", out);
                return Flow::Stop;
            }
            other @ (Kind::Welcome(_)
            | Kind::Push(_)
            | Kind::Reply(_)
            | Kind::Kick(_)
            | Kind::Error(_)) => {
                let msg = format!("{} is not accepted from a client", codec::kind_name(&other));
                self.protocol_error(ErrorCode::UnknownKind, &msg, out);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn on_first_frame(&mut self, kind: Kind, cfg: &ServerConfig, out: &mut Output) -> Flow {
        match kind {
            Kind::Hello(hello) if hello.version == PROTOCOL_VERSION => {
                if let Some(msg) = limits::hello_over_limits(&hello, cfg) {
                    self.protocol_error(ErrorCode::LimitExceeded, &msg, out);
                    return Flow::Stop;
                }
                self.state = SessionState::Authenticating;
                self.heartbeat_ms = hello.heartbeat_ms;
                out.events.push(Event::Hello(hello));
            }
            Kind::Hello(hello) => {
                let msg = format!(
                    "protocol version {} is not supported (this gateway speaks {PROTOCOL_VERSION})",
                    hello.version
                );
                self.protocol_error(ErrorCode::UnsupportedVersion, &msg, out);
            }
            other => {
                let msg = format!(
                    "first frame must be hello, got {}",
                    codec::kind_name(&other)
                );
                self.protocol_error(ErrorCode::HelloRequired, &msg, out);
            }
        }
        Flow::Stop
    }

    fn check_topics(&mut self, n: usize, cfg: &ServerConfig, out: &mut Output) -> bool {
        if n > cfg.max_topics as usize {
            let msg = format!("{n} topics in one frame; the limit is {}", cfg.max_topics);
            self.protocol_error(ErrorCode::TooManyTopics, &msg, out);
            return false;
        }
        true
    }

    /// Topic names must be 1 to `max_topic_len` bytes.
    fn check_topic_names(
        &mut self,
        topics: &[String],
        cfg: &ServerConfig,
        out: &mut Output,
    ) -> bool {
        match limits::topic_names_over_limits(topics, cfg) {
            Some((code, msg)) => {
                self.protocol_error(code, &msg, out);
                false
            }
            None => true,
        }
    }

    fn protocol_error(&mut self, code: ErrorCode, message: &str, out: &mut Output) {
        self.close_with_error(code, message, CloseReason::ProtocolError(code), out);
    }

    fn close_with_error(
        &mut self,
        code: ErrorCode,
        message: &str,
        reason: CloseReason,
        out: &mut Output,
    ) {
        send(out, Kind::Error(proto::Error::new(code, message)));
        self.close(reason, out);
    }

    fn close(&mut self, reason: CloseReason, out: &mut Output) {
        self.state = SessionState::Closed;
        self.pending.clear();
        out.events.push(Event::Closed(reason));
    }
}

fn send(out: &mut Output, kind: Kind) {
    codec::encode_frame(&codec::frame(kind), &mut out.transmit);
    out.frames_out += 1;
}

#[cfg(test)]
mod tests;

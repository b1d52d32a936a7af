//! The gateway side of an MQTT 3.1.1 connection, as a sans-IO state machine.
//!
//! An [`MqttSession`] is fed the bytes a client sent
//! ([`MqttSession::handle_input`]) and the passing of time
//! ([`MqttSession::handle_timeout`]); it writes the bytes to send back and the
//! [`Event`]s for the gateway into a caller-owned [`Output`], and takes the
//! gateway's decisions back through calls ([`MqttSession::verdict`],
//! [`MqttSession::suback`], [`MqttSession::puback`],
//! [`MqttSession::start_qos1`]). It never touches a socket or a clock, and
//! it does not know users, topics or backends: the mapping onto the
//! gateway's sessions is the caller's.
//!
//! # Life cycle
//!
//! ```text
//! AwaitingConnect --CONNECT--> Authenticating --verdict(Accept)--> Established
//!        |                           |                                  |
//!        +--- bad input, timeout, verdict(refusal), DISCONNECT, close() ---> Closed
//! ```
//!
//! - The first packet must be CONNECT, within `handshake_timeout_ms` of the
//!   session's creation (which also bounds the verdict); any other first
//!   packet closes the connection as soon as its first byte shows its type.
//!   Protocol level other than 4 → CONNACK 0x01; an empty client id
//!   without clean session, or one over `max_client_id_len` → CONNACK 0x02;
//!   both close. Otherwise the session emits [`Event::Authenticate`] and
//!   stops parsing: later bytes are held (bounded) until
//!   [`MqttSession::verdict`] sends CONNACK 0x00 and processes them, or a
//!   refusal (0x02–0x05) closes.
//! - Established: every packet restarts the keep-alive clock (idle deadline
//!   1.5 × the granted keep-alive, §3.1.2.10); PINGREQ → PINGRESP;
//!   SUBSCRIBE → [`Event::Subscribe`], answered by [`MqttSession::suback`];
//!   UNSUBSCRIBE → UNSUBACK and [`Event::Unsubscribe`]; PUBLISH at QoS 0 or
//!   1 → [`Event::Uplink`] (QoS 1 PUBACKed by [`MqttSession::puback`] when
//!   the caller confirms); PUBACK → [`Event::Acked`] for a packet id in
//!   flight (others are counted in [`Output::unknown_acks`] and ignored);
//!   DISCONNECT → [`CloseReason::ClientDisconnect`], will discarded.
//! - Closed with a [`CloseReason`] on: malformed bytes, a second CONNECT, a
//!   packet only servers send, PUBREC/PUBREL/PUBCOMP, a QoS 2 PUBLISH (QoS 2
//!   is not supported), a PUBLISH with RETAIN under
//!   [`RetainPolicy::Refuse`], a configured bound exceeded, a timeout,
//!   [`MqttSession::close`] or [`MqttSession::connection_lost`]. 3.1.1
//!   has no server-to-client error packet, so nothing is sent: the
//!   connection is closed (§4.8). Once closed, every call is ignored.
//! - The will: kept from CONNECT; on any close of an established session
//!   other than DISCONNECT, [`Event::Will`] comes just before
//!   [`Event::Closed`]. What it becomes (a publish, a presence event) is the
//!   mapping's decision.
//!
//! # Outbound QoS 1
//!
//! [`MqttSession::start_qos1`] takes the push id and returns the packet id
//! to send it with (1..=65535, cycling, skipping ids in flight), or
//! refuses when `max_in_flight` are unacknowledged; the caller sends the
//! bytes ([`Qos1Publish`](crate::mqtt::Qos1Publish)). The PUBACK comes back as
//! [`Event::Acked`] with the push id. After a close, [`MqttSession::in_flight`]
//! still lists what was never acknowledged.
//!
//! # Example: CONNECT, CONNACK and a durable push, in memory
//!
//! ```
//! use protocol::mqtt::encode::encode_connect;
//! use protocol::mqtt::server::{Event, MqttConfig, MqttSession, Output, Verdict};
//! use protocol::mqtt::{Connect, Qos1Publish};
//! use protocol::time::Millis;
//!
//! let (cfg, now) = (MqttConfig::default(), Millis(0));
//! let mut session = MqttSession::new(now, &cfg);
//! let mut out = Output::new(); // one per shard, shared by its sessions
//!
//! let mut connect = Vec::new();
//! let fields = Connect {
//!     client_id: "dev1",
//!     clean_session: true,
//!     keep_alive: 60,
//!     username: Some("alice"),
//!     password: Some(b"a.jwt.token"),
//!     ..Connect::default()
//! };
//! encode_connect(&fields, &mut connect).unwrap();
//! session.handle_input(now, &connect, &cfg, &mut out);
//! let Some(Event::Authenticate(request)) = out.events.pop() else { panic!() };
//! assert_eq!(request.password.as_deref(), Some(&b"a.jwt.token"[..]));
//! // The caller verifies the token, then:
//! session.verdict(now, &cfg, Verdict::Accept { session_present: false }, &mut out);
//! assert_eq!(out.transmit, [0x20, 2, 0, 0]); // CONNACK 0x00
//!
//! // A durable push, encoded once for all recipients, completed with this
//! // session's packet id.
//! let push = Qos1Publish::new("u/alice", bytes::Bytes::from_static(b"hi")).unwrap();
//! let packet_id = session.start_qos1(42, &cfg).unwrap();
//! let mut wire = Vec::new();
//! push.write(packet_id, false, &mut wire);
//!
//! out.clear();
//! session.handle_input(now, &[0x40, 2, 0, 1], &cfg, &mut out); // PUBACK 1
//! assert_eq!(out.events, [Event::Acked { packet_id: 1, push_id: 42 }]);
//! ```
//!
//! # Memory
//!
//! At rest a session is 40 bytes (a test checks it), with nothing on the
//! heap: the config is passed by reference, output goes into an [`Output`]
//! shared by a shard's sessions, and the held input, the QoS 1 window (with
//! the next packet id) and the will are one pointer each, null when there
//! are none. (A v1 `ServerSession` is 24 with the same held input; an enum
//! of the two is 40, so a connection slot that holds either is no larger
//! than one that held a v1 session alone.)

use crate::time::Millis;

use super::{Decoded, EncodeError, check_first_byte, decode_packet, peek_fixed_header};

mod config;
mod connect;
mod output;
mod packets;
mod window;

use crate::held::HeldInput;
pub use config::{MqttConfig, RetainPolicy};
pub use output::{CloseReason, ConnectRequest, Event, Limit, Output, Uplink, Verdict, Will};
pub use window::InFlight;
use window::Window;

/// Where a session is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Waiting for the client's CONNECT.
    AwaitingConnect,
    /// CONNECT received; waiting for [`MqttSession::verdict`].
    Authenticating,
    /// CONNACK 0x00 sent; the session is live.
    Established,
    /// Over; every further call is ignored.
    Closed,
}

/// Why [`MqttSession::start_qos1`] gave no packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The session is not established (or is closed).
    #[error("the session is not established")]
    NotEstablished,
    /// `max_in_flight` QoS 1 PUBLISHes await their PUBACK: keep the push
    /// queued until an [`Event::Acked`].
    #[error("the QoS 1 window is full")]
    WindowFull,
}

/// The gateway side of one MQTT connection. See the [module docs](self).
#[derive(Debug)]
pub struct MqttSession {
    /// Unprocessed input: a partial packet, or (while authenticating) the
    /// bytes behind the CONNECT. No allocation when nothing is pending.
    pending: HeldInput,
    /// Before CONNACK: when the session was created (handshake deadline
    /// base). After: when the last whole packet arrived (idle deadline base).
    mark: Millis,
    /// Outbound QoS 1 PUBLISHes awaiting PUBACK, and the next packet id.
    window: Window,
    /// The will, from CONNECT until a close.
    will: Option<Box<Will>>,
    /// The granted keep-alive (set at CONNECT, in force from CONNACK).
    keep_alive_ms: u32,
    /// Client QoS 1 PUBLISHes handed on and not yet confirmed.
    uplinks_in_flight: u16,
    state: SessionState,
}

/// Whether to keep parsing the input after a packet.
enum Flow {
    Continue,
    Stop,
}

impl MqttSession {
    /// A new session for a connection accepted at `now`.
    #[must_use]
    pub fn new(now: Millis, _cfg: &MqttConfig) -> MqttSession {
        MqttSession {
            pending: HeldInput::default(),
            mark: now,
            window: Window::default(),
            will: None,
            keep_alive_ms: 0,
            uplinks_in_flight: 0,
            state: SessionState::AwaitingConnect,
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

    /// The granted keep-alive in milliseconds (0 before CONNECT).
    #[must_use]
    pub fn keep_alive_ms(&self) -> u32 {
        self.keep_alive_ms
    }

    /// Bytes of input held for later.
    #[must_use]
    pub fn pending_input(&self) -> usize {
        self.pending.len()
    }

    /// Outbound QoS 1 PUBLISHes not acknowledged yet (also after a close:
    /// the pushes to deliver again on another connection).
    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.window.iter()
    }

    /// How many outbound QoS 1 PUBLISHes await their PUBACK.
    #[must_use]
    pub fn in_flight_len(&self) -> usize {
        self.window.len()
    }

    /// Client QoS 1 PUBLISHes handed on and not yet confirmed with
    /// [`MqttSession::puback`].
    #[must_use]
    pub fn uplinks_in_flight(&self) -> u16 {
        self.uplinks_in_flight
    }

    /// When [`MqttSession::handle_timeout`] must next be called: the
    /// handshake deadline before CONNACK, the keep-alive deadline after;
    /// `None` once closed.
    #[must_use]
    pub fn deadline(&self, cfg: &MqttConfig) -> Option<Millis> {
        match self.state {
            SessionState::AwaitingConnect | SessionState::Authenticating => Some(
                self.mark
                    .saturating_add(u64::from(cfg.handshake_timeout_ms)),
            ),
            SessionState::Established => Some(
                self.mark
                    .saturating_add(MqttConfig::idle_timeout_ms(self.keep_alive_ms)),
            ),
            SessionState::Closed => None,
        }
    }

    /// Closes the session if its deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Millis, cfg: &MqttConfig, out: &mut Output) {
        let Some(deadline) = self.deadline(cfg) else {
            return;
        };
        if now < deadline {
            return;
        }
        let reason = if self.state == SessionState::Established {
            CloseReason::KeepAliveTimeout
        } else {
            CloseReason::HandshakeTimeout
        };
        self.close_with(reason, out);
    }

    /// Feeds bytes received from the client at `now`: part of a packet,
    /// several packets, or garbage.
    pub fn handle_input(&mut self, now: Millis, data: &[u8], cfg: &MqttConfig, out: &mut Output) {
        match self.state {
            SessionState::Closed => {}
            SessionState::Authenticating => self.hold(data, cfg, out),
            SessionState::AwaitingConnect | SessionState::Established => {
                if self.pending.is_empty() {
                    if self.state == SessionState::AwaitingConnect
                        && !self.first_byte_is_connect(data, out)
                    {
                        return;
                    }
                    self.process(now, data, cfg, out);
                } else {
                    self.resume_partial(now, data, cfg, out);
                }
            }
        }
    }

    /// The caller's decision on the CONNECT, at `now`. Accepting sends
    /// CONNACK 0x00 and processes the input held behind the CONNECT; a
    /// refusal sends its CONNACK code and closes with
    /// [`CloseReason::Refused`]. Ignored unless authenticating.
    pub fn verdict(&mut self, now: Millis, cfg: &MqttConfig, verdict: Verdict, out: &mut Output) {
        if self.state != SessionState::Authenticating {
            return;
        }
        let Verdict::Accept { session_present } = verdict else {
            self.refuse(verdict.return_code(), out);
            return;
        };
        self.state = SessionState::Established;
        self.mark = now;
        self.send_connack(session_present, super::ConnectReturnCode::Accepted, out);
        let held = self.pending.take();
        if !held.is_empty() {
            self.process(now, &held, cfg, out);
        }
    }

    /// Answers the SUBSCRIBE `packet_id` of an [`Event::Subscribe`] with one
    /// code per filter, in order: the QoS granted (0 or 1) or
    /// [`SubAckCode::Failure`](super::SubAckCode::Failure). Ignored unless
    /// established; an error only for a zero `packet_id`.
    pub fn suback(
        &mut self,
        packet_id: u16,
        codes: &[super::SubAckCode],
        out: &mut Output,
    ) -> Result<(), EncodeError> {
        if self.state != SessionState::Established {
            return Ok(());
        }
        super::encode::encode_suback(packet_id, codes, &mut out.transmit)?;
        out.packets_out += 1;
        Ok(())
    }

    /// Confirms the QoS 1 uplink `packet_id` (the backend took it): sends
    /// its PUBACK. Ignored unless established, or for packet id 0.
    pub fn puback(&mut self, packet_id: u16, out: &mut Output) {
        if self.state != SessionState::Established {
            return;
        }
        if super::encode::encode_puback(packet_id, &mut out.transmit).is_ok() {
            self.uplinks_in_flight = self.uplinks_in_flight.saturating_sub(1);
            out.packets_out += 1;
        }
    }

    /// Opens a QoS 1 delivery of push `push_id`: the packet id to send its
    /// PUBLISH with, now recorded as in flight until its PUBACK
    /// ([`Event::Acked`]). Ids run 1..=65535 and wrap, skipping ids still
    /// in flight. A push still in flight (sent again on the same
    /// connection, with DUP) keeps its packet id, so an unanswered
    /// PUBLISH never holds two places in the window.
    pub fn start_qos1(&mut self, push_id: u64, cfg: &MqttConfig) -> Result<u16, StartError> {
        if self.state != SessionState::Established {
            return Err(StartError::NotEstablished);
        }
        if let Some(id) = self.window.id_of(push_id) {
            return Ok(id);
        }
        if self.window.len() >= usize::from(cfg.max_in_flight) {
            return Err(StartError::WindowFull);
        }
        // At most 65534 ids are in flight here (the window is below
        // `max_in_flight <= 65535`), so a free one is found.
        Ok(self.window.open(push_id))
    }

    /// Ends the session from the gateway side (kick, drain, slow consumer):
    /// [`CloseReason::ServerClosed`]; the will is due. Nothing is sent.
    pub fn close(&mut self, out: &mut Output) {
        if !self.is_closed() {
            self.close_with(CloseReason::ServerClosed, out);
        }
    }

    /// The transport ended without DISCONNECT: [`CloseReason::ConnectionLost`];
    /// the will is due.
    pub fn connection_lost(&mut self, out: &mut Output) {
        if !self.is_closed() {
            self.close_with(CloseReason::ConnectionLost, out);
        }
    }

    /// Before CONNECT: closes at once if the first byte is another packet type.
    fn first_byte_is_connect(&mut self, data: &[u8], out: &mut Output) -> bool {
        match data.first().map(|&b| check_first_byte(b)) {
            Some(Ok((kind, _))) if kind != super::PacketType::Connect => {
                self.close_with(CloseReason::NotConnect(kind), out);
                false
            }
            _ => true,
        }
    }

    /// While authenticating: keep the bytes for after the verdict, within bounds.
    fn hold(&mut self, data: &[u8], cfg: &MqttConfig, out: &mut Output) {
        if self.pending.len().saturating_add(data.len()) > cfg.max_pending_input() {
            self.close_with(CloseReason::LimitExceeded(Limit::PendingInput), out);
            return;
        }
        self.pending.extend(data);
    }

    /// Completes the pending partial packet with the head of `data`, handles
    /// it, then processes the rest of `data` in place.
    fn resume_partial(&mut self, now: Millis, data: &[u8], cfg: &MqttConfig, out: &mut Output) {
        let mut data = data;
        // 1. Complete the fixed header (at most 5 bytes), a byte at a time.
        let header = loop {
            match peek_fixed_header(self.pending.as_slice(), cfg.max_packet) {
                Ok(Some(header)) => break header,
                Ok(None) => {
                    let Some((&byte, rest)) = data.split_first() else {
                        return;
                    };
                    self.pending.extend(&[byte]);
                    data = rest;
                }
                Err(e) => return self.malformed(e, out),
            }
        };
        // 2. Complete the body: room for exactly the packet, within max_packet.
        let total = header.packet_len();
        let missing = total.saturating_sub(self.pending.len());
        self.pending.reserve_exact(missing);
        let take = missing.min(data.len());
        self.pending.extend(&data[..take]);
        data = &data[take..];
        if self.pending.len() < total {
            return;
        }
        // 3. Handle it, release the buffer, go on with the rest.
        let whole = self.pending.take();
        match decode_packet(&whole, cfg.max_packet) {
            Ok(Decoded::Packet { packet, .. }) => {
                if let Flow::Stop = self.on_packet(now, packet, cfg, out) {
                    return self.stash_after_stop(data, cfg, out);
                }
            }
            Ok(Decoded::NeedMore(_)) => return, // unreachable: the packet is whole
            Err(e) => return self.malformed(e, out),
        }
        self.process(now, data, cfg, out);
    }

    /// Parses whole packets out of `data` (nothing pending before it); keeps
    /// a trailing partial packet.
    fn process(&mut self, now: Millis, data: &[u8], cfg: &MqttConfig, out: &mut Output) {
        let mut rest = data;
        while !rest.is_empty() {
            match decode_packet(rest, cfg.max_packet) {
                Ok(Decoded::Packet { packet, len }) => {
                    rest = rest.get(len..).unwrap_or_default();
                    if let Flow::Stop = self.on_packet(now, packet, cfg, out) {
                        return self.stash_after_stop(rest, cfg, out);
                    }
                }
                Ok(Decoded::NeedMore(_)) => {
                    // The header was checked against max_packet (when whole):
                    // this copy is bounded.
                    self.pending.set(rest);
                    return;
                }
                Err(e) => return self.malformed(e, out),
            }
        }
    }

    /// Parsing stopped (CONNECT awaiting its verdict, or closed): keep the
    /// rest only if the session will parse it later.
    fn stash_after_stop(&mut self, rest: &[u8], cfg: &MqttConfig, out: &mut Output) {
        if self.state == SessionState::Authenticating && !rest.is_empty() {
            self.hold(rest, cfg, out);
        }
    }
}

#[cfg(test)]
mod tests;

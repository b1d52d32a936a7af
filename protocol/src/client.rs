//! The client side of a connection, as a sans-IO state machine.
//!
//! Used by the end-to-end tests and the load harness. Like the server side it
//! never touches a socket or a clock: feed it received bytes and the time,
//! send what it writes into `out`.
//!
//! # Life cycle
//!
//! [`ClientSession::new`] → [`ClientSession::start`] (writes `Hello`) →
//! `Welcome` received (established; a `Ping` goes out every negotiated
//! heartbeat from [`ClientSession::handle_timeout`]) → closed by `Bye`
//! ([`ClientSession::bye`]), a `Kick` or `Error` from the gateway, a
//! timeout, or bad input.
//!
//! - Requests (`subscribe`, `uplink`, ...) may be written before the
//!   `Welcome` arrives: the gateway processes them after accepting the `Hello`.
//! - Every `Error` from the gateway is fatal in protocol v1: the client emits
//!   [`ClientEvent::Error`] then [`ClientEvent::Closed`].
//! - Acks: by default the client does **not** ack pushes that ask for it; the
//!   caller acks with [`ClientSession::ack`]. With
//!   [`ClientSession::set_auto_ack`] it acks each such push as it arrives.
//! - Duplicates: a durable push (`ack = true`) can arrive more than once
//!   (at least once, with `redelivery` set on the copies). The session
//!   hands each id to the app once, within a bounded window of recent ids,
//!   and acks a copy of one already acked again ([`dedup`]). Carry the
//!   window across reconnects with [`ClientSession::take_dedup`] and
//!   [`ClientSession::with_dedup`].
//! - Timeouts: no `Welcome` within [`CLIENT_HANDSHAKE_TIMEOUT_MS`], or no
//!   inbound frame within [`CLIENT_IDLE_FACTOR`] × heartbeat, closes the
//!   session. [`ClientSession::handle_timeout`] has no event list: check
//!   [`ClientSession::close_reason`] after it.

pub mod dedup;

use bytes::Bytes;

use self::dedup::{DedupWindow, Seen};
use crate::codec::{self, DEFAULT_MAX_FRAME};
use crate::proto::{
    Ack, Bye, Error, ErrorCode, Hello, Kick, Ping, Pong, Push, Reply, Subscribe, Unsubscribe,
    Uplink, Welcome, frame::Kind,
};
use crate::server::PROTOCOL_VERSION;
use crate::time::Millis;

/// How long the client waits for `Welcome` after [`ClientSession::start`].
pub const CLIENT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// The client closes after `CLIENT_IDLE_FACTOR × heartbeat` without an inbound frame.
pub const CLIENT_IDLE_FACTOR: f64 = 2.5;

/// Heartbeat used if the gateway's `Welcome` carries none.
pub const CLIENT_DEFAULT_HEARTBEAT_MS: u32 = 30_000;

/// What the client says in its `Hello`, plus local limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Bearer token (JWT).
    pub token: String,
    /// Device label.
    pub device: String,
    /// Apps to open on this connection.
    pub apps: Vec<String>,
    /// Proposed heartbeat; 0 lets the gateway choose.
    pub heartbeat_ms: u32,
    /// Largest accepted inbound frame body.
    pub max_frame: u32,
    /// Resume token from a previous `Welcome`, or empty.
    pub resume: Bytes,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: String::new(),
            device: String::new(),
            apps: Vec::new(),
            heartbeat_ms: 0,
            max_frame: DEFAULT_MAX_FRAME,
            resume: Bytes::new(),
        }
    }
}

/// Something the client application must see.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The gateway accepted the session.
    Welcome(Welcome),
    /// A push from a backend.
    Push(Push),
    /// The answer to one of our pings.
    Pong(Pong),
    /// The answer to one of our uplinks.
    Reply(Reply),
    /// The gateway kicked us; [`ClientEvent::Closed`] follows.
    Kick(Kick),
    /// The gateway reported an error; [`ClientEvent::Closed`] follows.
    Error(Error),
    /// The session is over.
    Closed(ClientCloseReason),
}

/// Why a client session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCloseReason {
    /// We sent `Bye`.
    Bye,
    /// The gateway sent a `Kick` with this code (a `KickCode` value).
    Kicked(u32),
    /// The gateway sent an `Error` with this code (an `ErrorCode` value).
    ServerError(u32),
    /// No `Welcome` within [`CLIENT_HANDSHAKE_TIMEOUT_MS`].
    HandshakeTimeout,
    /// No inbound frame within [`CLIENT_IDLE_FACTOR`] × heartbeat.
    IdleTimeout,
    /// The gateway sent bytes we cannot accept.
    ProtocolError(ErrorCode),
}

/// Where a client session is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Created; [`ClientSession::start`] not called yet.
    Idle,
    /// `Hello` sent; waiting for `Welcome`.
    AwaitingWelcome,
    /// `Welcome` received.
    Established,
    /// Over.
    Closed,
}

/// The client side of one connection. See the [module docs](self).
#[derive(Debug)]
pub struct ClientSession {
    cfg: ClientConfig,
    state: ClientState,
    pending: Vec<u8>,
    created: Millis,
    last_rx: Millis,
    next_ping: Millis,
    heartbeat_ms: u32,
    next_request_id: u64,
    next_ping_id: u64,
    auto_ack: bool,
    welcome: Option<Welcome>,
    close_reason: Option<ClientCloseReason>,
    /// Durable push ids seen lately; made on the first durable push, so
    /// the many sessions that never get one (load generators) pay a
    /// pointer.
    dedup: Option<Box<DedupWindow>>,
}

impl ClientSession {
    /// A client session created at `now`.
    #[must_use]
    pub fn new(now: Millis, cfg: ClientConfig) -> ClientSession {
        ClientSession {
            cfg,
            state: ClientState::Idle,
            pending: Vec::new(),
            created: now,
            last_rx: now,
            next_ping: now,
            heartbeat_ms: 0,
            next_request_id: 1,
            next_ping_id: 1,
            auto_ack: false,
            welcome: None,
            close_reason: None,
            dedup: None,
        }
    }

    /// The same session remembering `window`'s durable push ids: give it
    /// the window of the connection before ([`ClientSession::take_dedup`])
    /// so a push redelivered after a reconnect is not seen twice.
    #[must_use]
    pub fn with_dedup(mut self, window: DedupWindow) -> ClientSession {
        self.dedup = Some(Box::new(window));
        self
    }

    /// The durable push ids this session has seen (for the next
    /// connection's [`ClientSession::with_dedup`]); the session keeps an
    /// empty window of the same capacity.
    pub fn take_dedup(&mut self) -> DedupWindow {
        match self.dedup.as_mut() {
            Some(w) => {
                let empty = DedupWindow::new(w.capacity());
                std::mem::replace(w, empty)
            }
            None => DedupWindow::default(),
        }
    }

    /// Copies of durable pushes dropped as duplicates by this session's
    /// window (since the window was made).
    #[must_use]
    pub fn duplicates_dropped(&self) -> u64 {
        self.dedup.as_ref().map_or(0, |w| w.dropped())
    }

    /// Acks pushes that ask for it automatically (default: off).
    pub fn set_auto_ack(&mut self, on: bool) {
        self.auto_ack = on;
    }

    /// Writes the `Hello`. Does nothing unless the session is [`ClientState::Idle`].
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.state != ClientState::Idle {
            return;
        }
        self.state = ClientState::AwaitingWelcome;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            token: self.cfg.token.clone(),
            device: self.cfg.device.clone(),
            apps: self.cfg.apps.clone(),
            heartbeat_ms: self.cfg.heartbeat_ms,
            resume: self.cfg.resume.clone(),
        };
        send(out, Kind::Hello(hello));
    }

    /// Where the session is in its life cycle.
    #[must_use]
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether the `Welcome` has arrived (and the session is not closed).
    #[must_use]
    pub fn is_established(&self) -> bool {
        self.state == ClientState::Established
    }

    /// Whether the session is over.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == ClientState::Closed
    }

    /// Why the session closed, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<ClientCloseReason> {
        self.close_reason
    }

    /// The `Welcome` received, if any.
    #[must_use]
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// The negotiated heartbeat (0 before `Welcome`).
    #[must_use]
    pub fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_ms
    }

    /// When [`ClientSession::handle_timeout`] must next be called: the
    /// handshake deadline while waiting for `Welcome`, then the earlier of
    /// the next ping and the idle deadline; `None` before `start` and once closed.
    #[must_use]
    pub fn deadline(&self) -> Option<Millis> {
        match self.state {
            ClientState::AwaitingWelcome => {
                Some(self.created.saturating_add(CLIENT_HANDSHAKE_TIMEOUT_MS))
            }
            ClientState::Established => Some(self.next_ping.min(self.idle_deadline())),
            ClientState::Idle | ClientState::Closed => None,
        }
    }

    fn idle_deadline(&self) -> Millis {
        let idle = (CLIENT_IDLE_FACTOR * f64::from(self.heartbeat_ms)).ceil() as u64;
        self.last_rx.saturating_add(idle)
    }

    /// Sends the heartbeat `Ping` when due, or closes the session when the
    /// handshake or idle deadline has passed (see [`ClientSession::close_reason`]).
    pub fn handle_timeout(&mut self, now: Millis, out: &mut Vec<u8>) {
        match self.state {
            ClientState::AwaitingWelcome => {
                if now >= self.created.saturating_add(CLIENT_HANDSHAKE_TIMEOUT_MS) {
                    self.close(ClientCloseReason::HandshakeTimeout, None);
                }
            }
            ClientState::Established => {
                if now >= self.idle_deadline() {
                    self.close(ClientCloseReason::IdleTimeout, None);
                } else if now >= self.next_ping {
                    self.ping(out);
                    self.next_ping = now.saturating_add(u64::from(self.heartbeat_ms));
                }
            }
            ClientState::Idle | ClientState::Closed => {}
        }
    }

    /// Feeds bytes received from the gateway at `now`.
    pub fn handle_input(
        &mut self,
        now: Millis,
        data: &[u8],
        events: &mut Vec<ClientEvent>,
        out: &mut Vec<u8>,
    ) {
        if self.is_closed() {
            return;
        }
        if self.pending.is_empty() {
            let used = self.parse(now, data, events, out);
            if !self.is_closed() {
                self.pending = data[used..].to_vec();
            }
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(data);
            let used = self.parse(now, &buf, events, out);
            if !self.is_closed() && used < buf.len() {
                buf.drain(..used);
                self.pending = buf;
            }
        }
    }

    /// Parses whole frames from `buf`; returns how many bytes were used.
    fn parse(
        &mut self,
        now: Millis,
        buf: &[u8],
        events: &mut Vec<ClientEvent>,
        out: &mut Vec<u8>,
    ) -> usize {
        let mut used = 0;
        while !self.is_closed() {
            match codec::decode_frame(&buf[used..], self.cfg.max_frame) {
                Ok(Some((frame, n))) => {
                    used += n;
                    if let Some(kind) = frame.kind {
                        self.on_frame(now, kind, events, out);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.close(
                        ClientCloseReason::ProtocolError(e.error_code()),
                        Some(events),
                    );
                }
            }
        }
        used
    }

    fn on_frame(
        &mut self,
        now: Millis,
        kind: Kind,
        events: &mut Vec<ClientEvent>,
        out: &mut Vec<u8>,
    ) {
        self.last_rx = now;
        let established = self.state == ClientState::Established;
        match kind {
            Kind::Welcome(w) if !established => {
                self.heartbeat_ms = if w.heartbeat_ms == 0 {
                    CLIENT_DEFAULT_HEARTBEAT_MS
                } else {
                    w.heartbeat_ms
                };
                self.state = ClientState::Established;
                self.next_ping = now.saturating_add(u64::from(self.heartbeat_ms));
                self.welcome = Some(w.clone());
                events.push(ClientEvent::Welcome(w));
            }
            Kind::Push(p) if established => {
                if !p.ack {
                    events.push(ClientEvent::Push(p));
                    return;
                }
                let window = self.dedup.get_or_insert_with(Default::default);
                match window.arrived(p.id) {
                    Seen::New => {
                        if self.auto_ack {
                            window.acked(&[p.id]);
                            send(out, Kind::Ack(Ack { ids: vec![p.id] }));
                        }
                        events.push(ClientEvent::Push(p));
                    }
                    // The app has it and its ack will cover this copy too.
                    Seen::Duplicate => {}
                    // The ack was lost: without another, the gateway goes
                    // on redelivering.
                    Seen::DuplicateAcked => send(out, Kind::Ack(Ack { ids: vec![p.id] })),
                }
            }
            Kind::Reply(r) if established => events.push(ClientEvent::Reply(r)),
            Kind::Pong(p) => events.push(ClientEvent::Pong(p)),
            Kind::Ping(p) => send(out, Kind::Pong(Pong { id: p.id })),
            Kind::Kick(k) => {
                let code = k.code;
                events.push(ClientEvent::Kick(k));
                self.close(ClientCloseReason::Kicked(code), Some(events));
            }
            Kind::Error(e) => {
                let code = e.code;
                events.push(ClientEvent::Error(e));
                self.close(ClientCloseReason::ServerError(code), Some(events));
            }
            _ => {
                // Client-only kinds, a second Welcome, or a Push/Reply before Welcome.
                self.close(
                    ClientCloseReason::ProtocolError(ErrorCode::UnknownKind),
                    Some(events),
                );
            }
        }
    }

    /// Subscribes to `topics`.
    pub fn subscribe(&mut self, topics: Vec<String>, out: &mut Vec<u8>) {
        self.send_if_open(out, Kind::Subscribe(Subscribe { topics }));
    }

    /// Unsubscribes from `topics`.
    pub fn unsubscribe(&mut self, topics: Vec<String>, out: &mut Vec<u8>) {
        self.send_if_open(out, Kind::Unsubscribe(Unsubscribe { topics }));
    }

    /// Sends a request for `route` of `app`; returns its request id (the
    /// `Reply` carries it), or 0 if the session is closed and nothing was sent.
    pub fn uplink(&mut self, app: &str, route: &str, payload: Bytes, out: &mut Vec<u8>) -> u64 {
        if self.is_closed() {
            return 0;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let uplink = Uplink {
            request_id,
            app: app.to_owned(),
            route: route.to_owned(),
            payload,
        };
        send(out, Kind::Uplink(uplink));
        request_id
    }

    /// Acknowledges pushes by id.
    pub fn ack(&mut self, ids: Vec<u64>, out: &mut Vec<u8>) {
        if let Some(window) = self.dedup.as_mut() {
            window.acked(&ids);
        }
        self.send_if_open(out, Kind::Ack(Ack { ids }));
    }

    /// Sends a `Ping`; returns its id (the `Pong` carries it), or 0 if closed.
    pub fn ping(&mut self, out: &mut Vec<u8>) -> u64 {
        if self.is_closed() {
            return 0;
        }
        let id = self.next_ping_id;
        self.next_ping_id += 1;
        send(out, Kind::Ping(Ping { id }));
        id
    }

    /// Sends `Bye` and closes the session ([`ClientCloseReason::Bye`]).
    pub fn bye(&mut self, out: &mut Vec<u8>) {
        if self.is_closed() {
            return;
        }
        send(out, Kind::Bye(Bye {}));
        self.close(ClientCloseReason::Bye, None);
    }

    fn send_if_open(&mut self, out: &mut Vec<u8>, kind: Kind) {
        if !self.is_closed() {
            send(out, kind);
        }
    }

    fn close(&mut self, reason: ClientCloseReason, events: Option<&mut Vec<ClientEvent>>) {
        self.state = ClientState::Closed;
        self.close_reason = Some(reason);
        self.pending = Vec::new();
        if let Some(events) = events {
            events.push(ClientEvent::Closed(reason));
        }
    }
}

fn send(out: &mut Vec<u8>, kind: Kind) {
    codec::encode_frame(&codec::frame(kind), out);
}

#[cfg(test)]
mod tests;

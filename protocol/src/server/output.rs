//! What a session hands back to the gateway: the [`Output`] of one call (bytes
//! to send, [`Event`]s to act on), and the [`CloseReason`] a session ended with.

use crate::proto::{ErrorCode, Hello, KickCode, Uplink};

/// What a session produced during one call. Owned by the caller and shared by
/// every session of a shard; call [`Output::clear`] (or drain both fields)
/// before handing it to the next session.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes to write to the client, in order.
    pub transmit: Vec<u8>,
    /// Events for the gateway, in order. [`Event::Closed`] is always last.
    pub events: Vec<Event>,
    /// Whole frames decoded from client input (a running count the caller
    /// may read and reset; [`Output::clear`] leaves it alone).
    pub frames_in: u64,
    /// Whole frames written to `transmit` (a running count, as
    /// `frames_in`), so a caller never parses the framing to count them.
    pub frames_out: u64,
}

impl Output {
    /// An empty output.
    #[must_use]
    pub fn new() -> Output {
        Output::default()
    }

    /// Empties both fields, keeping their capacity.
    pub fn clear(&mut self) {
        self.transmit.clear();
        self.events.clear();
    }

    /// Whether nothing was produced.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.transmit.is_empty() && self.events.is_empty()
    }
}

/// Something the gateway must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client said hello. Authenticate `token`, then call
    /// [`ServerSession::accept`](super::ServerSession::accept) or
    /// [`ServerSession::reject`](super::ServerSession::reject).
    Hello(Hello),
    /// The client subscribes to these topics.
    Subscribe(Vec<String>),
    /// The client unsubscribes from these topics.
    Unsubscribe(Vec<String>),
    /// The client sends a request to a backend; answer with a `Reply`.
    Uplink(Uplink),
    /// The client acknowledges these push ids.
    Ack(Vec<u64>),
    /// The session is over: flush `transmit`, then close the connection.
    Closed(CloseReason),
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent `Bye`.
    ClientBye,
    /// No `Hello` was accepted within the handshake timeout.
    HandshakeTimeout,
    /// No inbound frame within `idle_factor × heartbeat`.
    IdleTimeout,
    /// Bad input from the client, or a gateway-side failure ([`ServerSession::fail`](super::ServerSession::fail)).
    ProtocolError(ErrorCode),
    /// The gateway refused the `Hello` ([`ServerSession::reject`](super::ServerSession::reject)).
    Rejected(ErrorCode),
    /// The gateway kicked the session ([`ServerSession::kick`](super::ServerSession::kick)).
    Kicked(KickCode),
}

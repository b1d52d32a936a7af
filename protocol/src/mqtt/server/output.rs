//! What an MQTT session hands back to the gateway: the [`Output`] of one call
//! (bytes to send, [`Event`]s to act on), the owned [`ConnectRequest`],
//! [`Uplink`] and [`Will`] the events carry, the caller's [`Verdict`] on a
//! CONNECT, and the [`CloseReason`] a session ended with.

use bytes::Bytes;

use crate::mqtt::{ConnectReturnCode, DecodeError, PacketType, QoS};

/// What a session produced during one call. Owned by the caller and shared
/// by every MQTT session of a shard; call [`Output::clear`] (or drain both
/// fields) before handing it to the next session.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes to write to the client, in order.
    pub transmit: Vec<u8>,
    /// Events for the gateway, in order. [`Event::Closed`] is always last.
    pub events: Vec<Event>,
    /// Whole packets decoded from client input (a running count the caller
    /// may read and reset; [`Output::clear`] leaves it alone).
    pub packets_in: u64,
    /// Whole packets written to `transmit` (a running count, as `packets_in`).
    pub packets_out: u64,
    /// PUBACKs for a packet id with nothing in flight, ignored (a running
    /// count, as `packets_in`).
    pub unknown_acks: u64,
}

impl Output {
    /// An empty output.
    #[must_use]
    pub fn new() -> Output {
        Output::default()
    }

    /// Empties `transmit` and `events`, keeping their capacity.
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
    /// A valid CONNECT: authenticate it, then call
    /// [`MqttSession::verdict`](super::MqttSession::verdict).
    Authenticate(ConnectRequest),
    /// The client subscribes: answer with
    /// [`MqttSession::suback`](super::MqttSession::suback), one code per filter.
    Subscribe {
        /// The SUBSCRIBE's packet id, for the SUBACK.
        packet_id: u16,
        /// Topic filters (validated, `+`/`#` placed per spec) with the QoS
        /// each asks for.
        filters: Vec<(String, QoS)>,
    },
    /// The client unsubscribes from these filters. The UNSUBACK has been
    /// sent already: removing a subscription cannot fail.
    Unsubscribe(Vec<String>),
    /// A client PUBLISH, for the backend. At QoS 1, confirm it with
    /// [`MqttSession::puback`](super::MqttSession::puback) once the backend
    /// has taken it.
    Uplink(Uplink),
    /// A QoS 1 PUBLISH sent by the gateway was acknowledged.
    Acked {
        /// The packet id it was sent with (free again).
        packet_id: u16,
        /// The push id the caller attached in
        /// [`MqttSession::start_qos1`](super::MqttSession::start_qos1).
        push_id: u64,
    },
    /// The connection ended without DISCONNECT: the client's will is due.
    /// Always just before [`Event::Closed`].
    Will(Will),
    /// The session is over: flush `transmit`, then close the connection.
    Closed(CloseReason),
}

/// A CONNECT the caller must authenticate, with owned copies of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The client identifier. `None`: the client sent an empty one with
    /// clean session set, asking the server to assign one (§3.1.3.1); the
    /// caller names the session (it never outlives the connection).
    pub client_id: Option<String>,
    /// The user name, if sent.
    pub username: Option<String>,
    /// The password, if sent: the gateway's token.
    pub password: Option<Bytes>,
    /// Whether the client wants a fresh session (`false`: resume the one
    /// kept for `client_id`).
    pub clean_session: bool,
    /// The keep-alive the client asked for, in seconds (0: none). The
    /// granted one is [`MqttSession::keep_alive_ms`](super::MqttSession::keep_alive_ms).
    pub keep_alive_s: u16,
    /// The will, if any; the session keeps its own copy for an unclean close.
    pub will: Option<Will>,
}

/// A will message (§3.1.2.5), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Where to publish it (a topic name).
    pub topic: String,
    /// What to publish.
    pub payload: Bytes,
    /// At which QoS.
    pub qos: QoS,
    /// Whether the client asked for it to be retained.
    pub retain: bool,
}

/// A client PUBLISH, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// The topic name it was published to.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// QoS 0 or 1 (QoS 2 closes the session).
    pub qos: QoS,
    /// The packet id to confirm (QoS 1), else 0.
    pub packet_id: u16,
    /// RETAIN (only with [`RetainPolicy::PassThrough`](super::RetainPolicy::PassThrough)).
    pub retain: bool,
    /// DUP: the client may have sent it before.
    pub dup: bool,
}

/// The caller's answer to [`Event::Authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accept: CONNACK 0x00, with `session_present` when a stored session
    /// was resumed (never with clean session).
    Accept {
        /// Whether the caller holds a session for this client id.
        session_present: bool,
    },
    /// The token (password) is missing, malformed or wrong: CONNACK 0x04.
    BadCredentials,
    /// Valid credentials without the right to connect: CONNACK 0x05.
    NotAuthorized,
    /// The client id is not allowed: CONNACK 0x02.
    IdentifierRejected,
    /// The gateway cannot take the client now (overload, drain): CONNACK 0x03.
    ServerUnavailable,
}

impl Verdict {
    /// The CONNACK return code it is sent as.
    #[must_use]
    pub fn return_code(self) -> ConnectReturnCode {
        match self {
            Verdict::Accept { .. } => ConnectReturnCode::Accepted,
            Verdict::BadCredentials => ConnectReturnCode::BadUsernameOrPassword,
            Verdict::NotAuthorized => ConnectReturnCode::NotAuthorized,
            Verdict::IdentifierRejected => ConnectReturnCode::IdentifierRejected,
            Verdict::ServerUnavailable => ConnectReturnCode::ServerUnavailable,
        }
    }
}

/// A bound from [`MqttConfig`](super::MqttConfig) that a client exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More filters in one SUBSCRIBE or UNSUBSCRIBE than `max_filters`.
    Filters,
    /// A topic name or filter longer than `max_topic_len`.
    TopicLength,
    /// More unconfirmed QoS 1 uplinks than `max_uplinks_in_flight`.
    UplinksInFlight,
    /// More input pipelined behind CONNECT than the session holds.
    PendingInput,
}

/// Why a session closed: one per session, for the gateway to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent DISCONNECT (the will is discarded).
    ClientDisconnect,
    /// The transport ended (EOF, reset) without DISCONNECT.
    ConnectionLost,
    /// The gateway closed it ([`MqttSession::close`](super::MqttSession::close)):
    /// kick, drain, slow consumer. 3.1.1 has no server DISCONNECT.
    ServerClosed,
    /// No CONNECT, or no verdict, within the handshake timeout.
    HandshakeTimeout,
    /// Nothing from the client within 1.5 × its keep-alive.
    KeepAliveTimeout,
    /// The first packet was not CONNECT (§3.1.0-1).
    NotConnect(PacketType),
    /// A second CONNECT (§3.1.0-2).
    SecondConnect,
    /// The CONNECT was refused with this (non-zero) CONNACK code.
    Refused(ConnectReturnCode),
    /// Bytes that are not a valid packet.
    Malformed(DecodeError),
    /// A packet a client may not send here: one only servers send, or a
    /// QoS 2 packet (PUBREC, PUBREL, PUBCOMP) when no QoS 2 flow exists.
    UnexpectedPacket(PacketType),
    /// A client PUBLISH at QoS 2: not supported (the gateway's uplinks are
    /// at least once; exactly-once needs the backend's idempotency anyway).
    Qos2Unsupported,
    /// A client PUBLISH with RETAIN under [`RetainPolicy::Refuse`](super::RetainPolicy::Refuse).
    RetainRefused,
    /// A configured bound was exceeded.
    LimitExceeded(Limit),
}

impl CloseReason {
    /// A short, stable name for metrics labels and logs.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientDisconnect => "client_disconnect",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::ServerClosed => "server_closed",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::KeepAliveTimeout => "keep_alive_timeout",
            CloseReason::NotConnect(_) => "not_connect",
            CloseReason::SecondConnect => "second_connect",
            CloseReason::Refused(_) => "refused",
            CloseReason::Malformed(_) => "malformed",
            CloseReason::UnexpectedPacket(_) => "unexpected_packet",
            CloseReason::Qos2Unsupported => "qos2_unsupported",
            CloseReason::RetainRefused => "retain_refused",
            CloseReason::LimitExceeded(_) => "limit_exceeded",
        }
    }

    /// Whether the client broke the protocol or a bound (as opposed to a
    /// normal end, a timeout, a refusal or a gateway decision).
    #[must_use]
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            CloseReason::NotConnect(_)
                | CloseReason::SecondConnect
                | CloseReason::Malformed(_)
                | CloseReason::UnexpectedPacket(_)
                | CloseReason::Qos2Unsupported
                | CloseReason::RetainRefused
                | CloseReason::LimitExceeded(_)
        )
    }
}

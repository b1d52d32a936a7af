//! The MQTT 3.1.1 control packets as values (spec §2–§3).
//!
//! A decoded [`Packet`] borrows from the input buffer: topics, client ids and
//! user names are `&str` checked in place, payloads and passwords are
//! `&[u8]` slices, and the filter lists of SUBSCRIBE, UNSUBSCRIBE and SUBACK
//! stay as their validated wire bytes, read by iterators. Decoding allocates
//! nothing.

use super::codes::{ConnectReturnCode, PacketType, QoS, SubAckCode};
use super::wire::Reader;

/// A decoded control packet, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT (§3.1).
    Connect(Connect<'a>),
    /// CONNACK (§3.2).
    ConnAck(ConnAck),
    /// PUBLISH (§3.3).
    Publish(Publish<'a>),
    /// PUBACK with its packet identifier (§3.4).
    PubAck(u16),
    /// PUBREC with its packet identifier (§3.5).
    PubRec(u16),
    /// PUBREL with its packet identifier (§3.6).
    PubRel(u16),
    /// PUBCOMP with its packet identifier (§3.7).
    PubComp(u16),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe<'a>),
    /// SUBACK (§3.9).
    SubAck(SubAck<'a>),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe<'a>),
    /// UNSUBACK with its packet identifier (§3.11).
    UnsubAck(u16),
    /// PINGREQ (§3.12).
    PingReq,
    /// PINGRESP (§3.13).
    PingResp,
    /// DISCONNECT (§3.14).
    Disconnect,
}

impl Packet<'_> {
    /// The packet's type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }
}

/// CONNECT at protocol level 4 ("MQTT", 3.1.1). Other levels do not decode:
/// see [`DecodeError::UnsupportedProtocolLevel`](super::DecodeError::UnsupportedProtocolLevel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connect<'a> {
    /// Start afresh (`true`) or resume the session stored for `client_id`.
    pub clean_session: bool,
    /// Longest silence the client promises, in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The client identifier; may be empty (§3.1.3.1).
    pub client_id: &'a str,
    /// The will message, if the will flag is set.
    pub will: Option<LastWill<'a>>,
    /// The user name, if its flag is set.
    pub username: Option<&'a str>,
    /// The password, if its flag is set (binary data, §3.1.3.5).
    pub password: Option<&'a [u8]>,
}

/// The message a server publishes for a client whose connection ends
/// without DISCONNECT (§3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill<'a> {
    /// Where to publish it: a topic name.
    pub topic: &'a str,
    /// What to publish.
    pub payload: &'a [u8],
    /// At which QoS.
    pub qos: QoS,
    /// Whether as a retained message.
    pub retain: bool,
}

/// CONNACK (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session (always false unless
    /// `code` is [`ConnectReturnCode::Accepted`]).
    pub session_present: bool,
    /// The verdict.
    pub code: ConnectReturnCode,
}

/// PUBLISH (§3.3), borrowing its topic and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Re-delivery of an earlier attempt (QoS > 0 only).
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Whether the server should keep it as the topic's retained message.
    pub retain: bool,
    /// A topic name (no wildcards).
    pub topic: &'a str,
    /// Packet identifier: non-zero at QoS 1 and 2, 0 (and absent from the
    /// wire) at QoS 0.
    pub packet_id: u16,
    /// Application payload, possibly empty.
    pub payload: &'a [u8],
}

/// SUBSCRIBE (§3.8): a packet id and at least one (filter, requested QoS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Packet identifier, echoed by SUBACK.
    pub packet_id: u16,
    /// The requested filters, validated.
    pub filters: SubscribeFilters<'a>,
}

/// The validated (topic filter, requested QoS) list of a SUBSCRIBE, as its
/// wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeFilters<'a> {
    pub(super) raw: &'a [u8],
    pub(super) count: usize,
}

impl<'a> SubscribeFilters<'a> {
    /// How many filters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Never true for a decoded SUBSCRIBE (§3.8.3).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The filters in order, with their requested QoS.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, QoS)> + use<'a> {
        let mut r = Reader::new(self.raw, PacketType::Subscribe);
        // Validated when decoded: these reads cannot fail, and stop if they did.
        std::iter::from_fn(move || {
            let filter = r.string().ok()?;
            let qos = QoS::from_u8(r.u8().ok()?)?;
            Some((filter, qos))
        })
    }
}

/// SUBACK (§3.9): a packet id and one return code per requested filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck<'a> {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: u16,
    pub(super) codes: &'a [u8],
}

impl<'a> SubAck<'a> {
    /// The return codes in filter order (validated when decoded).
    pub fn codes(&self) -> impl Iterator<Item = SubAckCode> + use<'a> {
        self.codes.iter().filter_map(|&c| SubAckCode::from_u8(c))
    }

    /// How many return codes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Never true for a decoded SUBACK.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// UNSUBSCRIBE (§3.10): a packet id and at least one topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// Packet identifier, echoed by UNSUBACK.
    pub packet_id: u16,
    /// The filters, validated.
    pub filters: UnsubscribeFilters<'a>,
}

/// The validated topic filters of an UNSUBSCRIBE, as their wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeFilters<'a> {
    pub(super) raw: &'a [u8],
    pub(super) count: usize,
}

impl<'a> UnsubscribeFilters<'a> {
    /// How many filters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Never true for a decoded UNSUBSCRIBE (§3.10.3).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The filters in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut r = Reader::new(self.raw, PacketType::Unsubscribe);
        std::iter::from_fn(move || r.string().ok())
    }
}

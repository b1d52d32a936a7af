//! The MQTT 3.1.1 control packets as values (spec §2–§3).
//!
//! A decoded [`Packet`] borrows from the input buffer: topics, client ids and
//! user names are `&str` checked in place, payloads and passwords are
//! `&[u8]` slices, and the filter lists of SUBSCRIBE, UNSUBSCRIBE and SUBACK
//! stay as their validated wire bytes, read by iterators. Decoding allocates
//! nothing.

use super::wire::Reader;

/// The control packet types (upper nibble of the first byte, §2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgement.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// QoS 1 publish acknowledgement.
    PubAck = 4,
    /// QoS 2 publish received (part 1).
    PubRec = 5,
    /// QoS 2 publish release (part 2).
    PubRel = 6,
    /// QoS 2 publish complete (part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgement.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Client is disconnecting.
    Disconnect = 14,
}

impl PacketType {
    /// The type in the upper nibble of `first_byte`; `None` for the
    /// reserved values 0 and 15.
    #[must_use]
    pub fn from_first_byte(first_byte: u8) -> Option<PacketType> {
        Some(match first_byte >> 4 {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            _ => return None,
        })
    }

    /// The fixed-header flags this type requires (§2.2.2): `0b0010` for
    /// PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0 for the others; `None` for
    /// PUBLISH, whose flags carry DUP, QoS and RETAIN.
    #[must_use]
    pub const fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The first byte of a packet of this type with its required flags
    /// (PUBLISH: all flags clear).
    #[must_use]
    pub fn first_byte(self) -> u8 {
        ((self as u8) << 4) | self.required_flags().unwrap_or(0)
    }

    /// Upper-case name as in the spec, for logs and metrics labels.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
        }
    }
}

/// Quality of service of a PUBLISH, a will or a subscription (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once: no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// At least once: acknowledged with PUBACK.
    AtLeastOnce = 1,
    /// Exactly once: the PUBREC/PUBREL/PUBCOMP exchange. Decoded, never
    /// spoken by the gateway's session.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS numbered `n`; `None` for 3 and above.
    #[must_use]
    pub const fn from_u8(n: u8) -> Option<QoS> {
        match n {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// CONNACK return codes (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: the server does not support the requested protocol level.
    UnacceptableProtocolVersion = 1,
    /// 0x02: the client identifier is not allowed.
    IdentifierRejected = 2,
    /// 0x03: the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 0x04: the user name or password is malformed or wrong.
    BadUsernameOrPassword = 4,
    /// 0x05: the client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code numbered `n`; `None` for the reserved 6..=255.
    #[must_use]
    pub const fn from_u8(n: u8) -> Option<ConnectReturnCode> {
        Some(match n {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUsernameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            _ => return None,
        })
    }
}

/// SUBACK return codes, one per requested filter (§3.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SubAckCode {
    /// Granted with maximum QoS 0.
    GrantedQos0 = 0x00,
    /// Granted with maximum QoS 1.
    GrantedQos1 = 0x01,
    /// Granted with maximum QoS 2 (never granted by the gateway).
    GrantedQos2 = 0x02,
    /// Refused.
    Failure = 0x80,
}

impl SubAckCode {
    /// The code `n`; `None` for undefined values.
    #[must_use]
    pub const fn from_u8(n: u8) -> Option<SubAckCode> {
        Some(match n {
            0x00 => SubAckCode::GrantedQos0,
            0x01 => SubAckCode::GrantedQos1,
            0x02 => SubAckCode::GrantedQos2,
            0x80 => SubAckCode::Failure,
            _ => return None,
        })
    }

    /// A grant of maximum QoS `qos`.
    #[must_use]
    pub const fn granted(qos: QoS) -> SubAckCode {
        match qos {
            QoS::AtMostOnce => SubAckCode::GrantedQos0,
            QoS::AtLeastOnce => SubAckCode::GrantedQos1,
            QoS::ExactlyOnce => SubAckCode::GrantedQos2,
        }
    }
}

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

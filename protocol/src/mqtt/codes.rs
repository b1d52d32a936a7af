//! The numbers on the MQTT 3.1.1 wire that name things: packet types (with
//! the fixed-header flags each requires, §2.2), QoS levels (§4.3), and the
//! return codes of CONNACK (§3.2.2.3) and SUBACK (§3.9.3).

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

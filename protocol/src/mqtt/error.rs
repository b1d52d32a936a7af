//! Why bytes are not an MQTT 3.1.1 packet ([`DecodeError`]), and why a
//! packet cannot be put into bytes ([`EncodeError`]).
//!
//! Both are `Copy` and carry no heap data, so a session can keep the one it
//! closed with in its [`CloseReason`](super::server::CloseReason) and the
//! gateway can count them by [`DecodeError::label`].

use super::codes::PacketType;
use super::topic::TopicError;

/// Why bytes from a peer are not a valid MQTT 3.1.1 packet.
///
/// Every variant is fatal for the connection: the stream cannot be
/// resynchronised, and the spec has the receiver close it (§4.8). Only
/// [`DecodeError::UnsupportedProtocolLevel`] has an answer first: CONNACK
/// return code 0x01 (§3.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type 0 or 15: reserved in 3.1.1 (§2.2.1).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header's flag bits are not the ones the packet type
    /// requires (§2.2.2), or PUBLISH says QoS 3 or DUP at QoS 0 (§3.3.1).
    #[error("{packet:?} with invalid fixed-header flags {flags:#06b}")]
    BadFlags {
        /// The packet type.
        packet: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// The remaining length runs past four bytes (§2.2.3).
    #[error("remaining length longer than four bytes")]
    BadRemainingLength,
    /// The packet is larger than the receiver accepts. Detected from the
    /// fixed header alone, before the body is waited for or stored.
    #[error("packet of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The whole packet's length, fixed header included.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The body ends inside a field.
    #[error("{0:?} shorter than its fields")]
    Truncated(PacketType),
    /// The body has bytes after its last field.
    #[error("{0:?} longer than its fields")]
    TrailingBytes(PacketType),
    /// A string field is not well-formed UTF-8 (§1.5.3).
    #[error("string is not well-formed UTF-8")]
    BadUtf8,
    /// A string field contains U+0000 (§1.5.3).
    #[error("string contains U+0000")]
    NulCharacter,
    /// CONNECT's protocol name is neither "MQTT" nor 3.1's "MQIsdp" (§3.1.2.1).
    #[error("unknown protocol name")]
    BadProtocolName,
    /// CONNECT asks for a protocol level other than 4 (3.1.1). The server
    /// answers CONNACK 0x01 and closes (§3.1.2.2).
    #[error("protocol level {0} is not supported (3.1.1 is level 4)")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags break §3.1.2.3–§3.1.2.9: the reserved bit set, will QoS
    /// 3, will QoS or retain without a will, or a password without a user name.
    #[error("invalid CONNECT flags {0:#010b}")]
    BadConnectFlags(u8),
    /// CONNACK's acknowledge flags have reserved bits set (§3.2.2.1), or
    /// say a session is present with a non-zero return code (§3.2.2.2).
    #[error("invalid CONNACK flags {0:#010b}")]
    BadConnAckFlags(u8),
    /// A return code the packet does not define (CONNACK above 5; SUBACK
    /// other than 0, 1, 2 or 0x80).
    #[error("{packet:?} with unknown return code {code:#04x}")]
    BadReturnCode {
        /// The packet type.
        packet: PacketType,
        /// The code.
        code: u8,
    },
    /// A packet identifier of zero (§2.3.1).
    #[error("{0:?} with packet identifier 0")]
    ZeroPacketId(PacketType),
    /// A topic name or filter breaks the topic rules (§4.7).
    #[error("topic: {0}")]
    Topic(#[from] TopicError),
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter (§3.8.3, §3.10.3).
    #[error("{0:?} without a topic filter")]
    NoTopicFilters(PacketType),
    /// SUBSCRIBE's requested-QoS byte has reserved bits set or asks for QoS 3
    /// (§3.8.3.1).
    #[error("invalid SUBSCRIBE options byte {0:#04x}")]
    BadSubscribeOptions(u8),
}

impl DecodeError {
    /// A short, stable name for metrics labels and logs.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::ReservedPacketType(_) => "reserved_packet_type",
            DecodeError::BadFlags { .. } => "bad_flags",
            DecodeError::BadRemainingLength => "bad_remaining_length",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
            DecodeError::BadUtf8 => "bad_utf8",
            DecodeError::NulCharacter => "nul_character",
            DecodeError::BadProtocolName => "bad_protocol_name",
            DecodeError::UnsupportedProtocolLevel(_) => "unsupported_protocol_level",
            DecodeError::BadConnectFlags(_) => "bad_connect_flags",
            DecodeError::BadConnAckFlags(_) => "bad_connack_flags",
            DecodeError::BadReturnCode { .. } => "bad_return_code",
            DecodeError::ZeroPacketId(_) => "zero_packet_id",
            DecodeError::Topic(_) => "bad_topic",
            DecodeError::NoTopicFilters(_) => "no_topic_filters",
            DecodeError::BadSubscribeOptions(_) => "bad_subscribe_options",
        }
    }
}

/// Why a packet could not be encoded. Encoders check only what would make
/// the bytes unframeable; `out` is left as it was when they fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field longer than its two-byte length prefix allows.
    #[error("field of {len} bytes exceeds 65535")]
    FieldTooLong {
        /// The field's length.
        len: usize,
    },
    /// The packet's remaining length exceeds 268,435,455 bytes (§2.2.3).
    #[error("packet body of {len} bytes exceeds 268435455")]
    PacketTooLarge {
        /// The remaining length it would have.
        len: usize,
    },
    /// A packet identifier of zero where one is required (§2.3.1).
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter.
    #[error("no topic filter")]
    NoTopicFilters,
}

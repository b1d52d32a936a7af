//! Incremental decoding of one MQTT 3.1.1 packet from the front of a byte
//! slice.
//!
//! [`decode_packet`] never allocates and never waits for bytes it will
//! refuse: the packet type and its fixed-header flags are checked from the
//! first byte, the size bound from the remaining length, both before the
//! body has arrived. A caller keeping a partial packet therefore stores at
//! most `max_packet` bytes of it.

use super::codes::{ConnectReturnCode, PacketType, QoS, SubAckCode};
use super::error::DecodeError;
use super::packet::{
    ConnAck, Connect, LastWill, Packet, Publish, SubAck, Subscribe, SubscribeFilters, Unsubscribe,
    UnsubscribeFilters,
};
use super::topic::{check_topic_filter, check_topic_name};
use super::wire::{Reader, decode_remaining_length};

/// The result of decoding from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer holds part of a packet: at least this many more bytes are
    /// needed (exactly this many once the fixed header is whole).
    NeedMore(usize),
    /// One packet, decoded from the first `len` bytes.
    Packet {
        /// The packet, borrowing from the buffer.
        packet: Packet<'a>,
        /// Bytes it took, fixed header included.
        len: usize,
    },
}

/// A packet's fixed header (§2.2), read and checked ahead of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet: PacketType,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Bytes of the fixed header: the first byte and 1 to 4 length bytes.
    pub header_len: usize,
    /// Bytes of the body.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// The whole packet's length.
    #[must_use]
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Checks the first byte of a packet: a defined type with the flags it
/// requires (§2.2.2; PUBLISH: QoS below 3, no DUP at QoS 0, §3.3.1).
pub fn check_first_byte(first: u8) -> Result<(PacketType, u8), DecodeError> {
    let packet =
        PacketType::from_first_byte(first).ok_or(DecodeError::ReservedPacketType(first >> 4))?;
    let flags = first & 0x0f;
    let ok = match packet.required_flags() {
        Some(required) => flags == required,
        None => {
            let qos = (flags >> 1) & 0b11;
            let dup_at_qos0 = flags & 0b1000 != 0 && qos == 0;
            qos != 3 && !dup_at_qos0
        }
    };
    if ok {
        Ok((packet, flags))
    } else {
        Err(DecodeError::BadFlags { packet, flags })
    }
}

/// Reads the fixed header at the front of `buf`.
///
/// `Ok(None)` while it is incomplete. Errors as soon as the bytes present
/// show a bad type or flags, a remaining length over four bytes, or a
/// packet longer than `max_packet`.
pub fn peek_fixed_header(
    buf: &[u8],
    max_packet: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let (packet, flags) = check_first_byte(first)?;
    let Some((remaining_len, len_bytes)) = decode_remaining_length(rest)? else {
        return Ok(None);
    };
    let header = FixedHeader {
        packet,
        flags,
        header_len: 1 + len_bytes,
        remaining_len,
    };
    if header.packet_len() > max_packet {
        return Err(DecodeError::TooLarge {
            len: header.packet_len(),
            max: max_packet,
        });
    }
    Ok(Some(header))
}

/// Decodes the packet at the front of `buf`, if it is all there.
///
/// The rest of `buf` (perhaps more packets) is untouched. An error means the
/// stream is corrupt: close the connection.
pub fn decode_packet(buf: &[u8], max_packet: usize) -> Result<Decoded<'_>, DecodeError> {
    let Some(header) = peek_fixed_header(buf, max_packet)? else {
        return Ok(Decoded::NeedMore(1));
    };
    let len = header.packet_len();
    let Some(body) = buf.get(header.header_len..len) else {
        return Ok(Decoded::NeedMore(len - buf.len()));
    };
    let packet = decode_body(header, body)?;
    Ok(Decoded::Packet { packet, len })
}

/// Decodes a body whose fixed header has been checked.
fn decode_body(header: FixedHeader, body: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let mut r = Reader::new(body, header.packet);
    let packet = match header.packet {
        PacketType::Connect => Packet::Connect(connect(&mut r)?),
        PacketType::ConnAck => Packet::ConnAck(connack(&mut r)?),
        PacketType::Publish => Packet::Publish(publish(header.flags, &mut r)?),
        PacketType::PubAck => Packet::PubAck(r.packet_id()?),
        PacketType::PubRec => Packet::PubRec(r.packet_id()?),
        PacketType::PubRel => Packet::PubRel(r.packet_id()?),
        PacketType::PubComp => Packet::PubComp(r.packet_id()?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut r)?),
        PacketType::SubAck => Packet::SubAck(suback(&mut r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut r)?),
        PacketType::UnsubAck => Packet::UnsubAck(r.packet_id()?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect,
    };
    r.finish()?;
    Ok(packet)
}

/// CONNECT flag bits (§3.1.2.3).
mod connect_flags {
    pub const USERNAME: u8 = 0x80;
    pub const PASSWORD: u8 = 0x40;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const WILL_QOS: u8 = 0x18;
    pub const WILL: u8 = 0x04;
    pub const CLEAN_SESSION: u8 = 0x02;
    pub const RESERVED: u8 = 0x01;
}

fn connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, DecodeError> {
    use self::connect_flags as f;
    let name = r.binary()?;
    if name != b"MQTT" && name != b"MQIsdp" {
        return Err(DecodeError::BadProtocolName);
    }
    let level = r.u8()?;
    // 3.1 ("MQIsdp", level 3) and 5 are answered with CONNACK 0x01: the
    // rest of their CONNECT is not read, as its layout differs.
    if level != 4 || name != b"MQTT" {
        return Err(DecodeError::UnsupportedProtocolLevel(level));
    }
    let flags = r.u8()?;
    let will_flag = flags & f::WILL != 0;
    let will_qos = (flags & f::WILL_QOS) >> 3;
    let bad = flags & f::RESERVED != 0
        || will_qos == 3
        || (!will_flag && flags & (f::WILL_QOS | f::WILL_RETAIN) != 0)
        || (flags & f::USERNAME == 0 && flags & f::PASSWORD != 0);
    if bad {
        return Err(DecodeError::BadConnectFlags(flags));
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.string()?;
        check_topic_name(topic)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: QoS::from_u8(will_qos).ok_or(DecodeError::BadConnectFlags(flags))?,
            retain: flags & f::WILL_RETAIN != 0,
        })
    } else {
        None
    };
    let username = if flags & f::USERNAME != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & f::PASSWORD != 0 {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        clean_session: flags & f::CLEAN_SESSION != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

fn connack(r: &mut Reader<'_>) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & !1 != 0 {
        return Err(DecodeError::BadConnAckFlags(flags));
    }
    let code = r.u8()?;
    let code = ConnectReturnCode::from_u8(code).ok_or(DecodeError::BadReturnCode {
        packet: PacketType::ConnAck,
        code,
    })?;
    let session_present = flags & 1 != 0;
    // A refusal never says a session is present (§3.2.2.2).
    if session_present && code != ConnectReturnCode::Accepted {
        return Err(DecodeError::BadConnAckFlags(flags));
    }
    Ok(ConnAck {
        session_present,
        code,
    })
}

fn publish<'a>(flags: u8, r: &mut Reader<'a>) -> Result<Publish<'a>, DecodeError> {
    // The flags were checked with the first byte: QoS is 0, 1 or 2.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::BadFlags {
        packet: PacketType::Publish,
        flags,
    })?;
    let topic = r.string()?;
    check_topic_name(topic)?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        r.packet_id()?
    };
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        payload: r.rest(),
    })
}

fn subscribe<'a>(r: &mut Reader<'a>) -> Result<Subscribe<'a>, DecodeError> {
    let packet_id = r.packet_id()?;
    let raw = r.rest();
    let mut list = Reader::new(raw, PacketType::Subscribe);
    let mut count = 0;
    while !list.is_empty() {
        check_topic_filter(list.string()?)?;
        let options = list.u8()?;
        if options > 2 {
            return Err(DecodeError::BadSubscribeOptions(options));
        }
        count += 1;
    }
    if count == 0 {
        return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
    }
    Ok(Subscribe {
        packet_id,
        filters: SubscribeFilters { raw, count },
    })
}

fn suback<'a>(r: &mut Reader<'a>) -> Result<SubAck<'a>, DecodeError> {
    let packet_id = r.packet_id()?;
    let codes = r.rest();
    if codes.is_empty() {
        return Err(DecodeError::Truncated(PacketType::SubAck));
    }
    if let Some(&code) = codes.iter().find(|&&c| SubAckCode::from_u8(c).is_none()) {
        return Err(DecodeError::BadReturnCode {
            packet: PacketType::SubAck,
            code,
        });
    }
    Ok(SubAck { packet_id, codes })
}

fn unsubscribe<'a>(r: &mut Reader<'a>) -> Result<Unsubscribe<'a>, DecodeError> {
    let packet_id = r.packet_id()?;
    let raw = r.rest();
    let mut list = Reader::new(raw, PacketType::Unsubscribe);
    let mut count = 0;
    while !list.is_empty() {
        check_topic_filter(list.string()?)?;
        count += 1;
    }
    if count == 0 {
        return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
    }
    Ok(Unsubscribe {
        packet_id,
        filters: UnsubscribeFilters { raw, count },
    })
}

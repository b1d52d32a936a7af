//! Encoders for every MQTT 3.1.1 control packet, appending to a caller's
//! `Vec<u8>`.
//!
//! They write the shortest remaining length and check only what would make
//! the bytes unframeable (a field over 65535 bytes, a body over 268,435,455,
//! a zero packet id where one is needed); on error `out` is left as it
//! was. Content rules (topic wildcards, UTF-8 details) are the decoder's,
//! applied to what peers send. For a PUBLISH sent to many recipients, see
//! [`broadcast`](super::broadcast).

use super::codes::{ConnectReturnCode, PacketType, QoS, SubAckCode};
use super::error::EncodeError;
use super::packet::{ConnAck, Connect, Packet, Publish};
use super::wire::{MAX_REMAINING_LENGTH, encode_remaining_length, field_len, put_field};

/// Encodes any packet (the fuzz targets and tests re-encode what they decode).
pub fn encode_packet(packet: &Packet<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => encode_connect(c, out),
        Packet::ConnAck(a) => {
            encode_connack(*a, out);
            Ok(())
        }
        Packet::Publish(p) => encode_publish(p, out),
        Packet::PubAck(id) => encode_id_packet(PacketType::PubAck, *id, out),
        Packet::PubRec(id) => encode_id_packet(PacketType::PubRec, *id, out),
        Packet::PubRel(id) => encode_id_packet(PacketType::PubRel, *id, out),
        Packet::PubComp(id) => encode_id_packet(PacketType::PubComp, *id, out),
        Packet::Subscribe(s) => raw_list(PacketType::Subscribe, s.packet_id, s.filters.raw, out),
        Packet::SubAck(a) => raw_list(PacketType::SubAck, a.packet_id, a.codes, out),
        Packet::Unsubscribe(u) => {
            raw_list(PacketType::Unsubscribe, u.packet_id, u.filters.raw, out)
        }
        Packet::UnsubAck(id) => encode_id_packet(PacketType::UnsubAck, *id, out),
        Packet::PingReq => {
            encode_pingreq(out);
            Ok(())
        }
        Packet::PingResp => {
            encode_pingresp(out);
            Ok(())
        }
        Packet::Disconnect => {
            encode_disconnect(out);
            Ok(())
        }
    }
}

/// Writes `first`, the remaining length `body_len`, then whatever `body`
/// writes; undoes everything if any step fails.
fn packet(
    first: u8,
    body_len: usize,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if body_len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { len: body_len });
    }
    let start = out.len();
    out.reserve(5 + body_len);
    out.push(first);
    let result = encode_remaining_length(body_len, out).and_then(|()| body(out));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// CONNECT at protocol level 4.
pub fn encode_connect(c: &Connect<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut flags = 0u8;
    let mut body_len = field_len(4) + 1 + 1 + 2 + field_len(c.client_id.len());
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
        body_len += field_len(w.topic.len()) + field_len(w.payload.len());
    }
    if let Some(u) = c.username {
        flags |= 0x80;
        body_len += field_len(u.len());
    }
    if let Some(p) = c.password {
        flags |= 0x40;
        body_len += field_len(p.len());
    }
    packet(PacketType::Connect.first_byte(), body_len, out, |out| {
        put_field(b"MQTT", out)?;
        out.push(4);
        out.push(flags);
        out.extend_from_slice(&c.keep_alive.to_be_bytes());
        put_field(c.client_id.as_bytes(), out)?;
        if let Some(w) = &c.will {
            put_field(w.topic.as_bytes(), out)?;
            put_field(w.payload, out)?;
        }
        if let Some(u) = c.username {
            put_field(u.as_bytes(), out)?;
        }
        if let Some(p) = c.password {
            put_field(p, out)?;
        }
        Ok(())
    })
}

/// CONNACK. `session_present` is sent only with
/// [`ConnectReturnCode::Accepted`] (§3.2.2.2).
pub fn encode_connack(ack: ConnAck, out: &mut Vec<u8>) {
    let accepted = ack.code == ConnectReturnCode::Accepted;
    let flags = u8::from(ack.session_present && accepted);
    out.extend_from_slice(&[PacketType::ConnAck.first_byte(), 2, flags, ack.code as u8]);
}

/// The first byte of a PUBLISH with these flags.
#[must_use]
pub fn publish_first_byte(dup: bool, qos: QoS, retain: bool) -> u8 {
    PacketType::Publish.first_byte() | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain)
}

/// PUBLISH. The packet id is written at QoS 1 and 2 (and must then be non-zero).
pub fn encode_publish(p: &Publish<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let with_id = p.qos != QoS::AtMostOnce;
    if with_id && p.packet_id == 0 {
        return Err(EncodeError::ZeroPacketId);
    }
    let id_len = if with_id { 2 } else { 0 };
    let body_len = field_len(p.topic.len()) + id_len + p.payload.len();
    let first = publish_first_byte(p.dup, p.qos, p.retain);
    packet(first, body_len, out, |out| {
        put_field(p.topic.as_bytes(), out)?;
        if with_id {
            out.extend_from_slice(&p.packet_id.to_be_bytes());
        }
        out.extend_from_slice(p.payload);
        Ok(())
    })
}

/// A packet whose body is just a packet id: PUBACK, PUBREC, PUBREL,
/// PUBCOMP, UNSUBACK.
fn encode_id_packet(kind: PacketType, id: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::ZeroPacketId);
    }
    let [hi, lo] = id.to_be_bytes();
    out.extend_from_slice(&[kind.first_byte(), 2, hi, lo]);
    Ok(())
}

/// PUBACK for `packet_id`.
pub fn encode_puback(packet_id: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_id_packet(PacketType::PubAck, packet_id, out)
}

/// UNSUBACK for `packet_id`.
pub fn encode_unsuback(packet_id: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_id_packet(PacketType::UnsubAck, packet_id, out)
}

/// SUBSCRIBE for `filters` with their requested QoS.
pub fn encode_subscribe(
    packet_id: u16,
    filters: &[(&str, QoS)],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let body_len = 2 + filters
        .iter()
        .map(|(f, _)| field_len(f.len()) + 1)
        .sum::<usize>();
    subscribe_like(
        PacketType::Subscribe,
        packet_id,
        filters.len(),
        body_len,
        out,
        |out| {
            for (filter, qos) in filters {
                put_field(filter.as_bytes(), out)?;
                out.push(*qos as u8);
            }
            Ok(())
        },
    )
}

/// UNSUBSCRIBE for `filters`.
pub fn encode_unsubscribe(
    packet_id: u16,
    filters: &[&str],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let body_len = 2 + filters.iter().map(|f| field_len(f.len())).sum::<usize>();
    subscribe_like(
        PacketType::Unsubscribe,
        packet_id,
        filters.len(),
        body_len,
        out,
        |out| {
            for filter in filters {
                put_field(filter.as_bytes(), out)?;
            }
            Ok(())
        },
    )
}

/// A decoded SUBSCRIBE, UNSUBSCRIBE or SUBACK again: its list is kept as
/// the validated wire bytes, written back as they are.
fn raw_list(
    kind: PacketType,
    packet_id: u16,
    list: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::ZeroPacketId);
    }
    packet(kind.first_byte(), 2 + list.len(), out, |out| {
        out.extend_from_slice(&packet_id.to_be_bytes());
        out.extend_from_slice(list);
        Ok(())
    })
}

/// The shared frame of SUBSCRIBE and UNSUBSCRIBE: a non-zero id, at least
/// one filter.
fn subscribe_like(
    kind: PacketType,
    packet_id: u16,
    count: usize,
    body_len: usize,
    out: &mut Vec<u8>,
    filters: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::ZeroPacketId);
    }
    if count == 0 {
        return Err(EncodeError::NoTopicFilters);
    }
    packet(kind.first_byte(), body_len, out, |out| {
        out.extend_from_slice(&packet_id.to_be_bytes());
        filters(out)
    })
}

/// SUBACK with one code per filter of the SUBSCRIBE `packet_id`.
pub fn encode_suback(
    packet_id: u16,
    codes: &[SubAckCode],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::ZeroPacketId);
    }
    packet(
        PacketType::SubAck.first_byte(),
        2 + codes.len(),
        out,
        |out| {
            out.extend_from_slice(&packet_id.to_be_bytes());
            out.extend(codes.iter().map(|&c| c as u8));
            Ok(())
        },
    )
}

/// PINGREQ.
pub fn encode_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PacketType::PingReq.first_byte(), 0]);
}

/// PINGRESP.
pub fn encode_pingresp(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PacketType::PingResp.first_byte(), 0]);
}

/// DISCONNECT.
pub fn encode_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PacketType::Disconnect.first_byte(), 0]);
}

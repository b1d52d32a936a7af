//! A gateway push as a PUBLISH, encoded once for all its MQTT recipients.
//!
//! - **QoS 0** carries nothing per recipient: [`encode_publish_qos0`] (or
//!   [`shared_publish_qos0`], as reference-counted [`Bytes`]) runs once per
//!   push and every recipient is sent the same bytes.
//! - **QoS 1** differs per recipient only in its packet id, two bytes in the
//!   middle of the packet (and, on a redelivery, the DUP bit of the first
//!   byte). A [`Qos1Publish`] keeps the parts that are shared, encoded once:
//!   the *head* (first byte, remaining length, topic) and the payload
//!   ([`Bytes`], the push's own). A recipient's packet is
//!   `head ‖ packet_id (2 bytes, big endian) ‖ payload`: a sender may
//!   write the three parts as they are (e.g. as an iovec) or copy them with
//!   [`Qos1Publish::write`]. The remaining length in the head already
//!   counts the two id bytes, so no length changes per recipient.

use bytes::Bytes;

use super::codes::QoS;
use super::encode::{encode_publish, publish_first_byte};
use super::error::EncodeError;
use super::packet::Publish;
use super::wire::{MAX_REMAINING_LENGTH, encode_remaining_length, field_len, put_field};

/// Appends a QoS 0 PUBLISH (no DUP, no RETAIN) of `payload` to `topic`.
/// Its bytes are the same for every recipient.
pub fn encode_publish_qos0(
    topic: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_publish(
        &Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: 0,
            payload,
        },
        out,
    )
}

/// [`encode_publish_qos0`] into shared bytes, to hand to many recipients
/// without copying.
pub fn shared_publish_qos0(topic: &str, payload: &[u8]) -> Result<Bytes, EncodeError> {
    let mut out = Vec::new();
    encode_publish_qos0(topic, payload, &mut out)?;
    Ok(Bytes::from(out))
}

/// A QoS 1 PUBLISH (no RETAIN) encoded once, completed per recipient by
/// its packet id. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qos1Publish {
    head: Bytes,
    payload: Bytes,
}

impl Qos1Publish {
    /// Encodes the shared parts of a QoS 1 PUBLISH of `payload` to `topic`.
    pub fn new(topic: &str, payload: Bytes) -> Result<Qos1Publish, EncodeError> {
        let body_len = field_len(topic.len()) + 2 + payload.len();
        if body_len > MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge { len: body_len });
        }
        let mut head = Vec::with_capacity(5 + field_len(topic.len()));
        head.push(publish_first_byte(false, QoS::AtLeastOnce, false));
        encode_remaining_length(body_len, &mut head)?;
        put_field(topic.as_bytes(), &mut head)?;
        Ok(Qos1Publish {
            head: Bytes::from(head),
            payload,
        })
    }

    /// The bytes before the packet id, for a first delivery (DUP clear).
    #[must_use]
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// The bytes after the packet id.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The first byte for a delivery: DUP set on a redelivery (§3.3.1.1).
    /// The rest of the head is the same either way.
    #[must_use]
    pub fn first_byte(redelivery: bool) -> u8 {
        publish_first_byte(redelivery, QoS::AtLeastOnce, false)
    }

    /// The two bytes that go between head and payload.
    #[must_use]
    pub const fn packet_id_bytes(packet_id: u16) -> [u8; 2] {
        packet_id.to_be_bytes()
    }

    /// Length of every recipient's packet.
    #[must_use]
    pub fn packet_len(&self) -> usize {
        self.head.len() + 2 + self.payload.len()
    }

    /// Appends the whole packet for one recipient: the head (with DUP set
    /// if `redelivery`), `packet_id` (from
    /// [`MqttSession::start_qos1`](super::server::MqttSession::start_qos1),
    /// never 0), the payload.
    pub fn write(&self, packet_id: u16, redelivery: bool, out: &mut Vec<u8>) {
        out.reserve(self.packet_len());
        if let Some((_, rest)) = self.head.split_first() {
            out.push(Self::first_byte(redelivery));
            out.extend_from_slice(rest);
        }
        out.extend_from_slice(&Self::packet_id_bytes(packet_id));
        out.extend_from_slice(&self.payload);
    }
}

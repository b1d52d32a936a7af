//! MQTT 3.1.1 (OASIS standard, protocol level 4), sans-IO: a codec shared by
//! the gateway and the load harness, and the gateway-side session.
//!
//! - [`packet`]: the control packets as values; decoded ones borrow from the
//!   input (topics and ids as `&str`, payloads as `&[u8]`). [`codes`]: packet
//!   types, QoS levels, return codes.
//! - [`decode_packet`]: one packet from the front of a buffer, incrementally
//!   ([`Decoded::NeedMore`] with a byte count, a packet, or a
//!   [`DecodeError`]). Fixed-header flags (§2.2.2), the remaining length
//!   (at most 4 bytes, §2.2.3), UTF-8 strings (§1.5.3: well-formed, no
//!   U+0000), topic names and filters (§4.7) are checked, and a caller's
//!   `max_packet` is enforced from the fixed header, before the body is
//!   stored.
//! - [`encode`]: encoders for every packet into a caller's `Vec<u8>`.
//! - [`broadcast`]: a push encoded once for all recipients (QoS 0 whole;
//!   QoS 1 all but its two packet-id bytes).
//! - [`topic`]: topic name and filter rules, and filter matching.
//! - [`server`]: the gateway's session state machine over this codec.
//!
//! # Why this crate has its own codec
//!
//! The MQTT crates on crates.io were weighed against what a shard needs: a
//! decoder that borrows from the receive buffer and allocates nothing per
//! packet, reports how many bytes it still needs, enforces a size bound from
//! the header, validates every rule the spec makes fatal, and adds nothing
//! to the build on a 2-core box. `mqttbytes` is outdated (0.6.0 is its last
//! release) and, like the `mqttbytes` module inside the async client
//! `rumqttc` (0.25, which brings tokio, tokio-util and rustls with it),
//! decodes by splitting each packet off a `BytesMut` into owned values
//! (`Vec` filter lists, owned topics). `mqttrs` (0.4, 3.1.1 only) borrows from a slice, but its
//! `decode_slice` reports an incomplete packet as `Ok(None)` with no byte
//! count, and 0.4.0 pins `bytes` 0.5 and `heapless`. `mqtt-protocol`
//! (0.12) decodes from `std::io::Read` into owned values. The subset of
//! 3.1.1 the gateway speaks is small (about 1,500 lines with their docs,
//! topic rules included), fuzzed here, and needs only `bytes` and `thiserror`, which the
//! crate already uses.

pub mod broadcast;
pub mod codes;
mod decode;
pub mod encode;
mod error;
pub mod packet;
pub mod server;
pub mod topic;
pub mod wire;

pub use broadcast::{Qos1Publish, encode_publish_qos0, shared_publish_qos0};
pub use codes::{ConnectReturnCode, PacketType, QoS, SubAckCode};
pub use decode::{Decoded, FixedHeader, check_first_byte, decode_packet, peek_fixed_header};
pub use encode::encode_packet;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    ConnAck, Connect, LastWill, Packet, Publish, SubAck, Subscribe, SubscribeFilters, Unsubscribe,
    UnsubscribeFilters,
};
pub use topic::TopicError;

/// Default largest packet the gateway accepts from a client, fixed header
/// included: the same bound as a v1 frame.
pub const DEFAULT_MAX_PACKET: usize = 65_536;

#[cfg(test)]
mod tests;

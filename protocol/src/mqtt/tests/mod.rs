//! Codec tests: round trips of every packet, incremental feeding, the
//! spec's vectors and rules, and the encode-once PUBLISH.

mod broadcast;
mod round_trip;
mod rules;
mod vectors;

use super::{Decoded, Packet, decode_packet};

/// A bound large enough for every test packet.
const BIG: usize = 1 << 29;

/// Decodes exactly one packet spanning all of `buf`.
fn decode_whole(buf: &[u8]) -> Packet<'_> {
    match decode_packet(buf, BIG) {
        Ok(Decoded::Packet { packet, len }) => {
            assert_eq!(len, buf.len(), "one packet spans the buffer");
            packet
        }
        other => panic!("not one whole packet: {other:?}"),
    }
}

/// Builds a packet from a first byte and a body (remaining length computed).
fn raw(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    super::wire::encode_remaining_length(body.len(), &mut out).unwrap();
    out.extend_from_slice(body);
    out
}

/// A length-prefixed field, for hand-built bodies.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

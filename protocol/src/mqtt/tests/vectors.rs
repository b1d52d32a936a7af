//! Byte vectors from the spec: the remaining length at its boundaries
//! (§2.2.3, table 2.4), the size bound, and packets written out by hand.

use super::{BIG, decode_whole, raw};
use crate::mqtt::encode::{encode_connack, encode_connect, encode_publish};
use crate::mqtt::wire::{
    MAX_REMAINING_LENGTH, decode_remaining_length, encode_remaining_length, remaining_length_len,
};
use crate::mqtt::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, Decoded, EncodeError, Packet, Publish, QoS,
    decode_packet, peek_fixed_header,
};

#[test]
fn remaining_length_boundaries() {
    let table: [(usize, &[u8]); 10] = [
        (0, &[0x00]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xff, 0xff, 0x7f]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        (321, &[0xc1, 0x02]),
        (1, &[0x01]),
    ];
    for (n, bytes) in table {
        let mut out = Vec::new();
        encode_remaining_length(n, &mut out).unwrap();
        assert_eq!(out, bytes, "{n}");
        assert_eq!(remaining_length_len(n), bytes.len(), "{n}");
        assert_eq!(decode_remaining_length(bytes), Ok(Some((n, bytes.len()))));
        // Every proper prefix is incomplete, not wrong.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_remaining_length(&bytes[..cut]),
                Ok(None),
                "{n} cut {cut}"
            );
        }
    }
    assert_eq!(MAX_REMAINING_LENGTH, 268_435_455);
    let mut out = Vec::new();
    assert_eq!(
        encode_remaining_length(268_435_456, &mut out),
        Err(EncodeError::PacketTooLarge { len: 268_435_456 })
    );
    assert!(out.is_empty());
}

#[test]
fn a_fifth_length_byte_is_an_error() {
    let five = [0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        decode_remaining_length(&five),
        Err(DecodeError::BadRemainingLength)
    );
    // Known from the fourth byte: the fifth is never waited for.
    assert_eq!(
        decode_remaining_length(&five[..4]),
        Err(DecodeError::BadRemainingLength)
    );
    assert_eq!(
        decode_packet(&[0x30, 0x80, 0x80, 0x80, 0x80], BIG),
        Err(DecodeError::BadRemainingLength)
    );
    assert_eq!(
        decode_packet(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], BIG),
        Err(DecodeError::BadRemainingLength)
    );
}

#[test]
fn packets_at_the_length_boundaries_decode() {
    // PUBLISH QoS 0 to "t": body = 3 bytes of topic + payload.
    for body in [127usize, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let payload = vec![0xab; body - 3];
        let mut out = Vec::new();
        encode_publish(
            &Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "t",
                packet_id: 0,
                payload: &payload,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1 + remaining_length_len(body) + body);
        let Packet::Publish(p) = decode_whole(&out) else {
            panic!()
        };
        assert_eq!(p.payload.len(), body - 3);
    }
}

#[test]
fn the_size_bound_is_checked_from_the_header_alone() {
    // A header announcing 2 MiB, with no body: refused, never waited for.
    let header = [0x30, 0x80, 0x80, 0x80, 0x01];
    assert_eq!(
        decode_packet(&header, 65_536),
        Err(DecodeError::TooLarge {
            len: 5 + 2_097_152,
            max: 65_536
        })
    );
    // Exactly the bound is fine: 2 header bytes + 126 body bytes = 128.
    let at_bound = [0x30, 126];
    assert_eq!(decode_packet(&at_bound, 128), Ok(Decoded::NeedMore(126)));
    assert!(matches!(
        decode_packet(&[0x30, 127], 128),
        Err(DecodeError::TooLarge { len: 129, max: 128 })
    ));
    let header = peek_fixed_header(&at_bound, 128).unwrap().unwrap();
    assert_eq!((header.header_len, header.remaining_len), (2, 126));
    assert_eq!(peek_fixed_header(&[0x30], 128), Ok(None));
}

#[test]
fn connect_bytes_match_the_spec_layout() {
    // §3.1: name "MQTT", level 4, flags (clean session), keep-alive 30, id "c1".
    let mut out = Vec::new();
    encode_connect(
        &Connect {
            clean_session: true,
            keep_alive: 30,
            client_id: "c1",
            ..Connect::default()
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        [
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'c', b'1'
        ]
    );
}

#[test]
fn connack_and_small_packets_match_the_spec() {
    let mut out = Vec::new();
    encode_connack(
        ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        },
        &mut out,
    );
    // Session present is never sent with a refusal (§3.2.2.2).
    encode_connack(
        ConnAck {
            session_present: true,
            code: ConnectReturnCode::NotAuthorized,
        },
        &mut out,
    );
    assert_eq!(out, [0x20, 2, 1, 0, 0x20, 2, 0, 5]);
    assert_eq!(decode_whole(&[0xc0, 0]), Packet::PingReq);
    assert_eq!(decode_whole(&[0xd0, 0]), Packet::PingResp);
    assert_eq!(decode_whole(&[0xe0, 0]), Packet::Disconnect);
    assert_eq!(decode_whole(&[0x40, 2, 0, 5]), Packet::PubAck(5));
    assert_eq!(decode_whole(&[0x62, 2, 1, 0]), Packet::PubRel(256));
    assert_eq!(
        decode_whole(&[0xb0, 2, 0xff, 0xff]),
        Packet::UnsubAck(65535)
    );
}

#[test]
fn a_non_minimal_length_still_decodes() {
    // 3.1.1 does not require the shortest form: 0x80 0x00 is zero.
    assert_eq!(decode_whole(&[0xc0, 0x80, 0x00]), Packet::PingReq);
    assert_eq!(decode_whole(&raw(0xe0, &[])), Packet::Disconnect);
}

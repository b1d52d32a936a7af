//! The decoder's refusals: fixed-header flags, reserved types, lengths,
//! UTF-8, topic and wildcard rules, CONNECT/CONNACK/SUBSCRIBE details.

use super::{BIG, field, raw};
use crate::mqtt::encode::encode_puback;
use crate::mqtt::{DecodeError, PacketType, TopicError, decode_packet};

fn err(bytes: &[u8]) -> DecodeError {
    decode_packet(bytes, BIG).unwrap_err()
}

/// A PUBLISH QoS 0 body with `topic` as raw bytes.
fn publish_with_topic(topic: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend_from_slice(b"payload");
    raw(0x30, &body)
}

fn connect_body(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0, 60]);
    body.extend_from_slice(rest);
    body
}

#[test]
fn fixed_header_flags_must_be_the_required_ones() {
    for nibble in 1u8..=14 {
        let kind = PacketType::from_first_byte(nibble << 4).unwrap();
        let Some(required) = kind.required_flags() else {
            continue;
        };
        for flags in 0u8..16 {
            let first = (nibble << 4) | flags;
            let bytes = [first];
            let result = decode_packet(&bytes, BIG);
            if flags == required {
                assert!(result.is_ok(), "{kind:?} {flags:#b}");
            } else {
                assert_eq!(
                    result,
                    Err(DecodeError::BadFlags {
                        packet: kind,
                        flags
                    }),
                    "{kind:?} {flags:#b}"
                );
            }
        }
    }
    // PUBLISH: QoS 3 and DUP at QoS 0 are malformed (§3.3.1); the rest is fine.
    for bad in [0x36, 0x37, 0x3e, 0x3f, 0x38, 0x39] {
        assert!(
            matches!(err(&[bad]), DecodeError::BadFlags { .. }),
            "{bad:#x}"
        );
    }
    for good in [0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x3a, 0x3b, 0x3c, 0x3d] {
        assert!(decode_packet(&[good], BIG).is_ok(), "{good:#x}");
    }
}

#[test]
fn reserved_packet_types_are_refused_from_the_first_byte() {
    assert_eq!(err(&[0x00]), DecodeError::ReservedPacketType(0));
    assert_eq!(err(&[0xf0, 0]), DecodeError::ReservedPacketType(15));
}

#[test]
fn bodies_must_fit_their_fields_exactly() {
    assert_eq!(
        err(&[0x40, 1, 0]),
        DecodeError::Truncated(PacketType::PubAck)
    );
    assert_eq!(
        err(&[0x40, 3, 0, 1, 0]),
        DecodeError::TrailingBytes(PacketType::PubAck)
    );
    assert_eq!(
        err(&[0xc0, 1, 0]),
        DecodeError::TrailingBytes(PacketType::PingReq)
    );
    assert_eq!(
        err(&[0x40, 2, 0, 0]),
        DecodeError::ZeroPacketId(PacketType::PubAck)
    );
    // A string whose length runs past the body.
    assert_eq!(
        err(&raw(0x30, &[0, 9, b'a'])),
        DecodeError::Truncated(PacketType::Publish)
    );
    // QoS 1 without room for the packet id.
    assert_eq!(
        err(&raw(0x32, &field(b"t"))),
        DecodeError::Truncated(PacketType::Publish)
    );
    let mut ok = Vec::new();
    encode_puback(1, &mut ok).unwrap();
    assert!(decode_packet(&ok, BIG).is_ok());
}

#[test]
fn strings_must_be_well_formed_utf8_without_nul() {
    assert_eq!(
        err(&publish_with_topic(&[0xc3, 0x28])),
        DecodeError::BadUtf8
    );
    // Overlong encoding of '/', a surrogate, and a lone continuation byte.
    assert_eq!(
        err(&publish_with_topic(&[0xc0, 0xaf])),
        DecodeError::BadUtf8
    );
    assert_eq!(
        err(&publish_with_topic(&[0xed, 0xa0, 0x80])),
        DecodeError::BadUtf8
    );
    assert_eq!(
        err(&publish_with_topic(&[b'a', 0x80])),
        DecodeError::BadUtf8
    );
    assert_eq!(err(&publish_with_topic(b"a\0b")), DecodeError::NulCharacter);
    // Non-ASCII that is well formed is fine.
    assert!(decode_packet(&publish_with_topic("caf\u{e9}/\u{1f600}".as_bytes()), BIG).is_ok());
}

#[test]
fn publish_topics_have_no_wildcards_and_filters_place_them_right() {
    assert_eq!(
        err(&publish_with_topic(b"a/+")),
        DecodeError::Topic(TopicError::WildcardInName)
    );
    assert_eq!(
        err(&publish_with_topic(b"#")),
        DecodeError::Topic(TopicError::WildcardInName)
    );
    assert_eq!(
        err(&publish_with_topic(b"")),
        DecodeError::Topic(TopicError::Empty)
    );
    let subscribe = |filter: &[u8], options: u8| {
        let mut body = vec![0, 1];
        body.extend_from_slice(&field(filter));
        body.push(options);
        raw(0x82, &body)
    };
    assert!(decode_packet(&subscribe(b"a/+/#", 1), BIG).is_ok());
    assert_eq!(
        err(&subscribe(b"a#", 0)),
        DecodeError::Topic(TopicError::BadMultiLevelWildcard)
    );
    assert_eq!(
        err(&subscribe(b"a/#/b", 0)),
        DecodeError::Topic(TopicError::BadMultiLevelWildcard)
    );
    assert_eq!(
        err(&subscribe(b"a+/b", 0)),
        DecodeError::Topic(TopicError::BadSingleLevelWildcard)
    );
    assert_eq!(
        err(&subscribe(b"", 0)),
        DecodeError::Topic(TopicError::Empty)
    );
    assert_eq!(
        err(&subscribe(b"a", 3)),
        DecodeError::BadSubscribeOptions(3)
    );
    assert_eq!(
        err(&subscribe(b"a", 0x04)),
        DecodeError::BadSubscribeOptions(4)
    );
    // UNSUBSCRIBE filters follow the same rules.
    let mut body = vec![0, 1];
    body.extend_from_slice(&field(b"x/#y"));
    assert_eq!(
        err(&raw(0xa2, &body)),
        DecodeError::Topic(TopicError::BadMultiLevelWildcard)
    );
}

#[test]
fn subscribe_lists_are_never_empty_and_ids_never_zero() {
    assert_eq!(
        err(&raw(0x82, &[0, 1])),
        DecodeError::NoTopicFilters(PacketType::Subscribe)
    );
    assert_eq!(
        err(&raw(0xa2, &[0, 1])),
        DecodeError::NoTopicFilters(PacketType::Unsubscribe)
    );
    let mut body = vec![0, 0];
    body.extend_from_slice(&field(b"a"));
    body.push(0);
    assert_eq!(
        err(&raw(0x82, &body)),
        DecodeError::ZeroPacketId(PacketType::Subscribe)
    );
    // A filter missing its options byte.
    let mut body = vec![0, 1];
    body.extend_from_slice(&field(b"a"));
    assert_eq!(
        err(&raw(0x82, &body)),
        DecodeError::Truncated(PacketType::Subscribe)
    );
    // SUBACK: codes are 0, 1, 2 or 0x80, at least one.
    assert_eq!(
        err(&raw(0x90, &[0, 1, 3])),
        DecodeError::BadReturnCode {
            packet: PacketType::SubAck,
            code: 3
        }
    );
    assert_eq!(
        err(&raw(0x90, &[0, 1])),
        DecodeError::Truncated(PacketType::SubAck)
    );
}

#[test]
fn connect_protocol_name_level_and_flags() {
    let id = field(b"id");
    assert!(decode_packet(&raw(0x10, &connect_body(b"MQTT", 4, 0x02, &id)), BIG).is_ok());
    assert_eq!(
        err(&raw(0x10, &connect_body(b"MQTT", 5, 0x02, &id))),
        DecodeError::UnsupportedProtocolLevel(5)
    );
    assert_eq!(
        err(&raw(0x10, &connect_body(b"MQIsdp", 3, 0x02, &id))),
        DecodeError::UnsupportedProtocolLevel(3)
    );
    assert_eq!(
        err(&raw(0x10, &connect_body(b"MQTX", 4, 0x02, &id))),
        DecodeError::BadProtocolName
    );
    for flags in [
        0x03, // reserved bit
        0x1c, // will QoS 3
        0x08, // will QoS without will
        0x20, // will retain without will
        0x40, // password without user name
    ] {
        assert_eq!(
            err(&raw(0x10, &connect_body(b"MQTT", 4, flags, &id))),
            DecodeError::BadConnectFlags(flags),
            "{flags:#x}"
        );
    }
    // The will topic is a topic name.
    let mut rest = id.clone();
    rest.extend_from_slice(&field(b"w/+"));
    rest.extend_from_slice(&field(b"bye"));
    assert_eq!(
        err(&raw(0x10, &connect_body(b"MQTT", 4, 0x06, &rest))),
        DecodeError::Topic(TopicError::WildcardInName)
    );
    // A user name flag without the user name.
    assert_eq!(
        err(&raw(0x10, &connect_body(b"MQTT", 4, 0x82, &id))),
        DecodeError::Truncated(PacketType::Connect)
    );
}

#[test]
fn connack_flags_and_codes() {
    assert_eq!(err(&[0x20, 2, 2, 0]), DecodeError::BadConnAckFlags(2));
    // Session present with a refusal (found by the mqtt_decode fuzz target).
    assert_eq!(err(&[0x20, 2, 1, 1]), DecodeError::BadConnAckFlags(1));
    assert!(decode_packet(&[0x20, 2, 1, 0], BIG).is_ok());
    assert_eq!(
        err(&[0x20, 2, 0, 6]),
        DecodeError::BadReturnCode {
            packet: PacketType::ConnAck,
            code: 6
        }
    );
}

#[test]
fn every_error_has_a_label_and_a_message() {
    let errors = [
        err(&[0x00]),
        err(&[0x30, 0xff, 0xff, 0xff, 0xff]),
        err(&publish_with_topic(b"a\0")),
        err(&[0x20, 2, 2, 0]),
    ];
    for e in errors {
        assert!(!e.label().is_empty());
        assert!(!e.to_string().is_empty());
    }
}

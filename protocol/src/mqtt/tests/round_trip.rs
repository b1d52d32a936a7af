//! Every packet type: encode → decode gives the same value, decode →
//! encode gives the same bytes, and feeding a stream byte by byte decodes
//! the same packets as feeding it whole.

use super::{BIG, decode_whole};
use crate::mqtt::encode::{
    encode_connack, encode_connect, encode_disconnect, encode_pingreq, encode_pingresp,
    encode_puback, encode_publish, encode_suback, encode_subscribe, encode_unsuback,
    encode_unsubscribe,
};
use crate::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoded, LastWill, Packet, PacketType, Publish, QoS,
    SubAckCode, decode_packet, encode_packet,
};

/// One encoded packet of every type, with variations (flags, QoS, options).
fn every_packet() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut put = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        all.push(out);
    };
    put(&|o| {
        encode_connect(
            &Connect {
                clean_session: true,
                keep_alive: 30,
                client_id: "c1",
                ..Connect::default()
            },
            o,
        )
        .unwrap()
    });
    put(&|o| {
        encode_connect(
            &Connect {
                clean_session: false,
                keep_alive: 65535,
                client_id: "device-\u{e9}\u{1f600}",
                will: Some(LastWill {
                    topic: "status/dev",
                    payload: b"\x00gone",
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                username: Some("alice"),
                password: Some(b"eyJhbGciOi.token\xff"),
            },
            o,
        )
        .unwrap()
    });
    put(&|o| {
        encode_connect(
            &Connect {
                username: Some(""),
                will: Some(LastWill {
                    topic: "w",
                    payload: b"",
                    qos: QoS::ExactlyOnce,
                    retain: false,
                }),
                ..Connect::default()
            },
            o,
        )
        .unwrap()
    });
    for code in 0..=5 {
        let code = ConnectReturnCode::from_u8(code).unwrap();
        put(&|o| {
            encode_connack(
                ConnAck {
                    session_present: code == ConnectReturnCode::Accepted,
                    code,
                },
                o,
            )
        });
    }
    for (qos, id, dup, retain) in [
        (QoS::AtMostOnce, 0, false, false),
        (QoS::AtMostOnce, 0, false, true),
        (QoS::AtLeastOnce, 1, true, false),
        (QoS::ExactlyOnce, 65535, false, true),
    ] {
        put(&|o| {
            encode_publish(
                &Publish {
                    dup,
                    qos,
                    retain,
                    topic: "a/b/c",
                    packet_id: id,
                    payload: &[7; 300],
                },
                o,
            )
            .unwrap()
        });
    }
    put(&|o| {
        encode_publish(
            &Publish {
                topic: "t",
                ..publish_qos0()
            },
            o,
        )
        .unwrap()
    });
    put(&|o| encode_puback(9, o).unwrap());
    for kind in [PacketType::PubRec, PacketType::PubRel, PacketType::PubComp] {
        put(&|o| o.extend_from_slice(&[kind.first_byte(), 2, 0x12, 0x34]));
    }
    put(&|o| {
        encode_subscribe(
            10,
            &[
                ("a/+/b", QoS::AtMostOnce),
                ("#", QoS::AtLeastOnce),
                ("x/y", QoS::ExactlyOnce),
            ],
            o,
        )
        .unwrap()
    });
    put(&|o| {
        encode_suback(
            10,
            &[
                SubAckCode::GrantedQos0,
                SubAckCode::GrantedQos1,
                SubAckCode::GrantedQos2,
                SubAckCode::Failure,
            ],
            o,
        )
        .unwrap()
    });
    put(&|o| encode_unsubscribe(11, &["a/+/b", "sport/#"], o).unwrap());
    put(&|o| encode_unsuback(11, o).unwrap());
    put(&encode_pingreq);
    put(&encode_pingresp);
    put(&encode_disconnect);
    all
}

fn publish_qos0() -> Publish<'static> {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "",
        packet_id: 0,
        payload: b"",
    }
}

#[test]
fn every_packet_type_is_covered() {
    let mut seen: Vec<PacketType> = every_packet()
        .iter()
        .map(|b| decode_whole(b).packet_type())
        .collect();
    seen.sort_by_key(|t| *t as u8);
    seen.dedup();
    assert_eq!(seen.len(), 14, "{seen:?}");
}

#[test]
fn decode_then_encode_gives_the_same_bytes() {
    for bytes in every_packet() {
        let packet = decode_whole(&bytes);
        let mut again = Vec::new();
        encode_packet(&packet, &mut again).unwrap();
        assert_eq!(again, bytes, "{packet:?}");
        assert_eq!(decode_whole(&again), packet);
    }
}

#[test]
fn decoded_fields_are_the_encoded_ones() {
    let all = every_packet();
    let Packet::Connect(c) = decode_whole(&all[1]) else {
        panic!()
    };
    assert!(!c.clean_session);
    assert_eq!(c.keep_alive, 65535);
    assert_eq!(c.client_id, "device-\u{e9}\u{1f600}");
    let will = c.will.unwrap();
    assert_eq!(
        (will.topic, will.payload, will.qos, will.retain),
        ("status/dev", &b"\x00gone"[..], QoS::AtLeastOnce, true)
    );
    assert_eq!(c.username, Some("alice"));
    assert_eq!(c.password, Some(&b"eyJhbGciOi.token\xff"[..]));

    let Packet::Subscribe(s) = decode_whole(&all[all.len() - 7]) else {
        panic!()
    };
    assert_eq!(s.packet_id, 10);
    assert_eq!(s.filters.len(), 3);
    let filters: Vec<_> = s.filters.iter().collect();
    assert_eq!(
        filters,
        [
            ("a/+/b", QoS::AtMostOnce),
            ("#", QoS::AtLeastOnce),
            ("x/y", QoS::ExactlyOnce)
        ]
    );
    let Packet::SubAck(a) = decode_whole(&all[all.len() - 6]) else {
        panic!()
    };
    assert_eq!(a.len(), 4);
    assert_eq!(a.codes().last(), Some(SubAckCode::Failure));
    let Packet::Unsubscribe(u) = decode_whole(&all[all.len() - 5]) else {
        panic!()
    };
    assert_eq!(u.filters.iter().collect::<Vec<_>>(), ["a/+/b", "sport/#"]);
}

#[test]
fn publish_borrows_its_topic_and_payload_from_the_input() {
    let mut bytes = Vec::new();
    encode_publish(
        &Publish {
            qos: QoS::AtLeastOnce,
            packet_id: 3,
            topic: "room/1",
            payload: b"hello",
            ..publish_qos0()
        },
        &mut bytes,
    )
    .unwrap();
    let Packet::Publish(p) = decode_whole(&bytes) else {
        panic!()
    };
    let range = bytes.as_ptr_range();
    assert!(range.contains(&p.topic.as_ptr()));
    assert!(range.contains(&p.payload.as_ptr()));
    assert_eq!(
        (p.topic, p.payload, p.packet_id),
        ("room/1", &b"hello"[..], 3)
    );
}

/// Decodes a stream the way a connection sees it: bytes appended to a
/// buffer, whole packets taken off its front. Returns the packets (as
/// their debug form, owned) and the bytes left over.
fn feed(stream: &[u8], chunk: usize) -> (Vec<String>, usize) {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decode_packet(&buf, BIG).unwrap() {
                Decoded::Packet { packet, len } => {
                    got.push(format!("{packet:?}"));
                    buf.drain(..len);
                }
                Decoded::NeedMore(n) => {
                    assert!(n >= 1);
                    break;
                }
            }
        }
    }
    (got, buf.len())
}

#[test]
fn byte_at_a_time_equals_whole_buffer() {
    let stream: Vec<u8> = every_packet().concat();
    let whole = feed(&stream, stream.len());
    assert_eq!(whole.0.len(), every_packet().len());
    assert_eq!(whole.1, 0);
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(feed(&stream, chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn need_more_never_asks_past_the_packet() {
    for bytes in every_packet() {
        for cut in 0..bytes.len() {
            match decode_packet(&bytes[..cut], BIG).unwrap() {
                Decoded::NeedMore(n) => assert!(cut + n <= bytes.len(), "cut {cut} hint {n}"),
                Decoded::Packet { .. } => panic!("a prefix decoded: cut {cut} of {bytes:?}"),
            }
        }
    }
    // Once the fixed header is whole, the hint is exact.
    let mut bytes = Vec::new();
    encode_puback(1, &mut bytes).unwrap();
    assert_eq!(decode_packet(&bytes[..2], BIG), Ok(Decoded::NeedMore(2)));
    assert_eq!(decode_packet(&bytes[..1], BIG), Ok(Decoded::NeedMore(1)));
}

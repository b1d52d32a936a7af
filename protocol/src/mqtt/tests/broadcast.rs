//! Encode once: a QoS 0 PUBLISH is the same bytes for everyone; a QoS 1
//! PUBLISH differs per recipient only in its two packet-id bytes (and DUP).

use bytes::Bytes;

use super::decode_whole;
use crate::mqtt::encode::encode_publish;
use crate::mqtt::{Packet, Publish, QoS, Qos1Publish, encode_publish_qos0, shared_publish_qos0};

#[test]
fn qos0_broadcast_is_one_encoding() {
    let mut plain = Vec::new();
    encode_publish(
        &Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "all",
            packet_id: 0,
            payload: b"news",
        },
        &mut plain,
    )
    .unwrap();
    let mut once = Vec::new();
    encode_publish_qos0("all", b"news", &mut once).unwrap();
    assert_eq!(once, plain);
    assert_eq!(
        &shared_publish_qos0("all", b"news").unwrap()[..],
        &plain[..]
    );
}

#[test]
fn qos1_recipients_differ_only_in_the_packet_id() {
    let payload = Bytes::from(vec![9u8; 200]);
    let shared = Qos1Publish::new("u/alice", payload.clone()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    shared.write(1, false, &mut a);
    shared.write(0xbeef, false, &mut b);
    assert_eq!(a.len(), shared.packet_len());
    assert_eq!(b.len(), a.len());
    let differing: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    let id_at = shared.head().len();
    assert_eq!(differing, [id_at, id_at + 1]);
    // The parts, as a sender would gather them, are the packet.
    let gathered = [
        &shared.head()[..],
        &Qos1Publish::packet_id_bytes(0xbeef),
        &shared.payload()[..],
    ]
    .concat();
    assert_eq!(gathered, b);
    // And it is what the plain encoder writes.
    let mut plain = Vec::new();
    encode_publish(
        &Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "u/alice",
            packet_id: 0xbeef,
            payload: &payload,
        },
        &mut plain,
    )
    .unwrap();
    assert_eq!(b, plain);
    // The payload is the push's own bytes, not a copy.
    assert_eq!(shared.payload().as_ptr(), payload.as_ptr());
}

#[test]
fn a_redelivery_sets_dup_and_nothing_else() {
    let shared = Qos1Publish::new("t", Bytes::from_static(b"x")).unwrap();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    shared.write(7, false, &mut first);
    shared.write(7, true, &mut again);
    assert_eq!(first[0] | 0x08, again[0]);
    assert_eq!(first[1..], again[1..]);
    assert_eq!(Qos1Publish::first_byte(true), again[0]);
    let Packet::Publish(p) = decode_whole(&again) else {
        panic!()
    };
    assert!(p.dup);
    assert_eq!(
        (p.qos, p.packet_id, p.topic, p.payload),
        (QoS::AtLeastOnce, 7, "t", &b"x"[..])
    );
}

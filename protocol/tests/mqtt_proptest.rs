//! MQTT property tests: encode→decode round trips of PUBLISH and SUBSCRIBE
//! over generated topics and filters, chunked decoding equal to whole, and
//! arbitrary bytes never panicking the decoder or the session.

use proptest::prelude::*;
use protocol::mqtt::encode::{encode_connect, encode_publish, encode_subscribe};
use protocol::mqtt::server::{Event, MqttConfig, MqttSession, Output, Verdict};
use protocol::mqtt::topic::{check_topic_filter, check_topic_name, matches};
use protocol::mqtt::{Connect, Decoded, Packet, Publish, QoS, decode_packet};
use protocol::time::Millis;

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Topic names: levels of printable text without wildcards or NUL.
fn topic_name() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-zA-Z0-9 _.$é-]{0,6}", 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// Topic filters: levels that are text or `+`, perhaps ending in `#`.
fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_string()), "[a-z0-9]{1,4}"];
    (proptest::collection::vec(level, 0..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut f = levels.join("/");
        if hash || f.is_empty() {
            if !f.is_empty() {
                f.push('/');
            }
            f.push('#');
        }
        f
    })
}

proptest! {
    #[test]
    fn generated_topics_and_filters_are_valid(name in topic_name(), filter in topic_filter()) {
        prop_assert_eq!(check_topic_name(&name), Ok(()));
        prop_assert_eq!(check_topic_filter(&filter), Ok(()));
        // A name is a filter that matches itself.
        if !name.starts_with('$') {
            prop_assert!(matches(&name, &name));
            prop_assert!(matches("#", &name));
        }
    }

    #[test]
    fn publish_round_trips(
        topic in topic_name(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        qos in qos(),
        packet_id in 1u16..,
        dup in any::<bool>(),
        retain in any::<bool>(),
    ) {
        let p = Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: &topic,
            packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
            payload: &payload,
        };
        let mut out = Vec::new();
        encode_publish(&p, &mut out).unwrap();
        match decode_packet(&out, usize::MAX) {
            Ok(Decoded::Packet { packet: Packet::Publish(q), len }) => {
                prop_assert_eq!(len, out.len());
                prop_assert_eq!(q, p);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn subscribe_round_trips(
        filters in proptest::collection::vec((topic_filter(), qos()), 1..6),
        packet_id in 1u16..,
    ) {
        let wanted: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        let mut out = Vec::new();
        encode_subscribe(packet_id, &wanted, &mut out).unwrap();
        match decode_packet(&out, usize::MAX) {
            Ok(Decoded::Packet { packet: Packet::Subscribe(s), .. }) => {
                prop_assert_eq!(s.packet_id, packet_id);
                prop_assert_eq!(s.filters.iter().collect::<Vec<_>>(), wanted);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn decoding_in_chunks_equals_decoding_whole(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..16,
    ) {
        let whole = decode_stream(&data, data.len().max(1));
        prop_assert_eq!(decode_stream(&data, chunk), whole);
    }

    #[test]
    fn the_session_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        accept in any::<bool>(),
    ) {
        let cfg = MqttConfig { max_packet: 128, ..MqttConfig::default() };
        let mut s = MqttSession::new(Millis(0), &cfg);
        let mut out = Output::new();
        let mut connect = Vec::new();
        encode_connect(&Connect { client_id: "p", clean_session: true, ..Connect::default() }, &mut connect).unwrap();
        s.handle_input(Millis(0), &connect, &cfg, &mut out);
        let verdict = if accept {
            Verdict::Accept { session_present: false }
        } else {
            Verdict::NotAuthorized
        };
        s.verdict(Millis(0), &cfg, verdict, &mut out);
        for (i, c) in chunks.iter().enumerate() {
            let now = Millis(i as u64 * 1_000);
            s.handle_input(now, c, &cfg, &mut out);
            s.handle_timeout(now, &cfg, &mut out);
            prop_assert!(s.pending_input() <= cfg.max_packet);
        }
        let closes = out.events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        prop_assert!(closes <= 1);
        prop_assert_eq!(closes == 1, s.is_closed());
    }
}

/// The packets (debug form) and the final error or leftover length, feeding
/// `data` in `chunk`-sized pieces to a growing buffer.
fn decode_stream(data: &[u8], chunk: usize) -> (Vec<String>, String) {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decode_packet(&buf, 1024) {
                Ok(Decoded::Packet { packet, len }) => {
                    got.push(format!("{packet:?}"));
                    buf.drain(..len);
                }
                Ok(Decoded::NeedMore(_)) => break,
                Err(e) => return (got, format!("error {e:?}")),
            }
        }
    }
    (got, format!("{} left", buf.len()))
}

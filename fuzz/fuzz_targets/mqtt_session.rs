//! Fuzzes the gateway's MQTT session state machine with client bytes in
//! arbitrary chunks, the caller's decisions and simulated time.
//!
//! Input layout: byte 0 is a control byte (bit 0: prepend a valid CONNECT;
//! bit 1: refuse instead of accept; bit 2: small limits; bits 3..7: chunk
//! size); the rest is the wire data. The session must close at most once,
//! last; send only whole, valid server packets; keep its buffers within
//! bounds; and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::mqtt::encode::encode_connect;
use protocol::mqtt::server::{Event, MqttConfig, MqttSession, Output, Verdict};
use protocol::mqtt::{Connect, Decoded, Packet, SubAckCode, decode_packet};
use protocol::time::Millis;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let cfg = if ctl & 4 == 0 {
        MqttConfig::default()
    } else {
        MqttConfig {
            max_packet: 128,
            max_filters: 2,
            max_topic_len: 8,
            max_in_flight: 2,
            max_uplinks_in_flight: 2,
            ..MqttConfig::default()
        }
    };
    let chunk = usize::from(ctl >> 3) + 1; // 1..=32
    let verdict = if ctl & 2 == 0 {
        Verdict::Accept { session_present: false }
    } else {
        Verdict::BadCredentials
    };
    let mut stream = Vec::new();
    if ctl & 1 != 0 {
        let connect = Connect {
            clean_session: true,
            keep_alive: 10,
            client_id: "fuzz",
            ..Connect::default()
        };
        encode_connect(&connect, &mut stream).expect("a small CONNECT encodes");
    }
    stream.extend_from_slice(data);

    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    let mut closed = 0;
    let mut push_id = 0u64;
    for (i, piece) in stream.chunks(chunk).enumerate() {
        let now = Millis(i as u64 * 700);
        s.handle_input(now, piece, &cfg, &mut out);
        // Act on the events as a gateway would.
        let mut subacks = Vec::new();
        let mut pubacks = Vec::new();
        for e in &out.events {
            match e {
                Event::Subscribe { packet_id, filters } => {
                    subacks.push((*packet_id, vec![SubAckCode::GrantedQos1; filters.len()]));
                }
                Event::Uplink(u) if u.packet_id != 0 => pubacks.push(u.packet_id),
                _ => {}
            }
        }
        if matches!(out.events.last(), Some(Event::Authenticate(_))) {
            s.verdict(now, &cfg, verdict, &mut out);
        }
        for (id, codes) in subacks {
            s.suback(id, &codes, &mut out).expect("a decoded packet id is not 0");
        }
        for id in pubacks {
            s.puback(id, &mut out);
        }
        push_id += 1;
        if let Ok(packet_id) = s.start_qos1(push_id, &cfg) {
            assert_ne!(packet_id, 0);
        }
        assert!(s.in_flight_len() <= usize::from(cfg.max_in_flight));
        s.handle_timeout(now, &cfg, &mut out);
        assert!(s.pending_input() <= cfg.max_pending_input());

        // Closed at most once, and last.
        let closes = out.events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        if closes == 1 {
            assert!(matches!(out.events.last(), Some(Event::Closed(_))));
        }
        closed += closes;
        // What the session sends is whole server packets.
        let mut sent = &out.transmit[..];
        while !sent.is_empty() {
            match decode_packet(sent, usize::MAX) {
                Ok(Decoded::Packet { packet, len }) => {
                    assert!(matches!(
                        packet,
                        Packet::ConnAck(_)
                            | Packet::SubAck(_)
                            | Packet::UnsubAck(_)
                            | Packet::PubAck(_)
                            | Packet::PingResp
                    ));
                    sent = &sent[len..];
                }
                other => panic!("session output is not whole packets: {other:?}"),
            }
        }
        out.clear();
    }
    assert!(closed <= 1, "closed {closed} times");
    assert_eq!(closed == 1, s.is_closed());
});

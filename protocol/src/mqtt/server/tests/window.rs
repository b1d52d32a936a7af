//! The outbound QoS 1 window: packet ids, PUBACK → Acked, the bound, the
//! wrap from 65535 to 1 around ids still in flight, unknown PUBACKs.

use super::*;
use crate::mqtt::server::{InFlight, StartError};

fn puback(id: u16) -> [u8; 4] {
    let [hi, lo] = id.to_be_bytes();
    [0x40, 2, hi, lo]
}

#[test]
fn packet_ids_map_back_to_push_ids() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(0));
    assert_eq!(s.start_qos1(1000, &cfg), Ok(1));
    assert_eq!(s.start_qos1(1001, &cfg), Ok(2));
    assert_eq!(s.in_flight_len(), 2);
    s.handle_input(Millis(1), &puback(2), &cfg, &mut out);
    assert_eq!(
        out.events,
        [Event::Acked {
            packet_id: 2,
            push_id: 1001
        }]
    );
    assert_eq!(
        s.in_flight().copied().collect::<Vec<_>>(),
        [InFlight {
            packet_id: 1,
            push_id: 1000
        }]
    );
    // The same PUBACK again: nothing in flight under that id any more.
    out.clear();
    s.handle_input(Millis(2), &puback(2), &cfg, &mut out);
    assert!(out.events.is_empty());
    assert_eq!(out.unknown_acks, 1);
}

#[test]
fn an_unknown_puback_is_counted_and_ignored() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(0));
    s.handle_input(Millis(1), &puback(77), &cfg, &mut out);
    assert!(out.is_empty());
    assert_eq!(out.unknown_acks, 1);
    assert!(!s.is_closed());
    // It still counts as liveness.
    assert_eq!(s.deadline(&cfg), Some(Millis(1 + 45_000)));
}

#[test]
fn the_window_is_bounded_and_frees_on_ack() {
    let cfg = MqttConfig {
        max_in_flight: 3,
        ..cfg()
    };
    let (mut s, mut out) = established(Millis(0));
    for push in 0..3 {
        assert!(s.start_qos1(push, &cfg).is_ok());
    }
    assert_eq!(s.start_qos1(3, &cfg), Err(StartError::WindowFull));
    s.handle_input(Millis(1), &puback(2), &cfg, &mut out);
    assert_eq!(s.start_qos1(3, &cfg), Ok(4));
    assert_eq!(s.start_qos1(4, &cfg), Err(StartError::WindowFull));
}

#[test]
fn packet_ids_wrap_to_1_and_skip_ids_in_flight() {
    let cfg = cfg();
    let (mut s, mut out) = established(Millis(0));
    // Ids 1 and 2 stay in flight for the whole test.
    assert_eq!(s.start_qos1(1, &cfg), Ok(1));
    assert_eq!(s.start_qos1(2, &cfg), Ok(2));
    // Cycle through 3..=65535, each acknowledged at once.
    for expected in 3..=u16::MAX {
        let id = s.start_qos1(u64::from(expected), &cfg).unwrap();
        assert_eq!(id, expected);
        s.handle_input(Millis(1), &puback(id), &cfg, &mut out);
        out.clear();
    }
    // Past 65535: 1 and 2 are taken, so 3; never 0.
    assert_eq!(s.start_qos1(70_000, &cfg), Ok(3));
    assert_eq!(s.in_flight_len(), 3);
    s.handle_input(Millis(2), &puback(1), &cfg, &mut out);
    assert_eq!(
        out.events,
        [Event::Acked {
            packet_id: 1,
            push_id: 1
        }]
    );
}

#[test]
fn no_delivery_before_the_connack_or_after_the_close() {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    assert_eq!(s.start_qos1(1, &cfg), Err(StartError::NotEstablished));
    let (mut s, mut out) = established(Millis(0));
    assert_eq!(s.start_qos1(5, &cfg), Ok(1));
    s.connection_lost(&mut out);
    assert_eq!(s.start_qos1(6, &cfg), Err(StartError::NotEstablished));
    // What was never acknowledged is still listed, for redelivery elsewhere.
    assert_eq!(s.in_flight().map(|e| e.push_id).collect::<Vec<_>>(), [5]);
}

#[test]
fn a_push_sent_again_keeps_its_packet_id_and_one_place_in_the_window() {
    let cfg = MqttConfig {
        max_in_flight: 2,
        ..cfg()
    };
    let (mut s, mut out) = established(Millis(0));
    assert_eq!(s.start_qos1(500, &cfg), Ok(1));
    assert_eq!(s.start_qos1(501, &cfg), Ok(2));
    // 500 again (its Ack timed out): the same id, the window still full.
    assert_eq!(s.start_qos1(500, &cfg), Ok(1));
    assert_eq!(s.in_flight_len(), 2);
    assert_eq!(s.start_qos1(502, &cfg), Err(StartError::WindowFull));
    s.handle_input(Millis(1), &puback(1), &cfg, &mut out);
    assert_eq!(
        out.events,
        [Event::Acked {
            packet_id: 1,
            push_id: 500
        }]
    );
    assert_eq!(s.start_qos1(502, &cfg), Ok(3));
}

//! Bytes captured from the Debian mosquitto-clients 2.x (`-V mqttv311`)
//! against a stub server, fed to a session: what stock clients send is
//! decoded and mapped as the gateway expects.

use super::*;

/// `mosquitto_pub -i dev1 -u alice -P token -t a/b -m hello -q 1
/// --will-topic status/dev1 --will-payload gone -k 30`: CONNECT, PUBLISH
/// QoS 1 (after CONNACK), DISCONNECT (after PUBACK).
const MOSQUITTO_PUB: &str = "103100044d51545404c6001e000464657631000b7374617475732f646576310004676f6e650005616c6963650005746f6b656e320c0003612f62000168656c6c6fe000";

/// `mosquitto_sub -i dev2 -c -u bob -P tok2 -t 'a/+/#' -t x -q 1 -k 60`:
/// CONNECT (persistent session), SUBSCRIBE with a wildcard filter, DISCONNECT.
const MOSQUITTO_SUB: &str = "101b00044d51545404c0003c0004646576320003626f620004746f6b32820e00010005612f2b2f230100017801e000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs the captured bytes through a session that accepts the CONNECT.
fn run(capture: &str) -> Output {
    let cfg = cfg();
    let mut s = MqttSession::new(Millis(0), &cfg);
    let mut out = Output::new();
    s.handle_input(Millis(1), &unhex(capture), &cfg, &mut out);
    s.verdict(
        Millis(1),
        &cfg,
        Verdict::Accept {
            session_present: false,
        },
        &mut out,
    );
    out
}

#[test]
fn mosquitto_pub_connects_with_a_token_and_publishes_at_qos1() {
    let out = run(MOSQUITTO_PUB);
    let [
        Event::Authenticate(req),
        Event::Uplink(up),
        Event::Closed(CloseReason::ClientDisconnect),
    ] = out.events.as_slice()
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(req.client_id.as_deref(), Some("dev1"));
    assert_eq!(req.username.as_deref(), Some("alice"));
    assert_eq!(req.password.as_deref(), Some(&b"token"[..]));
    assert!(req.clean_session);
    assert_eq!(req.keep_alive_s, 30);
    let will = req.will.as_ref().unwrap();
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("status/dev1", &b"gone"[..])
    );
    assert_eq!((up.topic.as_str(), &up.payload[..]), ("a/b", &b"hello"[..]));
    assert_eq!((up.qos, up.packet_id), (QoS::AtLeastOnce, 1));
    assert_eq!(
        sent(&out.transmit).len(),
        1,
        "CONNACK only: the PUBACK waits for the backend"
    );
}

#[test]
fn mosquitto_sub_subscribes_with_wildcards_to_a_persistent_session() {
    let out = run(MOSQUITTO_SUB);
    let [
        Event::Authenticate(req),
        Event::Subscribe { packet_id, filters },
        Event::Closed(CloseReason::ClientDisconnect),
    ] = out.events.as_slice()
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(req.client_id.as_deref(), Some("dev2"));
    assert!(
        !req.clean_session,
        "-c: a persistent session keyed by client id"
    );
    assert_eq!(req.password.as_deref(), Some(&b"tok2"[..]));
    assert_eq!(*packet_id, 1);
    assert_eq!(
        filters,
        &[
            ("a/+/#".to_string(), QoS::AtLeastOnce),
            ("x".to_string(), QoS::AtLeastOnce)
        ]
    );
}

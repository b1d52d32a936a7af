//! The MQTT listener against paho-mqtt (PyPI, installed into target/pyenv
//! by `make deps`), driven by tests/py/mqtt_peer.py: QoS 1 subscriptions
//! with wildcards, a persistent session (clean session 0) that keeps its
//! subscriptions across a disconnect and gets what was pushed while it
//! was away (the topic push kept by the parked session, the durable push
//! from the inbox), a clean session that discards it, and a QoS 1
//! PUBLISH acknowledged once the backend took it.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e_tests::{Gateway, LineChild, PyBackend, http, test_python, test_script, token};
use serde_json::{Value, json};

fn paho(addr: SocketAddr, client_id: &str, user: &str, clean: bool) -> LineChild {
    let mut cmd = Command::new(test_python());
    cmd.arg(test_script("mqtt_peer.py")).args([
        "127.0.0.1",
        &addr.port().to_string(),
        client_id,
        "",
        &token(user),
        if clean { "1" } else { "0" },
    ]);
    LineChild::spawn(cmd)
}

/// The next JSON line the peer prints that has `field`.
fn next_with(peer: &LineChild, field: &str) -> Value {
    let line =
        peer.line_where(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.get(field).is_some()));
    serde_json::from_str(&line).unwrap()
}

fn push(gw: &Gateway, body: &Value) -> Value {
    let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).expect("push");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_persistent_session_keeps_its_subscriptions_and_gets_what_was_pushed_while_away() {
    let gw = Gateway::start(2, "[listen]\nmqtt = \"127.0.0.1:0\"\n");
    let mqtt = gw.mqtt.unwrap();

    let mut peer = paho(mqtt, "paho-1", "p-alice", false);
    let connack = next_with(&peer, "connack");
    assert_eq!(connack, json!({"connack": 0, "session_present": false}));
    peer.say("sub alerts/# 1 $gateway/user/p-alice 1");
    assert_eq!(next_with(&peer, "suback"), json!({"suback": [1, 1]}));
    std::thread::sleep(Duration::from_millis(200));
    push(
        &gw,
        &json!({"to": {"topic": "alerts/fire"}, "payload": "one"}),
    );
    let m = next_with(&peer, "topic");
    assert_eq!(
        (m["topic"].as_str(), m["payload"].as_str()),
        (Some("alerts/fire"), Some("one"))
    );
    assert_eq!(m["qos"], 0, "a plain push is QoS 0");
    peer.say("quit");
    assert!(peer.wait_exit(Duration::from_secs(5)).is_some());
    assert!(gw.wait_total_until("parked_sessions", Duration::from_secs(5), |v| v == 1) == 1);

    // Away: a durable push waits in the inbox; a plain topic push is kept
    // by the parked session.
    let stored = push(
        &gw,
        &json!({"to": {"user": "p-alice"}, "payload": "while away", "ack": true}),
    );
    assert_eq!(stored["stored"], true, "{stored}");
    push(
        &gw,
        &json!({"to": {"topic": "alerts/kept"}, "payload": "missed"}),
    );

    let mut peer = paho(mqtt, "paho-1", "p-alice", false);
    assert_eq!(
        next_with(&peer, "connack"),
        json!({"connack": 0, "session_present": true})
    );
    // What the parked session kept comes first, then the inbox.
    let m = next_with(&peer, "topic");
    assert_eq!(
        (m["topic"].as_str(), m["payload"].as_str()),
        (Some("alerts/kept"), Some("missed"))
    );
    assert_eq!(m["qos"], 0);
    let m = next_with(&peer, "topic");
    assert_eq!(m["topic"], "$gateway/user/p-alice");
    assert_eq!(
        (m["payload"].as_str(), m["qos"].as_u64()),
        (Some("while away"), Some(1))
    );
    assert_eq!(gw.wait_total("acks", 1), 1, "paho's PUBACK is the Ack");
    assert_eq!(gw.wait_total("resumes", 1), 1);
    // The subscription came back with the session: no SUBSCRIBE this time.
    std::thread::sleep(Duration::from_millis(200));
    push(
        &gw,
        &json!({"to": {"topic": "alerts/flood"}, "payload": "two"}),
    );
    let m = next_with(&peer, "topic");
    assert_eq!(
        (m["topic"].as_str(), m["payload"].as_str()),
        (Some("alerts/flood"), Some("two"))
    );
    peer.say("quit");
    assert!(peer.wait_exit(Duration::from_secs(5)).is_some());

    // Clean session 1 discards it: no session present, no subscription.
    let mut peer = paho(mqtt, "paho-1", "p-alice", true);
    assert_eq!(
        next_with(&peer, "connack"),
        json!({"connack": 0, "session_present": false})
    );
    std::thread::sleep(Duration::from_millis(200));
    push(
        &gw,
        &json!({"to": {"topic": "alerts/none"}, "payload": "not for you"}),
    );
    push(
        &gw,
        &json!({"to": {"user": "p-alice"}, "payload": "direct"}),
    );
    let m = next_with(&peer, "topic");
    assert_eq!(
        m["payload"], "direct",
        "the topic push did not arrive first: {m}"
    );
    assert_eq!(gw.wait_total("parked_sessions", 0), 0);
    peer.say("quit");
    assert!(peer.wait_exit(Duration::from_secs(5)).is_some());
    // Another user's client with the same id reaches nothing of hers.
    let peer = paho(mqtt, "paho-1", "p-mallory", false);
    assert_eq!(
        next_with(&peer, "connack"),
        json!({"connack": 0, "session_present": false})
    );
}

#[test]
fn a_qos_1_publish_from_paho_is_acked_once_the_backend_took_it() {
    let backend = PyBackend::start();
    let gw = Gateway::start(
        1,
        &format!(
            "[listen]\nmqtt = \"127.0.0.1:0\"\n\n[uplink]\ndefault_url = \"{}\"\n",
            backend.url("/uplinks")
        ),
    );
    let mut peer = paho(gw.mqtt.unwrap(), "paho-pub", "p-bob", true);
    assert_eq!(next_with(&peer, "connack")["connack"], 0);
    peer.say("pub devices/d1/state 1 on and ready");
    assert_eq!(next_with(&peer, "puback"), json!({"puback": 1}));
    let uplinks = backend.wait_uplink(Duration::from_secs(5), |u| u["body"] == "on and ready");
    let u = uplinks
        .iter()
        .find(|u| u["body"] == "on and ready")
        .unwrap();
    assert_eq!(
        (u["user"].as_str(), u["route"].as_str()),
        (Some("p-bob"), Some("devices/d1/state"))
    );
}

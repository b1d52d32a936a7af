//! The MQTT listener (`[listen] mqtt`) against stock clients nobody here
//! wrote: `mosquitto_sub` and `mosquitto_pub` (Debian's mosquitto-clients,
//! installed by `make deps`), and raw bytes for what a client must not
//! send. The real gateway, real sockets, a real http.server backend.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e_tests::{Gateway, LineChild, PyBackend, http, token};
use serde_json::{Value, json};

const MQTT_CONFIG: &str = "[listen]\nmqtt = \"127.0.0.1:0\"\n";

fn start(shards: usize, extra: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(shards, &format!("{MQTT_CONFIG}{extra}"));
    let mqtt = gw.mqtt.expect("the ready file names the mqtt listener");
    (gw, mqtt)
}

fn push(gw: &Gateway, body: &Value) -> Value {
    let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).expect("push");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `mosquitto_sub` on `filters` (at `qos`), printing `topic payload`
/// lines, with its protocol trace (`-d`) on the same stdout; returned once
/// its SUBACK arrived.
fn subscriber(addr: SocketAddr, password: &str, filters: &[&str], qos: u8) -> LineChild {
    // Line-buffered: its trace is printf'ed, not flushed per line.
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["-u", "", "-P", password, "-q", &qos.to_string(), "-v", "-d"])
        .args(["-W", "60"]);
    for f in filters {
        cmd.args(["-t", f]);
    }
    let sub = LineChild::spawn(cmd);
    sub.line_where(|l| l.contains("received SUBACK"));
    sub
}

/// `mosquitto_pub` of one message, to its end; the user name `apps`
/// names the session's apps.
fn publish(
    addr: SocketAddr,
    (apps, password): (&str, &str),
    topic: &str,
    qos: u8,
    message: &str,
) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["-u", apps, "-P", password, "-q", &qos.to_string()])
        .args(["-t", topic, "-m", message, "-d"])
        .output()
        .expect("run mosquitto_pub")
}

/// A message line of `mosquitto_sub -v`, skipping its trace.
fn message(sub: &LineChild) -> String {
    sub.line_where(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed "))
}

#[test]
fn stock_clients_subscribe_with_wildcards_and_get_every_kind_of_push() {
    let (gw, mqtt) = start(2, "");
    let sub = subscriber(
        mqtt,
        &token("m-alice"),
        &["news", "sport/+/live", "weather/#"],
        1,
    );
    // Subscriptions reach the topic owners across shards.
    std::thread::sleep(Duration::from_millis(200));

    push(&gw, &json!({"to": {"topic": "news"}, "payload": "exact"}));
    assert_eq!(message(&sub), "news exact");
    push(
        &gw,
        &json!({"to": {"topic": "sport/tennis/live"}, "payload": "plus"}),
    );
    assert_eq!(message(&sub), "sport/tennis/live plus");
    push(
        &gw,
        &json!({"to": {"topic": "weather"}, "payload": "hash-parent"}),
    );
    assert_eq!(message(&sub), "weather hash-parent");
    push(
        &gw,
        &json!({"to": {"topic": "weather/eu/paris"}, "payload": "hash"}),
    );
    assert_eq!(message(&sub), "weather/eu/paris hash");
    // Not matching: nothing arrives for it, and the next push comes first.
    push(
        &gw,
        &json!({"to": {"topic": "sport/tennis"}, "payload": "no"}),
    );
    push(
        &gw,
        &json!({"to": {"user": "m-alice"}, "payload": "direct"}),
    );
    assert_eq!(message(&sub), "$gateway/user/m-alice direct");
    push(&gw, &json!({"to": {"all": true}, "payload": "everyone"}));
    assert_eq!(message(&sub), "$gateway/all everyone");

    // A durable push goes at QoS 1; mosquitto_sub's PUBACK empties the inbox.
    let answer = push(
        &gw,
        &json!({"to": {"user": "m-alice"}, "payload": "kept", "ack": true}),
    );
    assert_eq!(answer["stored"], true, "{answer}");
    let trace = sub.line_where(|l| l.contains("received PUBLISH") && l.contains("$gateway/user"));
    assert!(trace.contains("q1"), "QoS 1: {trace}");
    assert_eq!(message(&sub), "$gateway/user/m-alice kept");
    assert_eq!(gw.wait_total("acks", 1), 1, "the PUBACK is the Ack");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http(gw.control, "GET", "/v1/users/m-alice", "").unwrap();
        let user: Value = serde_json::from_str(&body).unwrap();
        if user["pending"] == 0 {
            assert_eq!(user["sessions"][0]["device"], "mqtt", "{user}");
            break;
        }
        assert!(Instant::now() < deadline, "the inbox kept the push: {user}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gw.total("mqtt_protocol_errors"), 0);
}

#[test]
fn a_bad_expired_or_missing_token_or_a_disallowed_app_is_refused_with_connack_4() {
    let (gw, mqtt) = start(1, "");
    let expired = e2e_tests::token_with(protocol::auth::Claims {
        sub: "late".into(),
        exp: Some(1),
        ..Default::default()
    });
    let chat_only = e2e_tests::token_with(protocol::auth::Claims {
        sub: "chatty".into(),
        apps: Some(vec!["chat".into()]),
        ..Default::default()
    });
    // (password, user name = the apps asked for)
    let refused = [
        ("not-a-token", ""),
        (expired.as_str(), ""),
        ("", "x"),
        (chat_only.as_str(), "news"),
    ];
    for (password, apps) in refused {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string()])
            .args(["-u", apps, "-P", password, "-t", "t", "-d", "-W", "5"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("received CONNACK (4)"),
            "{password:?}: {text}"
        );
        assert!(!out.status.success(), "mosquitto_sub gives up: {text}");
    }
    assert_eq!(gw.wait_total("mqtt_refused", 4), 4);
    assert_eq!(gw.total("sessions"), 0);
    // The same token with the app it allows is accepted.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string()])
        .args(["-u", "chat", "-P", &chat_only, "-t", "t", "-d", "-W", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("received CONNACK (0)"), "{text}");
}

#[test]
fn a_client_publish_reaches_the_backend_and_qos_1_is_acked_after_its_2xx() {
    let backend = PyBackend::start();
    let config = format!(
        "[uplink]\ndefault_url = \"{}\"\n\n[[uplink.route]]\napp = \"iot\"\nroute = \"broken/route\"\nurl = \"{}\"\n\n\
         [[mqtt.route]]\nprefix = \"sensors/door/\"\nroute = \"security\"\n",
        backend.url("/uplinks"),
        backend.url("/fail")
    );
    let (gw, mqtt) = start(2, &config);
    let tok = token("m-pub");
    let out = publish(mqtt, ("", &tok), "sensors/t1", 1, "21.5");
    let trace = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{trace}");
    assert!(trace.contains("received PUBACK"), "{trace}");
    let uplinks = backend.wait_uplink(Duration::from_secs(5), |u| u["body"] == "21.5");
    let u = uplinks.iter().find(|u| u["body"] == "21.5").unwrap();
    assert_eq!(u["user"], "m-pub");
    assert_eq!(u["route"], "sensors/t1", "the route is the topic name");

    let out = publish(mqtt, ("", &tok), "sensors/t2", 0, "at-most-once");
    assert!(out.status.success());
    backend.wait_uplink(Duration::from_secs(5), |u| u["body"] == "at-most-once");

    // A [[mqtt.route]] prefix names the route instead of the topic.
    let out = publish(mqtt, ("", &tok), "sensors/door/front", 1, "opened");
    assert!(out.status.success());
    let uplinks = backend.wait_uplink(Duration::from_secs(5), |u| u["body"] == "opened");
    assert!(
        uplinks
            .iter()
            .any(|u| u["body"] == "opened" && u["route"] == "security"),
        "{uplinks:?}"
    );

    // The user name's first app picks the route table's entries.
    let out = publish(mqtt, ("iot", &tok), "sensors/t3", 1, "with-app");
    assert!(out.status.success());
    let uplinks = backend.wait_uplink(Duration::from_secs(5), |u| u["body"] == "with-app");
    assert!(
        uplinks
            .iter()
            .any(|u| u["body"] == "with-app" && u["app"] == "iot"),
        "{uplinks:?}"
    );
    // A 500 is no PUBACK: the connection closes, so that the client sends
    // the message again when it reconnects.
    let out = publish(mqtt, ("iot", &tok), "broken/route", 1, "lost?");
    let trace = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!trace.contains("received PUBACK"), "{trace}");
    assert_eq!(gw.wait_total("mqtt_uplinks_failed", 1), 1);
}

/// Reads until the server closes the stream (or 5 s pass); what it sent.
fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// A CONNECT (3.1.1, clean session, keep-alive 30 s) with `password`.
fn connect_packet(client_id: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010, 0, 30];
    for field in [client_id, "", password] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut p = vec![0x10];
    // The remaining length, 7 bits a byte (a token is over 127 bytes).
    let mut n = body.len();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        p.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    p.extend(body);
    p
}

#[test]
fn malformed_packets_disconnect_and_a_healthy_client_keeps_working() {
    let (gw, mqtt) = start(1, "");
    let sub = subscriber(mqtt, &token("m-healthy"), &["still/here"], 0);
    let tok = token("m-rude");
    let connected = |extra: &[u8]| {
        let mut s = TcpStream::connect(mqtt).unwrap();
        s.write_all(&connect_packet("rude", &tok)).unwrap();
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "accepted");
        s.write_all(extra).unwrap();
        s
    };
    let cases: [(&str, Vec<u8>); 3] = [
        // Not CONNECT first: closed at once, nothing said.
        ("not connect", vec![0x30, 0x03, 0x00, 0x01, b'a']),
        // A remaining length with a fifth byte.
        ("bad length", vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01]),
        // Protocol level 3 (MQTT 3.1): CONNACK 0x01, then the close.
        (
            "level 3",
            vec![0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 3, 2, 0, 30, 0, 0],
        ),
    ];
    for (what, bytes) in &cases {
        let mut s = TcpStream::connect(mqtt).unwrap();
        s.write_all(bytes).unwrap();
        let (got, closed) = read_to_close(&mut s);
        assert!(closed, "{what}: still open");
        if *what == "level 3" {
            assert_eq!(got, [0x20, 2, 0, 1], "{what}: CONNACK 0x01");
        } else {
            assert!(got.is_empty(), "{what}: {got:?}");
        }
    }
    // After CONNACK: a SUBSCRIBE with reserved flags 0 (they must be 0010),
    // a QoS 2 PUBLISH, and a PUBLISH with a wildcard in its topic.
    for (what, bytes) in [
        ("subscribe flags", vec![0x80, 0x06, 0, 1, 0, 1, b'a', 0]),
        ("qos 2", vec![0x34, 0x05, 0, 1, b'a', 0, 1]),
        ("wildcard topic", vec![0x30, 0x03, 0, 1, b'#']),
    ] {
        let mut s = connected(&bytes);
        let (_, closed) = read_to_close(&mut s);
        assert!(closed, "{what}: still open");
    }
    // Five violations; the level-3 CONNECT is a refusal, not a violation.
    assert_eq!(gw.wait_total("mqtt_protocol_errors", 5), 5);
    assert_eq!(gw.wait_total("mqtt_refused", 1), 1);
    // The healthy subscriber noticed nothing.
    push(
        &gw,
        &json!({"to": {"topic": "still/here"}, "payload": "yes"}),
    );
    assert_eq!(message(&sub), "still/here yes");
}

#[test]
fn a_will_becomes_an_event_for_the_backend_and_a_disconnect_discards_it() {
    let backend = PyBackend::start();
    let (gw, mqtt) = start(2, &backend.events_config());
    let will_args = |topic: &str| {
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string()])
            .args(["-u", "", "-P", &token("m-will"), "-t", "x", "-d"])
            .args(["--will-topic", topic, "--will-payload", "offline"])
            .args(["--will-qos", "1", "-W", "60"]);
        cmd
    };
    // Killed: the connection is lost without DISCONNECT, the will is due.
    let sub = LineChild::spawn(will_args("devices/d1/status"));
    sub.line_where(|l| l.contains("received SUBACK"));
    drop(sub);
    let events = backend.wait_event(Duration::from_secs(10), |e| e["type"] == "will");
    let will = events.iter().find(|e| e["type"] == "will").unwrap();
    assert_eq!(will["user"], "m-will");
    assert_eq!(will["device"], "mqtt");
    assert_eq!(will["topic"], "devices/d1/status");
    assert_eq!(will["payload_b64"], "b2ZmbGluZQ==", "base64 of 'offline'");
    assert_eq!(
        (will["qos"].as_u64(), will["retain"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(gw.wait_total("mqtt_wills", 1), 1);

    // Ended with DISCONNECT (mosquitto_sub -C 1 exits after one message):
    // no will.
    let mut cmd = will_args("devices/d2/status");
    cmd.args(["-C", "1"]);
    let mut sub = LineChild::spawn(cmd);
    sub.line_where(|l| l.contains("received SUBACK"));
    push(&gw, &json!({"to": {"user": "m-will"}, "payload": "bye"}));
    assert!(sub.wait_exit(Duration::from_secs(5)).is_some());
    backend.wait_event(Duration::from_secs(10), |e| {
        e["type"] == "offline" && e["reason"] == "client_bye"
    });
    let events = backend.get_json("/")["events"].as_array().cloned().unwrap();
    let wills = events.iter().filter(|e| e["type"] == "will").count();
    assert_eq!(wills, 1, "{events:?}");
    assert_eq!(gw.total("mqtt_wills"), 1);
}

//! `gateway-bench --transport mqtt` against the real gateway's MQTT
//! listener (`[listen] mqtt`, port 0): connect, fanout (topic pushes and
//! broadcasts) and unicast runs, VALID with every delivery and the
//! gateway's counters agreeing; a wrong token INVALID under its CONNACK
//! code; `--transport mqtt` refused for the brokers and `--ack` over it.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::process::Command;
use std::time::Duration;

use bench_common::{BenchRun, LAG, bench};
use e2e_tests::{Gateway, binary};

const MQTT_CONFIG: &str = "[listen]\nmqtt = \"127.0.0.1:0\"\n";

/// A gateway (2 shards) with an MQTT listener.
fn gateway_with_mqtt() -> Gateway {
    let gw = Gateway::start(2, MQTT_CONFIG);
    assert!(gw.mqtt.is_some(), "the ready file names the mqtt listener");
    gw
}

/// `gateway-bench <scenario> --transport mqtt` against `gw`'s MQTT
/// listener and control API, then `args`.
fn over_mqtt(gw: &Gateway, scenario: &str, args: &[&str]) -> BenchRun {
    let target = gw.mqtt.map(|a| a.to_string()).unwrap_or_default();
    let control = gw.control.to_string();
    let mut all = vec![
        scenario,
        "--transport",
        "mqtt",
        "--target",
        &target,
        "--control",
        &control,
        "--max-lag-us",
        LAG,
    ];
    all.extend_from_slice(args);
    bench(&all, Duration::from_secs(30))
}

/// The run was VALID over MQTT and saw no failure.
fn assert_clean(r: &BenchRun, gw: &Gateway) {
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.run["params"]["transport"], "mqtt");
    assert!(
        r.run["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r.run["failures"]
    );
}

/// Every one of `want` expected deliveries arrived, once.
fn assert_delivered(r: &BenchRun, want: f64) {
    assert_eq!(r.metric("deliveries"), want, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
}

/// A connect run of `n` connections with a short hold, then `args`.
fn connect(gw: &Gateway, n: &str, args: &[&str]) -> BenchRun {
    let mut all = vec!["-n", n, "--rate", "1000", "--settle-secs", "0.2"];
    all.extend_from_slice(args);
    over_mqtt(gw, "connect", &all)
}

#[test]
fn connect_over_mqtt_establishes_and_holds_every_connection() {
    let gw = gateway_with_mqtt();
    let r = connect(&gw, "200", &["--hold-secs", "1", "--heartbeat-ms", "1000"]);
    assert_clean(&r, &gw);
    assert_eq!(r.metric("connections_established"), 200.0);
    assert_eq!(r.metric("held_after_hold"), 200.0);
    assert_eq!(r.count("handshake"), 200);
    // Over the MQTT listener: 200 CONNECTs and CONNACKs at least (and the
    // PINGREQs of the hold), none refused, nothing malformed.
    let packets_in = gw.wait_total_until("mqtt_packets_in", Duration::from_secs(5), |v| v >= 200);
    assert!(packets_in >= 200, "{packets_in}");
    assert!(gw.total("mqtt_packets_out") >= 200);
    assert_eq!(gw.total("mqtt_refused"), 0);
    assert_eq!(gw.total("mqtt_protocol_errors"), 0);
    assert_eq!(gw.wait_total("connections", 0), 0);
}

#[test]
fn fanout_over_mqtt_delivers_every_topic_push_and_broadcast_once() {
    let gw = gateway_with_mqtt();
    let fanout = |how: &str| {
        let five = "-n 300 -m 5 --msg-rate 10 --drain-secs 5";
        let args: Vec<&str> = five.split(' ').chain(how.split(' ')).collect();
        over_mqtt(&gw, "fanout", &args)
    };
    // Topic pushes to connections that sent SUBSCRIBE "news".
    let r = fanout("--topic news");
    assert_clean(&r, &gw);
    assert_eq!(r.metric("messages_sent"), 5.0);
    assert_delivered(&r, 1500.0);
    assert_eq!(r.count("completion"), 5);
    // Broadcasts, on $gateway/all without a SUBSCRIBE.
    let r = fanout("--all");
    assert_clean(&r, &gw);
    assert_eq!(r.run["params"]["all"], true);
    assert_delivered(&r, 1500.0);
    // The gateway counted what the harness received, as PUBLISHes.
    assert_eq!(gw.wait_total("deliveries", 3000), 3000);
    assert_eq!(gw.total("mqtt_protocol_errors"), 0);
}

#[test]
fn unicast_over_mqtt_delivers_every_user_push() {
    let gw = gateway_with_mqtt();
    let r = over_mqtt(
        &gw,
        "unicast",
        &[
            "-n",
            "200",
            "--connect-rate",
            "2000",
            "--pushes",
            "500",
            "--rate",
            "500",
        ],
    );
    assert_clean(&r, &gw);
    assert_eq!(r.metric("users_not_connected"), 0.0);
    assert_eq!(r.metric("pushes_sent"), 500.0, "{}", r.stdout);
    // Each on $gateway/user/{U}, which needs no SUBSCRIBE.
    assert_delivered(&r, 500.0);
    assert_eq!(r.count("delivery"), 500);
    assert_eq!(gw.wait_total("deliveries", 500), 500);
}

#[test]
fn a_wrong_token_over_mqtt_is_refused_by_connack_and_the_run_is_invalid() {
    let gw = gateway_with_mqtt();
    let wrong = "not-the-gateway-secret-but-32-bytes-long";
    let r = connect(&gw, "20", &["--hold-secs", "0.2", "--jwt-secret", wrong]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.valid(), "{}", r.stdout);
    let why = r.run["invalid_reasons"].to_string();
    assert!(why.contains("20 of 20 connection attempts failed"), "{why}");
    assert!(
        why.contains("CONNACK refused (code 4, bad user name or password)"),
        "{why}"
    );
    assert_eq!(gw.wait_total("mqtt_refused", 20), 20);
}

/// `gateway-bench <args>` (split at spaces): its exit code and its
/// stderr, trimmed.
fn refused(args: &str) -> (Option<i32>, String) {
    let out = Command::new(binary("gateway-bench"))
        .args(args.split(' '))
        .output()
        .expect("run gateway-bench");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.code(), err)
}

#[test]
fn mqtt_transport_is_refused_for_the_brokers_and_with_ack() {
    let (code, err) = refused("connect --peer mqtt --transport mqtt --target 127.0.0.1:9 -n 1");
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "gateway-bench: --transport mqtt is for --peer gateway only (its MQTT listener); \
         --peer mqtt runs over --transport tcp, ws, tls or wss"
    );
    let (code, err) = refused("unicast --transport mqtt --ack --target 127.0.0.1:9 -n 1");
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("gateway-bench: --ack runs over --transport tcp or ws"),
        "{err}"
    );
}

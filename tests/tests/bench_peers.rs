//! The peer adapters against the real peers: mosquitto (MQTT 3.1.1, QoS 0
//! and 1) and nats-server (core NATS), checked with the peers' own tools
//! (`mosquitto_sub`, nats-server's monitoring endpoint) so that a figure
//! is never a strawman.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_common::{LAG, bench};
use bench_harness::peers::{start_mosquitto, start_nats};
use e2e_tests::free_port;

fn stamped_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| bench_harness::stamp::decode(l.as_bytes()).is_some())
        .count()
}

#[test]
fn mqtt_fanout_at_qos0_and_qos1_reaches_every_subscriber_and_mosquitto_sub() {
    let broker = start_mosquitto(free_port()).expect("mosquitto (apt-get install mosquitto)");
    let target = broker.addr.to_string();
    // An independent subscriber: mosquitto's own client must see what the
    // harness's publisher sends.
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.addr.port().to_string(),
            "-t",
            "all",
            "-C",
            "5",
            "-W",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    std::thread::sleep(Duration::from_millis(300));
    for peer in ["mqtt", "mqtt-qos1"] {
        let r = bench(
            &[
                "fanout",
                "--max-lag-us",
                LAG,
                "--peer",
                peer,
                "--target",
                &target,
                "-n",
                "200",
                "-m",
                "5",
                "--msg-rate",
                "20",
                "--payload",
                "64",
                "--drain-secs",
                "5",
            ],
            Duration::from_secs(30),
        );
        assert_eq!(r.code, 0, "{peer}\n{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.metric("receivers"), 200.0, "{peer}");
        assert_eq!(r.metric("deliveries"), 1000.0, "{peer}: {}", r.stdout);
        assert_eq!(r.metric("lost"), 0.0);
        assert_eq!(r.metric("duplicates"), 0.0);
        assert_eq!(r.count("delivery"), 1000);
    }
    let mut out = String::new();
    sub.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let _ = sub.wait();
    assert_eq!(stamped_lines(&out), 5, "mosquitto_sub saw:\n{out}");
}

#[test]
fn mqtt_connect_and_unicast() {
    let broker = start_mosquitto(free_port()).expect("mosquitto");
    let target = broker.addr.to_string();
    let pid = broker.pid().to_string();
    let r = bench(
        &[
            "connect",
            "--max-lag-us",
            LAG,
            "--peer",
            "mqtt",
            "--target",
            &target,
            "-n",
            "300",
            "--hold-secs",
            "0.5",
            "--settle-secs",
            "0.5",
            "--gateway-pid",
            &pid,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("connections_established"), 300.0);
    assert!(r.run["metrics"]["target_rss_bytes_per_conn"].is_number());
    let r = bench(
        &[
            "unicast",
            "--max-lag-us",
            LAG,
            "--peer",
            "mqtt-qos1",
            "--target",
            &target,
            "-n",
            "100",
            "--pushes",
            "300",
            "--rate",
            "300",
            "--publishers",
            "1",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("deliveries"), 300.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
}

fn nats_connections(monitor: u16) -> u64 {
    let (status, body) = e2e_tests::http(
        format!("127.0.0.1:{monitor}").parse().expect("addr"),
        "GET",
        "/varz",
        "",
    )
    .expect("varz");
    assert_eq!(status, 200);
    serde_json::from_str::<serde_json::Value>(&body).expect("varz json")["connections"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn nats_connect_fanout_unicast_and_the_servers_own_count() {
    let port = free_port();
    let monitor = free_port();
    // Our launcher has no monitor; start one with it for the cross-check.
    let mut server = Command::new("nats-server")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (apt-get install nats-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", monitor)).is_err() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = format!("127.0.0.1:{port}");
    // Hold 300 connections long enough to ask the server how many it has.
    let mut harness = Command::new(e2e_tests::binary("gateway-bench"))
        .args([
            "connect",
            "--peer",
            "nats",
            "--target",
            &target,
            "-n",
            "300",
            "--hold-secs",
            "4",
            "--settle-secs",
            "0",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn harness");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while Instant::now() < deadline && seen < 300 {
        seen = nats_connections(monitor);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = harness.wait();
    assert_eq!(seen, 300, "nats-server's /varz connections");

    let r = bench(
        &[
            "fanout",
            "--max-lag-us",
            LAG,
            "--peer",
            "nats",
            "--target",
            &target,
            "-n",
            "200",
            "-m",
            "5",
            "--msg-rate",
            "20",
            "--payload",
            "64",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("deliveries"), 1000.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    let r = bench(
        &[
            "unicast",
            "--max-lag-us",
            LAG,
            "--peer",
            "nats",
            "--target",
            &target,
            "-n",
            "100",
            "--pushes",
            "300",
            "--rate",
            "300",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("deliveries"), 300.0, "{}", r.stdout);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn nats_launcher_listens_on_loopback_only() {
    let peer = start_nats(free_port()).expect("nats-server");
    assert!(peer.addr.ip().is_loopback());
    assert!(std::net::TcpStream::connect(peer.addr).is_ok());
}

#[test]
fn suite_compares_every_system_side_by_side_in_one_run() {
    let dir = e2e_tests::TempDir::new("suite");
    let md = dir.0.join("BENCHMARKS.md");
    std::fs::write(&md, "# Benchmarks\n\nhand-written text stays\n").unwrap();
    let gateway = e2e_tests::binary("gateway");
    let r = bench(
        &[
            "suite",
            "--gateway-bin",
            gateway.to_str().unwrap(),
            "--runs",
            "1",
            "--connections",
            "150",
            "--gateway-connections",
            "150",
            "--connect-rate",
            "2000",
            "--messages",
            "2",
            "--unicast-rate",
            "300",
            "--unicast-secs",
            "1",
            "--unicast-users",
            "100",
            "--md",
            md.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("hand-written text stays"), "{text}");
    let scenarios: Vec<(String, String)> = r.doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["scenario"].as_str().unwrap_or("").to_string(),
                run["system"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for system in ["gateway", "mqtt-qos0", "nats"] {
        for scenario in ["connect", "fanout", "unicast"] {
            assert!(
                scenarios.contains(&(scenario.to_string(), system.to_string())),
                "{scenario} on {system} missing: {scenarios:?}"
            );
        }
        assert!(
            text.contains(&format!("| {system} | 150 |")),
            "connect/fan-out row of {system}:\n{text}"
        );
        let unicast = text
            .lines()
            .find(|l| l.starts_with(&format!("| {system} | 1 |")))
            .unwrap_or_else(|| panic!("unicast row of {system}:\n{text}"));
        assert!(unicast.ends_with("| 0 |"), "nothing lost: {unicast}");
    }
    assert!(text.contains("300 pushes/s"), "{text}");
}

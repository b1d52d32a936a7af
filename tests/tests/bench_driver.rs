//! `gateway-bench --driver`: the harness on its epoll driver against the
//! real gateway (connect, fan-out with every delivery in, churn), and its
//! driver choice where io_uring is denied, under the seccomp launcher
//! `e2e-no-io-uring` (see driver_fallback.rs; its worker processes inherit
//! the filter): `auto` falls back to epoll and says why in one line,
//! `io_uring` refuses to run with a one-line error naming the cause.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::process::Command;
use std::time::Duration;

use bench_common::{BenchRun, LAG, bench, bench_under};
use e2e_tests::{Gateway, binary};

/// The one stderr line saying why io_uring was not used.
const WHY: &str = "io_uring_setup: EPERM (blocked by seccomp or kernel.io_uring_disabled?)";

fn assert_clean_epoll_run(r: &BenchRun) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.run["driver"], "epoll", "{}", r.run);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("harness driver") && l.ends_with(" epoll")),
        "{}",
        r.stdout
    );
    assert!(
        r.run["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r.run["failures"]
    );
}

#[test]
fn the_epoll_harness_connects_fans_out_and_churns() {
    let gw = Gateway::start(2, "");
    let (target, control) = (gw.client.to_string(), gw.control.to_string());
    // Connect at a rate over two source addresses (bind with
    // IP_BIND_ADDRESS_NO_PORT), held through 1 s heartbeats.
    let r = bench(
        &[
            "connect",
            "--driver",
            "epoll",
            "--sched",
            "normal",
            "--target",
            &target,
            "-n",
            "300",
            "--rate",
            "1000",
            "--workers",
            "2",
            "--first-source",
            "127.0.0.9",
            "--hold-secs",
            "1.5",
            "--settle-secs",
            "0.2",
            "--heartbeat-ms",
            "1000",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_clean_epoll_run(&r);
    assert_eq!(r.metric("connections_established"), 300.0);
    assert_eq!(r.metric("held_after_hold"), 300.0, "{}", r.stdout);
    assert_eq!(r.count("connect"), 300);
    assert_eq!(r.count("handshake"), 300);
    assert_eq!(r.run["sched"], "normal", "{}", r.run);
    // Fan-out: every subscriber gets every broadcast exactly once (the
    // driver given by the environment this time, and the load threads,
    // publisher included, on SCHED_BATCH).
    let r = bench_under(
        None,
        &[
            ("GATEWAY_BENCH_DRIVER", "epoll"),
            ("GATEWAY_BENCH_SCHED", "batch"),
        ],
        &[
            "fanout",
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "300",
            "-m",
            "5",
            "--msg-rate",
            "10",
            "--topic",
            "news",
            "--drain-secs",
            "5",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_clean_epoll_run(&r);
    assert_eq!(r.metric("messages_sent"), 5.0);
    assert_eq!(r.metric("deliveries"), 1500.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
    assert_eq!(r.count("completion"), 5);
    assert_eq!(r.run["sched"], "batch", "{}", r.run);
    // Churn: close and reconnect 20 % of 100 a second for 2 s.
    let r = bench(
        &[
            "churn",
            "--driver",
            "epoll",
            "--target",
            &target,
            "-n",
            "100",
            "--fraction-per-sec",
            "0.2",
            "--hold-secs",
            "2",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_clean_epoll_run(&r);
    assert_eq!(r.metric("reconnects"), 40.0, "{}", r.stdout);
    assert_eq!(r.count("reconnect"), 40);
    assert_eq!(
        gw.wait_total("connections", 0),
        0,
        "the harness closed its connections at the end"
    );
}

#[test]
fn where_io_uring_is_denied_auto_falls_back_to_epoll_and_io_uring_refuses() {
    let gw = Gateway::start(1, "");
    let target = gw.client.to_string();
    let launcher = binary("e2e-no-io-uring");
    let r = bench_under(
        Some(&launcher),
        &[],
        &[
            "connect",
            "--driver",
            "auto",
            "--target",
            &target,
            "-n",
            "200",
            "--hold-secs",
            "0.5",
            "--settle-secs",
            "0.1",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_clean_epoll_run(&r);
    assert_eq!(r.metric("connections_established"), 200.0);
    let why: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("falling back to epoll"))
        .collect();
    assert_eq!(why.len(), 1, "one line says why:\n{}", r.stderr);
    assert!(why[0].starts_with("gateway-bench: auto: "), "{}", why[0]);
    assert!(why[0].contains(WHY), "{}", why[0]);

    let out = Command::new(&launcher)
        .arg(binary("gateway-bench"))
        .args([
            "connect", "--driver", "io_uring", "--target", &target, "-n", "10",
        ])
        .env_remove("GATEWAY_BENCH_DRIVER")
        .output()
        .expect("run gateway-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [format!(
            "gateway-bench: --driver io_uring, but io_uring is unavailable: {WHY}"
        )],
        "{stderr}"
    );
    assert_eq!(gw.total("connections"), 0, "it connected nothing");
}

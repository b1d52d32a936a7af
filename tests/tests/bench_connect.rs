//! `gateway-bench connect` and `churn` against the real gateway; the
//! INVALID marking when the harness cannot keep its schedule.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::time::Duration;

use bench_common::{LAG, bench};
use e2e_tests::Gateway;

#[test]
fn connect_holds_and_measures_gateway_memory() {
    let gw = Gateway::start(2, "");
    let target = gw.client.to_string();
    let pid = gw.pid().to_string();
    let r = bench(
        &[
            "connect",
            "--target",
            &target,
            "-n",
            "300",
            "--rate",
            "1000",
            "--hold-secs",
            "1",
            "--settle-secs",
            "0.5",
            "--heartbeat-ms",
            "1000",
            "--gateway-pid",
            &pid,
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.metric("connections_established"), 300.0);
    // Held through the hold with 1 s heartbeats (the gateway's idle timeout
    // would have closed silent connections).
    assert_eq!(r.metric("held_after_hold"), 300.0);
    assert_eq!(r.count("handshake"), 300);
    assert_eq!(r.count("connect"), 300);
    assert!(r.metric("connections_per_s") > 500.0, "{}", r.stdout);
    assert!(r.run["metrics"]["target_rss_bytes_per_conn"].is_number());
    assert!(r.run["metrics"]["kernel_slab_bytes_per_conn"].is_number());
    assert!(
        r.run["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r.run["failures"]
    );
    assert_eq!(
        gw.wait_total("connections", 0),
        0,
        "the harness closed its connections at the end"
    );
}

#[test]
fn workers_and_source_addresses_merge_exactly() {
    let gw = Gateway::start(2, "");
    let target = gw.client.to_string();
    // Two worker processes, one shard each, over 127.0.0.5...: the merged
    // histograms hold every connection exactly once.
    let r = bench(
        &[
            "connect",
            "--target",
            &target,
            "-n",
            "400",
            "--workers",
            "2",
            "--shards",
            "1",
            "--first-source",
            "127.0.0.5",
            "--hold-secs",
            "0.5",
            "--settle-secs",
            "0.2",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.run["params"]["workers"], 2);
    assert_eq!(r.metric("connections_established"), 400.0);
    assert_eq!(r.count("handshake"), 400);
    assert_eq!(r.count("connect"), 400);
}

#[test]
fn impossible_rate_marks_the_run_invalid() {
    let gw = Gateway::start(2, "");
    let target = gw.client.to_string();
    // 4000 connections due within 40 µs: no harness can issue them on time;
    // the run must say so instead of reporting the figures as valid.
    let r = bench(
        &[
            "connect",
            "--target",
            &target,
            "-n",
            "4000",
            "--rate",
            "100000000",
            "--shards",
            "1",
            "--hold-secs",
            "0",
            "--settle-secs",
            "0",
        ],
        Duration::from_secs(40),
    );
    assert_eq!(r.code, 3, "INVALID runs exit 3\n{}", r.stdout);
    assert!(!r.valid());
    let why = r.run["invalid_reasons"].to_string();
    assert!(
        why.contains("achieved") || why.contains("schedule lag"),
        "{why}"
    );
    assert!(r.stdout.contains("INVALID"), "{}", r.stdout);
}

#[test]
fn churn_reconnects_at_the_requested_fraction() {
    let gw = Gateway::start(2, "");
    let target = gw.client.to_string();
    // 200 connections, 10% per second = 20 reconnects/s for 3 s.
    let r = bench(
        &[
            "churn",
            "--target",
            &target,
            "-n",
            "200",
            "--fraction-per-sec",
            "0.1",
            "--hold-secs",
            "3",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // 200 × 0.1/s × 3 s, exactly: the schedule is bounded by count, so a
    // slow machine stretches the run, never the number of reconnects.
    let reconnects = r.metric("reconnects");
    assert_eq!(r.metric("reconnects_planned"), 60.0, "{}", r.stdout);
    assert_eq!(reconnects, 60.0, "{}", r.stdout);
    let issued = r.metric("disconnects_issued_per_s");
    assert!((16.0..=24.0).contains(&issued), "{issued}\n{}", r.stdout);
    assert_eq!(r.count("reconnect") as f64, reconnects);
    assert!(
        r.run["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r.run["failures"]
    );
    assert_eq!(gw.wait_total("connections", 0), 0);
}

#[test]
fn a_connect_run_in_which_every_connection_fails_is_invalid_and_exits_3() {
    let gw = Gateway::start(1, "");
    let target = gw.client.to_string();
    // Wrong secret: every handshake is refused (ERROR_CODE_UNAUTHORIZED).
    let r = bench(
        &[
            "connect",
            "--target",
            &target,
            "-n",
            "20",
            "--hold-secs",
            "0.2",
            "--settle-secs",
            "0.1",
            "--jwt-secret",
            "not-the-gateway-secret",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.valid(), "{}", r.stdout);
    let why = r.run["invalid_reasons"].to_string();
    assert!(why.contains("20 of 20 connection attempts failed"), "{why}");
    assert!(why.contains("ERROR_CODE_UNAUTHORIZED"), "{why}");
    assert!(r.stderr.contains("run INVALID"), "{}", r.stderr);

    // Wrong port: every connect is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = bench(
        &[
            "connect",
            "--target",
            &format!("127.0.0.1:{port}"),
            "-n",
            "5",
            "--hold-secs",
            "0.1",
            "--settle-secs",
            "0.1",
            "--timeout-secs",
            "10",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.run["invalid_reasons"]
            .to_string()
            .contains("connection attempts failed"),
        "{}",
        r.run["invalid_reasons"]
    );
}

#[test]
fn a_failure_budget_allows_that_many_failed_connects() {
    // The budget covers the failed-connect rule; failures of 1 % or more
    // of the connections still make the run INVALID, so a budget alone
    // never turns a run in which everything failed into a VALID one.
    let gw = Gateway::start(1, "");
    let target = gw.client.to_string();
    let r = bench(
        &[
            "connect",
            "--target",
            &target,
            "-n",
            "10",
            "--hold-secs",
            "0.1",
            "--settle-secs",
            "0.1",
            "--jwt-secret",
            "not-the-gateway-secret",
            "--allow-connect-failures",
            "10",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 3, "{}", r.stdout);
    let why = r.run["invalid_reasons"].to_string();
    assert!(!why.contains("connection attempts failed"), "{why}");
    assert!(why.contains("100.00 % of 10 connections"), "{why}");
}

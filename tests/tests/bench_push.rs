//! `gateway-bench fanout`, `unicast` and `uplink` against the real gateway
//! (push API of DESIGN.md §4, uplink forwarding to the mock backend).

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::time::Duration;

use bench_common::{LAG, bench};
use bench_harness::backend::{BackendArgs, MockBackend};
use e2e_tests::Gateway;

#[test]
fn fanout_topic_broadcast_reaches_every_subscriber_once() {
    let gw = Gateway::start(2, "");
    let (target, control) = (gw.client.to_string(), gw.control.to_string());
    let r = bench(
        &[
            "fanout",
            "--max-lag-us",
            LAG,
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
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert_eq!(r.metric("messages_sent"), 5.0);
    assert_eq!(r.metric("deliveries"), 1500.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
    assert_eq!(r.count("completion"), 5);
    assert!(r.metric("deliveries_per_s") > 0.0);
}

#[test]
fn fanout_to_all_and_unicast_to_random_users() {
    let gw = Gateway::start(2, "");
    let (target, control) = (gw.client.to_string(), gw.control.to_string());
    let r = bench(
        &[
            "fanout",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "200",
            "-m",
            "3",
            "--all",
            "--msg-rate",
            "10",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("deliveries"), 600.0, "{}", r.stdout);
    let r = bench(
        &[
            "unicast",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "200",
            "--pushes",
            "500",
            "--rate",
            "500",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("deliveries"), 500.0, "{}", r.stdout);
    assert_eq!(r.count("delivery"), 500);
    assert_eq!(r.metric("pushes_sent"), 500.0, "every answer counted");
    assert_eq!(r.metric("users_not_connected"), 0.0);
    // Paced connects, two pipelined publishers, pushes that fall due
    // together sharing one `/v1/push/batch`.
    let r = bench(
        &[
            "unicast",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "300",
            "--connect-rate",
            "2000",
            "--pushes",
            "3000",
            "--rate",
            "2000",
            "--publishers",
            "2",
            "--batch",
            "16",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("pushes_sent"), 3000.0, "{}", r.stdout);
    assert_eq!(r.metric("deliveries"), 3000.0, "{}", r.stdout);
    assert_eq!(r.metric("duplicates"), 0.0);
    assert_eq!(r.count("delivery"), 3000);
}

#[test]
fn uplink_round_trips_through_the_mock_backend() {
    let mock = MockBackend::start(BackendArgs::default()).expect("mock backend");
    let config = format!("[uplink]\ndefault_url = \"http://{}/echo\"\n", mock.addr);
    let gw = Gateway::start(2, &config);
    let target = gw.client.to_string();
    let r = bench(
        &[
            "uplink",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "-n",
            "50",
            "--requests",
            "500",
            "--rate",
            "500",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(r.metric("requests_sent") >= 500.0);
    assert_eq!(r.metric("unanswered"), 0.0, "{}", r.stdout);
    assert_eq!(r.metric("replies_2xx"), r.metric("requests_sent"));
    assert_eq!(r.count("uplink_rtt") as f64, r.metric("requests_sent"));
}

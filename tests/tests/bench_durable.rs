//! `gateway-bench unicast --ack` against the real gateway and its durable
//! store (a temporary `--data-dir`, fsync durability, ports chosen by the
//! gateway): every push answered stored, delivered once, acked, the
//! store's counters agreeing and the store empty at the end; refusals
//! counted by status and INVALID; `--ack` refused for the brokers.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::process::Command;
use std::time::Duration;

use bench_common::{LAG, bench};
use e2e_tests::{Gateway, binary};

#[test]
fn unicast_with_ack_stores_delivers_and_acks_every_push() {
    let gw = Gateway::start(2, "");
    let target = gw.client.to_string();
    let control = gw.control.to_string();
    let r = bench(
        &[
            "unicast",
            "--ack",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "200",
            "--pushes",
            "2000",
            "--rate",
            "1000",
            "--publishers",
            "1",
            "--payload",
            "256",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.run["params"]["ack"], true);
    assert_eq!(r.metric("pushes_sent"), 2000.0);
    assert_eq!(r.metric("pushes_stored"), 2000.0);
    assert_eq!(r.metric("pushes_refused"), 0.0);
    assert_eq!(r.metric("deliveries"), 2000.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
    // Acked on receipt, well within the 10 s Ack timeout: nothing came twice.
    assert_eq!(r.metric("wire_redeliveries"), 0.0);
    // The harness's store cross-check saw what the gateway says.
    assert_eq!(r.metric("gateway_store_stored"), 2000.0);
    assert_eq!(r.metric("gateway_store_acked"), 2000.0);
    assert_eq!(r.metric("gateway_store_pushes_after"), 0.0);
    assert!(r.metric("gateway_store_commits") >= 1.0);
    assert_eq!(r.count("delivery"), 2000);
    assert_eq!(r.count("publish_call"), 2000);
    // And the gateway, asked directly.
    assert_eq!(gw.total("store_stored"), 2000);
    assert_eq!(gw.total("store_acked"), 2000);
    assert_eq!(gw.total("store_pushes"), 0);
    assert_eq!(gw.total("store_rejected"), 0);
}

#[test]
fn refused_durable_pushes_are_counted_by_status_and_make_the_run_invalid() {
    // One user whose inbox holds one push: pushes written back to back
    // find it full until the first is acked, and are answered 507.
    let gw = Gateway::start(1, "[store]\nuser_max_pushes = 1\nmax_pushes = 1\n");
    let target = gw.client.to_string();
    let control = gw.control.to_string();
    let r = bench(
        &[
            "unicast",
            "--ack",
            "--max-lag-us",
            LAG,
            "--target",
            &target,
            "--control",
            &control,
            "-n",
            "1",
            "--pushes",
            "200",
            "--rate",
            "0",
            "--publishers",
            "1",
            "--quiet-secs",
            "1",
            "--ack-wait-secs",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, 3, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(!r.valid());
    let refused = r.metric("pushes_refused_507");
    let stored = r.metric("pushes_stored");
    assert!(refused >= 1.0, "{}", r.stdout);
    assert_eq!(stored + refused, 200.0, "{}", r.stdout);
    assert_eq!(r.metric("pushes_refused"), refused);
    let reasons = r.run["invalid_reasons"].to_string();
    assert!(reasons.contains("sends succeeded"), "{reasons}");
    // What was stored was delivered and acked: the store agrees.
    assert_eq!(r.metric("gateway_store_stored"), stored);
    assert_eq!(r.metric("gateway_store_acked"), stored);
    assert_eq!(r.metric("gateway_store_rejected"), refused);
    assert_eq!(gw.total("store_rejected") as f64, refused);
}

#[test]
fn ack_is_refused_for_other_peers() {
    let out = Command::new(binary("gateway-bench"))
        .args([
            "unicast",
            "--peer",
            "mqtt",
            "--ack",
            "--target",
            "127.0.0.1:9",
            "-n",
            "1",
        ])
        .output()
        .expect("run gateway-bench");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "gateway-bench: --ack is for --peer gateway only (durable pushes through its push API, \
         acked with v1 Ack frames); --peer mqtt has no durable unicast here"
    );
}

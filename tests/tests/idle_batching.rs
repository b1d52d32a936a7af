//! End-to-end tests of idle wake-up batching (`shard.idle_batch_ms`): a
//! shard that has seen only client traffic for `idle_batch_after_ms`
//! batches its wake-ups, still answers Pings and delivers pushes, and goes
//! back to prompt wake-ups as soon as someone waits on it.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e_tests::{Client, Gateway, http};
use serde_json::json;

/// Quiet period of these tests: long enough that two stats requests a
/// moment apart both fall inside the busy spell the first one starts.
const QUIET_MS: u64 = 1000;

/// A one-shard gateway with `idle_batch_ms = batch_ms`, one established
/// client of `user`, after a quiet spell.
fn after_a_quiet_spell(batch_ms: u32, user: &str) -> (Gateway, Client) {
    let gw = Gateway::start(
        1,
        &format!("[shard]\nidle_batch_ms = {batch_ms}\nidle_batch_after_ms = {QUIET_MS}\n"),
    );
    let c = Client::established(gw.client, user);
    std::thread::sleep(Duration::from_millis(QUIET_MS + 500));
    (gw, c)
}

#[test]
fn a_quiet_shard_batches_its_wakeups_and_a_request_ends_the_spell() {
    let (gw, mut c) = after_a_quiet_spell(50, "quiet");
    let quiet = gw.total("batched_waits");
    assert!(quiet > 0, "no batched wait after a quiet spell");

    // A stats request is work someone waits on: the shard is prompt for
    // the next quiet period, so a second request soon after sees no new
    // batched wait.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gw.total("batched_waits"), quiet, "batched while busy");

    // Quiet again: client traffic alone (Pings) does not end the spell,
    // and is still answered.
    std::thread::sleep(Duration::from_millis(QUIET_MS + 200));
    for _ in 0..3 {
        assert!(c.ping_pong(), "no Pong while batching");
    }
    let later = gw.total("batched_waits");
    assert!(later > quiet, "no batched wait in the second quiet spell");

    // A push after a quiet spell is delivered.
    std::thread::sleep(Duration::from_millis(QUIET_MS + 200));
    let body = json!({"to": {"user": "quiet"}, "payload": "after the quiet"}).to_string();
    let (status, text) = http(gw.control, "POST", "/v1/push", &body).unwrap();
    assert_eq!(status, 200, "{text}");
    let push = c.next_push(Duration::from_secs(3)).expect("push delivered");
    assert_eq!(&push.payload[..], b"after the quiet");
}

#[test]
fn batching_off_never_batches() {
    let (gw, mut c) = after_a_quiet_spell(0, "prompt");
    assert!(c.ping_pong());
    assert_eq!(gw.total("batched_waits"), 0);
}

//! End-to-end tests of idle wake-up batching (`shard.idle_batch_ms`): a
//! shard that has seen only client traffic for `idle_batch_after_ms`
//! batches its wake-ups, still answers Pings and delivers pushes, and goes
//! back to prompt wake-ups as soon as someone waits on it; and a push, a
//! control request or a new connection ends a batched wait at once.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http, http_request, read_responses};
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

/// Settings where a batched wait lasts its whole window, 1 s: the timer
/// tick is longer still, so only the urgent watch can end it early.
const LONG_WINDOWS: &str =
    "[shard]\nidle_batch_ms = 1000\nidle_batch_after_ms = 1000\ntimer_tick_ms = 10000\n";

/// Well under the 1 s window a missing early end would cost.
const PROMPT: Duration = Duration::from_millis(400);

/// Lets every shard go quiet, then starts a fresh batched wait on each (a
/// Ping from every client wakes its shard, which answers and sleeps again
/// for a whole window), so what comes next lands inside a window. Returns
/// the batched waits counted before (read first: a stats request is work
/// that ends the quiet spell of the shard that serves it).
fn start_fresh_windows(gw: &Gateway, clients: &mut [Client]) -> u64 {
    let before = gw.total("batched_waits");
    std::thread::sleep(Duration::from_millis(QUIET_MS + 300));
    for c in clients.iter_mut() {
        assert!(c.ping_pong(), "no Pong while batching");
    }
    std::thread::sleep(Duration::from_millis(50));
    before
}

/// Whether the shards count more than `before` batched waits within 2 s.
fn batched_since(gw: &Gateway, before: u64) -> bool {
    gw.wait_total_until("batched_waits", Duration::from_secs(2), |v| v > before) > before
}

#[test]
fn pushes_requests_and_connections_end_a_batched_wait_at_once() {
    let gw = Gateway::start(2, LONG_WINDOWS);
    let users: Vec<String> = (0..4).map(|i| format!("urgent{i}")).collect();
    let mut clients: Vec<Client> = users
        .iter()
        .map(|u| Client::established(gw.client, u))
        .collect();
    // A backend's keep-alive connection to the push API, opened while busy.
    let mut api = TcpStream::connect(gw.control).unwrap();
    api.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    api.write_all(http_request("GET", "/healthz", "", false).as_bytes())
        .unwrap();
    assert_eq!(read_responses(&mut api, 1)[0].0, 200);

    for (i, user) in users.iter().enumerate() {
        let body = json!({"to": {"user": user}, "payload": format!("k{i}")}).to_string();
        // On the keep-alive connection (the push lands on its shard and,
        // for a user of the other shard, crosses the mailbox).
        let batched = start_fresh_windows(&gw, &mut clients);
        let t0 = Instant::now();
        api.write_all(http_request("POST", "/v1/push", &body, false).as_bytes())
            .unwrap();
        let push = clients[i].next_push(Duration::from_secs(3)).expect("push");
        let took = t0.elapsed();
        assert_eq!(read_responses(&mut api, 1)[0].0, 200);
        assert_eq!(&push.payload[..], format!("k{i}").as_bytes());
        assert!(took < PROMPT, "keep-alive push to {user} took {took:?}");
        assert!(batched_since(&gw, batched), "shards never batched");

        // On a new control connection.
        let body = json!({"to": {"user": user}, "payload": format!("n{i}")}).to_string();
        start_fresh_windows(&gw, &mut clients);
        let t0 = Instant::now();
        let (status, text) = http(gw.control, "POST", "/v1/push", &body).unwrap();
        let push = clients[i].next_push(Duration::from_secs(3)).expect("push");
        let took = t0.elapsed();
        assert_eq!(status, 200, "{text}");
        assert_eq!(&push.payload[..], format!("n{i}").as_bytes());
        assert!(took < PROMPT, "push to {user} took {took:?}");
    }

    // A new client's handshake.
    start_fresh_windows(&gw, &mut clients);
    let t0 = Instant::now();
    let _late = Client::established(gw.client, "latecomer");
    let took = t0.elapsed();
    assert!(took < PROMPT, "handshake took {took:?}");
}

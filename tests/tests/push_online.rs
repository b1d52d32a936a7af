//! End-to-end tests of `"online"` in push answers (docs/PUSH.md, "What the
//! answer says"): the real gateway on 2 shards, real clients, the push API
//! over real HTTP. A push to users or a topic is answered with the
//! sessions it was enqueued to; a broadcast with the sessions connected
//! gateway-wide as the shards last published them.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http};
use serde_json::{Value, json};

/// The shard a session lives on, from its Welcome's session id.
fn shard_of(c: &Client) -> u32 {
    let w = c.session.welcome().expect("established");
    u32::from_str_radix(w.session.split('-').next().unwrap(), 16).unwrap()
}

fn post(gw: &Gateway, path: &str, body: &str) -> Value {
    let (status, text) = http(gw.control, "POST", path, body).expect("request");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("a JSON answer")
}

fn push(gw: &Gateway, body: &Value) -> Value {
    let answer = post(gw, "/v1/push", &body.to_string());
    assert!(answer["id"].as_u64().is_some(), "{answer}");
    assert!(answer.get("partial").is_none(), "{answer}");
    answer
}

/// Waits until the directory lists `n` sessions of `user` (their owner
/// has heard of them all), so a push cannot overtake an announcement.
fn wait_directory(gw: &Gateway, user: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = http(gw.control, "GET", &format!("/v1/users/{user}"), "").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let got = v["sessions"].as_array().map_or(0, Vec::len);
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "{user}: {got} sessions, not {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sessions of `user` until there is one on each of the 2 shards.
fn on_both_shards(gw: &Gateway, user: &str) -> Vec<Client> {
    let mut sessions: Vec<Client> = Vec::new();
    while !(0..2).all(|s| sessions.iter().any(|c| shard_of(c) == s)) {
        assert!(
            sessions.len() < 40,
            "could not land sessions on both shards"
        );
        sessions.push(Client::established(gw.client, user));
    }
    wait_directory(gw, user, sessions.len());
    sessions
}

fn subscribe(gw: &Gateway, c: &mut Client, topic: &str, total: u64) {
    c.send_with(|s, out| s.subscribe(vec![topic.to_string()], out));
    assert!(c.ping_pong(), "session lost after subscribing");
    assert_eq!(gw.wait_total("subscriptions", total), total);
    // The topic's owner hears of the subscriber right behind that.
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn a_user_push_counts_the_sessions_on_both_shards_and_an_offline_user_none() {
    let gw = Gateway::start(2, "");
    let mut sessions = on_both_shards(&gw, "duo");
    let n = sessions.len() as u64;
    // Each request on a fresh connection, so both shards take some: the
    // owner's path, and the route cache's from the other shard.
    for round in 0..6 {
        let answer = push(
            &gw,
            &json!({"to": {"user": "duo"}, "payload": format!("r{round}")}),
        );
        assert_eq!(answer["online"], n, "round {round}: {answer}");
    }
    for (i, c) in sessions.iter_mut().enumerate() {
        for round in 0..6 {
            let p = c.next_push(Duration::from_secs(2));
            assert!(p.is_some(), "session {i} missed push {round}");
        }
    }
    for round in 0..4 {
        let answer = push(&gw, &json!({"to": {"user": "nobody"}, "payload": "x"}));
        assert_eq!(answer["online"], 0, "round {round}: {answer}");
    }
    let answer = push(
        &gw,
        &json!({"to": {"users": ["duo", "nobody", "duo"]}, "payload": "x"}),
    );
    assert_eq!(answer["online"], 2 * n, "{answer}");
    // Sessions of another app are not counted.
    let answer = push(
        &gw,
        &json!({"to": {"user": "duo"}, "app": "mail", "payload": "x"}),
    );
    assert_eq!(answer["online"], 0, "{answer}");
}

#[test]
fn a_topic_push_counts_its_subscribers_and_a_broadcast_the_sessions_online() {
    let gw = Gateway::start(2, "");
    let k = 9;
    let mut clients: Vec<Client> = (0..k)
        .map(|i| Client::established(gw.client, &format!("c{i}")))
        .collect();
    subscribe(&gw, &mut clients[0], "news", 1);
    let answer = push(&gw, &json!({"to": {"topic": "news"}, "payload": "n"}));
    assert_eq!(answer["online"], 1, "{answer}");
    let answer = push(&gw, &json!({"to": {"topic": "empty"}, "payload": "n"}));
    assert_eq!(answer["online"], 0, "{answer}");
    // The broadcast's count is the shards' published one: wait until
    // every shard has published its sessions.
    assert_eq!(gw.wait_total("sessions", k), k);
    let answer = push(&gw, &json!({"to": {"all": true}, "payload": "b"}));
    assert_eq!(answer["online"], k, "{answer}");
    for (i, c) in clients.iter_mut().enumerate() {
        let want = if i == 0 { 2 } else { 1 };
        for _ in 0..want {
            assert!(c.next_push(Duration::from_secs(2)).is_some(), "client {i}");
        }
    }
}

#[test]
fn every_line_of_a_batch_says_how_many_it_reached() {
    let gw = Gateway::start(2, "");
    let duo = on_both_shards(&gw, "pair");
    let n = duo.len() as u64;
    let mut reader = Client::established(gw.client, "reader");
    wait_directory(&gw, "reader", 1);
    subscribe(&gw, &mut reader, "news", 1);
    let all = n + 1;
    assert_eq!(gw.wait_total("sessions", all), all);
    let lines = [
        json!({"to": {"user": "pair"}, "payload": "a"}).to_string(),
        json!({"to": {"user": "nobody"}, "payload": "b"}).to_string(),
        json!({"to": {"topic": "news"}, "payload": "c"}).to_string(),
        json!({"to": {"topic": "news"}, "payload": "d"}).to_string(),
        "{not json".to_string(),
        json!({"to": {"all": true}, "payload": "e"}).to_string(),
        json!({"to": {"users": ["pair", "reader"]}, "payload": "f"}).to_string(),
    ];
    let answer = post(&gw, "/v1/push/batch", &lines.join("\n"));
    assert!(answer.get("partial").is_none(), "{answer}");
    let results = answer["results"].as_array().expect("results");
    let online: Vec<Option<u64>> = results.iter().map(|r| r["online"].as_u64()).collect();
    assert_eq!(
        online,
        vec![
            Some(n),
            Some(0),
            Some(1),
            Some(1),
            None,
            Some(all),
            Some(n + 1)
        ],
        "{answer}"
    );
    assert!(results[4]["error"].is_string(), "{answer}");
    let mut got: Vec<String> = (0..4)
        .filter_map(|_| reader.next_push(Duration::from_secs(2)))
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["c", "d", "e", "f"]);
}

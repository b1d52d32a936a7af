//! End-to-end test that `POST /v1/push` is answered once the push is
//! accepted, not once its fan-out is done (docs/PUSH.md, "When the answer
//! comes"): a paced broadcast that takes seconds to reach everyone is
//! answered in a fraction of that, and its deliveries go on after the
//! answer; the pushes the answer does not wait for still arrive, in order.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http};
use serde_json::{Value, json};

fn post(gw: &Gateway, path: &str, body: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, text) = http(gw.control, "POST", path, body).expect("request");
    let took = started.elapsed();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
    )
}

#[test]
fn a_paced_broadcast_is_answered_long_before_it_has_reached_everyone() {
    let gw = Gateway::start(2, "");
    let n = 80u64;
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::established(gw.client, &format!("a{i}")))
        .collect();
    // 80 recipients at 40/s: about 2 s of fan-out.
    let rate = 40;
    let body = json!({"to": {"all": true}, "payload": "slowly", "rate": rate}).to_string();
    let started = Instant::now();
    let (status, answer, took) = post(&gw, "/v1/push", &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["id"].as_u64().is_some_and(|id| id > 0), "{answer}");
    assert!(
        took < Duration::from_millis(500),
        "answered after {took:?}; the fan-out takes about 2 s"
    );
    let mut last = Duration::ZERO;
    for (i, c) in clients.iter_mut().enumerate() {
        let p = c.next_push(Duration::from_secs(6));
        assert!(p.is_some(), "client {i} got nothing");
        last = last.max(started.elapsed());
    }
    assert!(
        last >= took + Duration::from_millis(1000),
        "the fan-out ended {last:?} after the request, the answer came after {took:?}: \
         the answer should not have waited for it"
    );
    assert_eq!(gw.wait_total("deliveries", n), n);
}

#[test]
fn unpaced_pushes_answered_at_once_still_arrive_in_order() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..6)
        .map(|i| Client::established(gw.client, &format!("o{i}")))
        .collect();
    let mut ids = Vec::new();
    for k in 0..20 {
        let body = if k % 2 == 0 {
            json!({"to": {"all": true}, "payload": format!("b{k}"), "rate": 0})
        } else {
            json!({"to": {"users": ["o0", "o1", "o2", "o3", "o4", "o5"]}, "payload": format!("u{k}")})
        };
        let (status, answer, _) = post(&gw, "/v1/push", &body.to_string());
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    let broadcasts: Vec<u64> = ids.iter().copied().step_by(2).collect();
    let unicasts: Vec<u64> = ids.iter().copied().skip(1).step_by(2).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < ids.len() {
            let Some(p) = c.next_push(Duration::from_secs(3)) else {
                break;
            };
            got.push(p.id);
        }
        let of = |want: &[u64]| {
            got.iter()
                .copied()
                .filter(|id| want.contains(id))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(&broadcasts),
            broadcasts,
            "client {i}: broadcasts in order"
        );
        assert_eq!(of(&unicasts), unicasts, "client {i}: user pushes in order");
    }
}

//! End-to-end tests of the route cache (docs/PUSH.md, "Routing"): pushes
//! to a user skip the owner hop once the accepting shard knows the route,
//! each user's pushes keep their order through the switch, and a cached
//! route follows the user's sessions as they come and go.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http};
use serde_json::{Value, json};

/// The payloads of the pushes `c` gets: `want` of them within a few
/// seconds, plus any that arrive shortly after (a duplicate would).
fn payloads(c: &mut Client, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let grace = Duration::from_millis(50);
    loop {
        let left = if got.len() < want {
            deadline.saturating_duration_since(Instant::now())
        } else {
            grace
        };
        let Some(p) = c.next_push(left) else {
            break;
        };
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    got
}

/// One push to `user`, on a fresh control connection (so on either shard).
fn push(gw: &Gateway, user: &str, payload: &str) {
    let body = json!({"to": {"user": user}, "payload": payload}).to_string();
    let (status, text) = http(gw.control, "POST", "/v1/push", &body).expect("push");
    assert_eq!(status, 200, "{text}");
}

/// Pushes `prefix0`, `prefix1`, … (`n` of them) to `user`, each on its
/// own control connection, and returns the payloads in the order sent.
fn push_series(gw: &Gateway, user: &str, prefix: &str, n: usize) -> Vec<String> {
    let sent: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for payload in &sent {
        push(gw, user, payload);
    }
    sent
}

/// Waits until the directory lists `n` sessions of `user`, then a little
/// more so every shard has heard that the user's sessions changed.
fn wait_sessions(gw: &Gateway, user: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = http(gw.control, "GET", &format!("/v1/users/{user}"), "").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let have = v["sessions"].as_array().map_or(0, Vec::len);
        if status == 200 && have == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {have} sessions, want {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// `route_cache_hits` once it is above zero (shards publish their counters
/// every 250 ms), or 0 after 2 s.
fn cache_hits(gw: &Gateway) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let hits = gw.total("route_cache_hits");
        if hits > 0 || Instant::now() > deadline {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pushes_skip_the_owner_once_the_route_is_known_and_keep_their_order() {
    let gw = Gateway::start(2, "");
    let users: Vec<String> = (0..8).map(|i| format!("rc{i}")).collect();
    let mut clients: Vec<Client> = users
        .iter()
        .map(|u| Client::established(gw.client, u))
        .collect();
    for u in &users {
        wait_sessions(&gw, u, 1);
    }
    // Batches of interleaved pushes, each batch on its own connection (so
    // on either shard): within a batch, early pushes go through the owner
    // while later ones may already find the route cached.
    let rounds = 12;
    let per_round = 4;
    for round in 0..rounds {
        let lines: Vec<String> = (0..per_round)
            .flat_map(|k| {
                users.iter().map(move |u| {
                    json!({"to": {"user": u}, "payload": format!("{}", round * per_round + k)})
                        .to_string()
                })
            })
            .collect();
        let (status, text) = http(gw.control, "POST", "/v1/push/batch", &lines.join("\n")).unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let want: Vec<String> = (0..rounds * per_round).map(|n| n.to_string()).collect();
    for (u, c) in users.iter().zip(&mut clients) {
        let got = payloads(c, want.len());
        assert_eq!(got, want, "{u}: every push once, in order");
    }
    let hits = cache_hits(&gw);
    assert!(hits > 0, "no push used the route cache in {rounds} batches");
    let all = (users.len() * want.len()) as u64;
    assert_eq!(
        gw.wait_total("deliveries", all),
        all,
        "cached or not, each push is delivered once"
    );
}

#[test]
fn a_cached_route_follows_the_users_sessions() {
    let gw = Gateway::start(2, "");
    let mut first = Client::established(gw.client, "mover");
    wait_sessions(&gw, "mover", 1);
    // Fresh connections land on either shard: the one that is not the
    // owner learns the route and then uses it.
    let want = push_series(&gw, "mover", "a", 24);
    assert_eq!(payloads(&mut first, want.len()), want);
    assert!(cache_hits(&gw) > 0, "the route was never cached");

    // A second device: routes cached with one session must not miss it.
    let mut second = Client::established(gw.client, "mover");
    wait_sessions(&gw, "mover", 2);
    let want = push_series(&gw, "mover", "b", 16);
    assert_eq!(payloads(&mut first, want.len()), want);
    assert_eq!(payloads(&mut second, want.len()), want);

    // The first device leaves: pushes keep reaching the second one.
    drop(first);
    wait_sessions(&gw, "mover", 1);
    let want = push_series(&gw, "mover", "c", 16);
    assert_eq!(payloads(&mut second, want.len()), want);
}

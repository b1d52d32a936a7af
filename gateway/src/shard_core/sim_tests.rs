//! The shard cores' behaviour across shards, with simulated time and no
//! sockets (see `sim`).

use std::net::{IpAddr, Ipv4Addr};

use protocol::client::{ClientConfig, ClientEvent};
use protocol::proto::{ErrorCode, KickCode};
use tuning::config::SlowConsumerPolicy;

use super::sim::Sim;

fn welcomed(sim: &Sim, client: usize) -> Option<String> {
    sim.clients[client].events.iter().find_map(|e| match e {
        ClientEvent::Welcome(w) => Some(w.user.clone()),
        _ => None,
    })
}

fn user(name: &str) -> String {
    format!(r#"{{"user":"{name}"}}"#)
}

#[test]
fn a_valid_token_gets_a_welcome_and_a_bad_one_an_error_and_a_close() {
    let mut sim = Sim::new(1, |_| {});
    let ok = sim.connect(0, "alice");
    assert_eq!(welcomed(&sim, ok).as_deref(), Some("alice"));
    assert_eq!(sim.cores[0].connections(), 1);

    let expired = ClientConfig {
        token: Sim::token("bob", Some(0), None),
        apps: vec!["chat".into()],
        ..ClientConfig::default()
    };
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let late = sim.connect_with(0, expired, peer);
    let wrong_app = ClientConfig {
        token: Sim::token("carol", None, Some(vec!["mail".into()])),
        apps: vec!["chat".into()],
        ..ClientConfig::default()
    };
    let refused = sim.connect_with(0, wrong_app, peer);
    sim.advance(1_000);
    assert_eq!(
        sim.clients[late].error(),
        Some(ErrorCode::TokenExpired as u32)
    );
    assert_eq!(
        sim.clients[refused].error(),
        Some(ErrorCode::Unauthorized as u32)
    );
    for c in [late, refused] {
        assert_eq!(welcomed(&sim, c), None);
        assert!(sim.clients[c].closed, "a refused handshake is closed");
    }
    // The refused connections are gone from the shard; alice stays.
    assert_eq!(sim.cores[0].connections(), 1);
    assert_eq!(sim.cores[0].stats.handshakes_ok, 1);
    assert_eq!(sim.cores[0].stats.handshakes_expired, 1);
    assert_eq!(sim.cores[0].stats.handshakes_unauthorized, 1);
}

#[test]
fn a_push_through_any_shard_reaches_a_user_on_another_in_order_through_the_route_cache() {
    let mut sim = Sim::new(4, |_| {});
    // A user held on its owner shard, pushed to through shard 0: a route
    // through two shards, which the pushing shard may cache.
    let name = (0..)
        .map(|i| format!("dave{i}"))
        .find(|u| shard_router::owner::owner_of(u, 4) != 0)
        .unwrap_or_default();
    let owner = shard_router::owner::owner_of(&name, 4);
    let dave = sim.connect(owner, &name);
    for i in 0..20 {
        assert_eq!(sim.push(0, &user(&name), &format!("p{i}")), 200);
    }
    let expected: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    assert_eq!(sim.clients[dave].payloads(), expected);
    assert!(
        sim.cores[0].stats.route_cache_hits > 0,
        "later pushes go straight to the holding shard"
    );
    // The user moves: the cached route is forgotten and pushes follow.
    let mut bye = Vec::new();
    sim.clients[dave].session.bye(&mut bye);
    sim.clients[dave].write(bye);
    sim.advance(1_000);
    assert!(sim.clients[dave].closed);
    let elsewhere = (owner + 1) % 4;
    let moved = sim.connect(elsewhere, &name);
    for i in 20..30 {
        assert_eq!(sim.push(0, &user(&name), &format!("p{i}")), 200);
    }
    let expected: Vec<String> = (20..30).map(|i| format!("p{i}")).collect();
    assert_eq!(sim.clients[moved].payloads(), expected);
}

#[test]
fn a_topic_push_and_a_broadcast_reach_every_shard_once() {
    let mut sim = Sim::new(3, |_| {});
    let clients: Vec<usize> = (0..6)
        .map(|i| sim.connect(i % 3, &format!("u{i}")))
        .collect();
    for &c in &clients[..4] {
        let mut out = Vec::new();
        sim.clients[c]
            .session
            .subscribe(vec!["news".into()], &mut out);
        sim.clients[c].write(out);
    }
    sim.run();
    assert_eq!(sim.push(1, r#"{"topic":"news"}"#, "n1"), 200);
    assert_eq!(sim.push(2, r#"{"all":true}"#, "b1"), 200);
    for (i, &c) in clients.iter().enumerate() {
        let want: Vec<&str> = if i < 4 { vec!["n1", "b1"] } else { vec!["b1"] };
        assert_eq!(sim.clients[c].payloads(), want, "client {i}");
    }
}

#[test]
fn a_kick_reaches_every_session_of_the_user_on_every_shard() {
    let mut sim = Sim::new(3, |_| {});
    let a = sim.connect(0, "erin");
    let b = sim.connect(2, "erin");
    let other = sim.connect(1, "frank");
    let caller = sim.request(1, "POST", "/v1/kick", &user("erin"));
    let (status, body) = sim.answer(caller).expect("an answer");
    assert_eq!(status, 200);
    assert_eq!(body["kicked"], 2);
    sim.advance(1_000);
    for c in [a, b] {
        assert_eq!(sim.clients[c].kicked(), Some(KickCode::Admin as u32));
        assert!(sim.clients[c].closed);
    }
    assert_eq!(sim.clients[other].kicked(), None);
    assert!(!sim.clients[other].closed);
    // Presence of a user nobody holds: an empty answer, not a hang.
    let caller = sim.request(0, "GET", "/v1/users/erin", "");
    assert_eq!(
        sim.answer(caller).map(|(_, b)| b["sessions"].clone()),
        Some(serde_json::json!([]))
    );
}

#[test]
fn a_drain_kicks_at_its_rate_and_stops_accepting() {
    let mut sim = Sim::new(2, |_| {});
    let clients: Vec<usize> = (0..40)
        .map(|i| sim.connect(i % 2, &format!("d{i}")))
        .collect();
    let caller = sim.request(0, "POST", "/v1/drain", r#"{"rate": 10}"#);
    assert_eq!(sim.answer(caller).map(|(s, _)| s), Some(200));
    assert!(sim.stopped_accepting.iter().all(|&s| s));
    let kicked = |sim: &Sim| {
        clients
            .iter()
            .filter(|&&c| sim.clients[c].kicked() == Some(KickCode::Drain as u32))
            .count()
    };
    sim.advance(1_000);
    let after_1s = kicked(&sim);
    // 10/s over 2 shards: 5 per shard per second, plus the first of each.
    assert!((10..=14).contains(&after_1s), "{after_1s} kicked after 1 s");
    sim.advance(2_000);
    let after_3s = kicked(&sim);
    assert!((30..=34).contains(&after_3s), "{after_3s} kicked after 3 s");
    sim.advance(2_000);
    assert_eq!(kicked(&sim), 40);
}

#[test]
fn a_client_that_heartbeats_stays_and_a_silent_one_is_closed_when_idle() {
    let mut sim = Sim::new(1, |_| {});
    let alive = sim.connect(0, "gina");
    let dead = sim.connect(0, "hank");
    sim.clients[dead].silent = true;
    // Heartbeat 10 s, idle factor 2.5 by default: closed by 25 s.
    sim.advance(60_000);
    assert!(sim.clients[dead].closed, "the silent client is closed");
    assert!(!sim.clients[alive].closed, "the heartbeating one stays");
    assert_eq!(sim.cores[0].stats.idle_timeouts, 1);
    assert_eq!(sim.cores[0].connections(), 1);
}

#[test]
fn a_slow_consumer_loses_its_oldest_pushes_under_drop_oldest() {
    let mut sim = Sim::new(2, |c| {
        c.shard.outbound_queue_bytes = 4096;
        c.shard.slow_consumer = SlowConsumerPolicy::DropOldest;
    });
    let slow = sim.connect(1, "ivan");
    sim.set_reading(slow, false);
    let big = "x".repeat(1000);
    for i in 0..20 {
        assert_eq!(sim.push(0, &user("ivan"), &format!("{i}-{big}")), 200);
    }
    assert!(sim.cores[1].stats.slow_consumer_drops > 0);
    sim.set_reading(slow, true);
    sim.advance(100);
    let got = sim.clients[slow].payloads();
    assert!(got.len() < 20, "some were dropped: got {}", got.len());
    assert!(
        got.last().is_some_and(|p| p.starts_with("19-")),
        "the newest push survives"
    );
    assert!(
        !sim.clients[slow].closed,
        "drop_oldest keeps the connection"
    );
}

#[test]
fn a_slow_consumer_is_kicked_and_closed_under_disconnect() {
    let mut sim = Sim::new(1, |c| {
        c.shard.outbound_queue_bytes = 4096;
        c.shard.slow_consumer = SlowConsumerPolicy::Disconnect;
    });
    let slow = sim.connect(0, "jane");
    let fine = sim.connect(0, "kurt");
    sim.set_reading(slow, false);
    let big = "y".repeat(1000);
    for i in 0..10 {
        sim.push(0, r#"{"all":true}"#, &format!("{i}-{big}"));
    }
    assert_eq!(sim.cores[0].stats.slow_consumer_disconnects, 1);
    sim.advance(1_000);
    assert!(sim.clients[slow].closed, "closed after the close linger");
    assert_eq!(sim.clients[fine].payloads().len(), 10);
    assert!(!sim.clients[fine].closed);
    assert_eq!(sim.cores[0].connections(), 1);
}

#[test]
fn admission_refuses_over_the_shard_limit_and_over_the_per_ip_limit() {
    let mut sim = Sim::new(1, |c| {
        c.shard.max_connections = 3;
        c.admission.max_connections_per_ip = 2;
    });
    let ip = |n| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
    let cfg = |u: &str| ClientConfig {
        token: Sim::token(u, None, None),
        apps: vec!["chat".into()],
        heartbeat_ms: 10_000,
        ..ClientConfig::default()
    };
    let a = sim.connect_with(0, cfg("a"), ip(1));
    let b = sim.connect_with(0, cfg("b"), ip(1));
    let c = sim.connect_with(0, cfg("c"), ip(1));
    let d = sim.connect_with(0, cfg("d"), ip(2));
    let e = sim.connect_with(0, cfg("e"), ip(3));
    sim.advance(1_000);
    for ok in [a, b, d] {
        assert!(welcomed(&sim, ok).is_some(), "client {ok} admitted");
    }
    for refused in [c, e] {
        assert_eq!(
            sim.clients[refused].error(),
            Some(ErrorCode::Overloaded as u32),
            "client {refused} refused"
        );
        assert!(sim.clients[refused].closed);
    }
    assert_eq!(sim.cores[0].stats.refused_per_ip, 1);
    assert_eq!(sim.cores[0].stats.refused_max_connections, 1);
    // A slot freed is a slot for the next one.
    let mut bye = Vec::new();
    sim.clients[a].session.bye(&mut bye);
    sim.clients[a].write(bye);
    sim.advance(1_000);
    let f = sim.connect_with(0, cfg("f"), ip(3));
    assert!(welcomed(&sim, f).is_some());
}

/// A Bye ends in the close sequence; the simulation asserts that no
/// operation follows a stream's Close.
#[test]
fn a_bye_closes_the_stream_and_frees_the_slot() {
    let mut sim = Sim::new(1, |_| {});
    let c = sim.connect(0, "lena");
    let mut bye = Vec::new();
    sim.clients[c].session.bye(&mut bye);
    sim.clients[c].write(bye);
    sim.advance(1_000);
    assert!(sim.clients[c].closed);
    assert_eq!(sim.cores[0].connections(), 0);
    assert_eq!(sim.cores[0].stats.client_closes, 1);
}

/// The answer to a push of `payload` to `to` through shard `via`, as it
/// stands once the simulation is quiet (`None`: still waiting).
fn push_answer(sim: &mut Sim, via: usize, to: &str, extra: &str) -> Option<serde_json::Value> {
    let body = format!(r#"{{"to":{to},"payload":"x"{extra}}}"#);
    let caller = sim.request(via, "POST", "/v1/push", &body);
    let (status, body) = sim.answer(caller)?;
    assert_eq!(status, 200, "{body}");
    Some(body)
}

fn online(answer: &Option<serde_json::Value>) -> Option<u64> {
    answer.as_ref().and_then(|a| {
        assert!(a["id"].as_u64().is_some(), "{a}");
        assert!(a.get("partial").is_none(), "{a}");
        a["online"].as_u64()
    })
}

/// Subscribes `client` to `topic` and runs the cores.
pub(super) fn subscribe(sim: &mut Sim, client: usize, topic: &str) {
    let mut out = Vec::new();
    sim.clients[client]
        .session
        .subscribe(vec![topic.into()], &mut out);
    sim.clients[client].write(out);
    sim.run();
}

/// A client of `user` on `shard` that declares only `apps`.
fn connect_with_apps(sim: &mut Sim, shard: usize, user: &str, apps: &[&str]) -> usize {
    let cfg = ClientConfig {
        token: Sim::token(user, None, None),
        apps: apps.iter().map(|a| (*a).to_string()).collect(),
        heartbeat_ms: 10_000,
        ..ClientConfig::default()
    };
    sim.connect_with(shard, cfg, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
}

#[test]
fn a_user_push_is_answered_with_the_sessions_it_reached_on_every_shard() {
    let mut sim = Sim::new(2, |_| {});
    let a = sim.connect(0, "olga");
    let b = sim.connect(1, "olga");
    // Through the owner, then (on the other shard) through the route
    // cache: every answer counts both sessions.
    for round in 0..4 {
        for via in 0..2 {
            let answer = push_answer(&mut sim, via, &user("olga"), "");
            assert_eq!(online(&answer), Some(2), "round {round} via {via}");
        }
    }
    let hits: u64 = sim.cores.iter().map(|c| c.stats.route_cache_hits).sum();
    assert!(hits > 0, "the cached route was used and counted");
    assert_eq!(sim.clients[a].payloads().len(), 8);
    assert_eq!(sim.clients[b].payloads().len(), 8);
    // Several users: the sum over them.
    sim.connect(1, "pia");
    let answer = push_answer(&mut sim, 0, r#"{"users":["olga","pia","olga"]}"#, "");
    assert_eq!(online(&answer), Some(5));
}

#[test]
fn a_push_to_an_offline_user_is_answered_with_zero() {
    let mut sim = Sim::new(3, |_| {});
    sim.connect(1, "quinn");
    for via in 0..3 {
        let answer = push_answer(&mut sim, via, &user("nobody-here"), "");
        assert_eq!(online(&answer), Some(0), "via {via}");
    }
    let answer = push_answer(&mut sim, 0, r#"{"users":[]}"#, "");
    assert_eq!(online(&answer), Some(0), "no users, nobody reached");
    // A session that has gone is not counted.
    let gone = sim.connect(2, "rita");
    let mut bye = Vec::new();
    sim.clients[gone].session.bye(&mut bye);
    sim.clients[gone].write(bye);
    sim.advance(1_000);
    assert_eq!(
        online(&push_answer(&mut sim, 0, &user("rita"), "")),
        Some(0)
    );
}

#[test]
fn a_session_without_the_push_app_is_not_counted() {
    let mut sim = Sim::new(2, |_| {});
    let chat = connect_with_apps(&mut sim, 0, "sam", &["chat"]);
    let mail = connect_with_apps(&mut sim, 1, "sam", &["mail"]);
    let answer = push_answer(&mut sim, 0, &user("sam"), r#","app":"chat""#);
    assert_eq!(online(&answer), Some(1));
    assert_eq!(sim.clients[chat].payloads(), vec!["x"]);
    assert!(sim.clients[mail].payloads().is_empty());
    // An app no session declared: each holder counts 0 at once.
    let answer = push_answer(&mut sim, 1, &user("sam"), r#","app":"news""#);
    assert_eq!(online(&answer), Some(0));
    assert_eq!(online(&push_answer(&mut sim, 1, &user("sam"), "")), Some(2));
}

#[test]
fn a_topic_push_counts_its_subscribers_on_every_shard_even_when_paced() {
    let mut sim = Sim::new(3, |_| {});
    let subs = [
        sim.connect(0, "t0"),
        sim.connect(0, "t1"),
        sim.connect(2, "t2"),
    ];
    sim.connect(1, "t3");
    for &c in &subs {
        subscribe(&mut sim, c, "news");
    }
    let answer = push_answer(&mut sim, 1, r#"{"topic":"news"}"#, "");
    assert_eq!(online(&answer), Some(3));
    let answer = push_answer(&mut sim, 1, r#"{"topic":"sports"}"#, "");
    assert_eq!(online(&answer), Some(0), "no subscribers");
    // Paced at 1 recipient per second: the answer counts who will get it
    // at once, and does not wait for the pacing.
    let answer = push_answer(&mut sim, 0, r#"{"topic":"news"}"#, r#","rate":1"#);
    assert_eq!(online(&answer), Some(3));
    let got = subs
        .iter()
        .filter(|&&c| sim.clients[c].payloads().len() == 2);
    assert!(got.count() < 3, "answered before the paced delivery ended");
    sim.advance(3_000);
    assert!(subs.iter().all(|&c| sim.clients[c].payloads().len() == 2));
}

#[test]
fn a_broadcast_is_answered_at_once_with_the_sessions_online() {
    let mut sim = Sim::new(3, |_| {});
    for i in 0..7 {
        sim.connect(i % 3, &format!("b{i}"));
    }
    for via in 0..3 {
        let answer = push_answer(&mut sim, via, r#"{"all":true}"#, r#","rate":1"#);
        assert_eq!(online(&answer), Some(7), "via {via}");
    }
    // A session that left is not counted any more.
    let gone = sim.connect(1, "b7");
    let mut bye = Vec::new();
    sim.clients[gone].session.bye(&mut bye);
    sim.clients[gone].write(bye);
    sim.advance(1_000);
    let answer = push_answer(&mut sim, 0, r#"{"all":true}"#, "");
    assert_eq!(online(&answer), Some(7));
}

#[test]
fn a_batch_is_answered_when_every_line_is_counted() {
    let mut sim = Sim::new(3, |_| {});
    sim.connect(0, "vera");
    sim.connect(2, "vera");
    let sub = sim.connect(1, "walt");
    subscribe(&mut sim, sub, "news");
    let body = [
        r#"{"to":{"user":"vera"},"payload":"a"}"#,
        r#"{"to":{"user":"nobody"},"payload":"b"}"#,
        r#"{"to":{"topic":"news"},"payload":"c"}"#,
        r#"{"to":{"topic":"news"},"payload":"d"}"#,
        "not json",
        r#"{"to":{"all":true},"payload":"e"}"#,
        r#"{"to":{"users":["vera","walt"]},"payload":"f"}"#,
    ]
    .join("\n");
    let caller = sim.request(2, "POST", "/v1/push/batch", &body);
    let (status, answer) = sim.answer(caller).expect("answered");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("partial").is_none(), "{answer}");
    let results = answer["results"].as_array().expect("results");
    let counts: Vec<Option<u64>> = results.iter().map(|r| r["online"].as_u64()).collect();
    assert_eq!(
        counts,
        vec![Some(2), Some(0), Some(1), Some(1), None, Some(3), Some(3)],
        "{answer}"
    );
    assert!(results[4]["error"].is_string());
    // (The topic run goes through its owner, the broadcast straight: no
    // order between them.)
    let mut got = sim.clients[sub].payloads();
    got.sort();
    assert_eq!(got, vec!["c", "d", "e", "f"]);
}

#[test]
fn a_holder_that_never_counts_leaves_the_answer_partial_after_the_timeout() {
    let mut sim = Sim::new(3, |_| {});
    let name = (0..)
        .map(|i| format!("xena{i}"))
        .find(|u| shard_router::owner::owner_of(u, 3) == 0)
        .unwrap_or_default();
    sim.connect(1, &name);
    sim.connect(2, &name);
    // Shard 2 stops reading its mail: its count never comes.
    sim.deaf[2] = true;
    let body = format!(r#"{{"to":{},"payload":"x"}}"#, user(&name));
    let caller = sim.request(0, "POST", "/v1/push", &body);
    assert!(sim.answer(caller).is_none(), "waits for shard 2");
    sim.advance(super::push::REQUEST_TIMEOUT_MS - 100);
    assert!(sim.answer(caller).is_none(), "still within the timeout");
    sim.advance(200);
    let (status, answer) = sim.answer(caller).expect("answered after the timeout");
    assert_eq!(status, 200);
    assert_eq!(answer["online"], 1, "{answer}");
    assert_eq!(answer["partial"], true, "{answer}");
    // A batch likewise; its lines that were counted are not partial.
    let body = format!(
        "{}\n{}",
        r#"{"to":{"user":"nobody"},"payload":"a"}"#,
        format_args!(r#"{{"to":{},"payload":"b"}}"#, user(&name))
    );
    let caller = sim.request(0, "POST", "/v1/push/batch", &body);
    assert!(sim.answer(caller).is_none());
    sim.advance(super::push::REQUEST_TIMEOUT_MS);
    let (_, answer) = sim.answer(caller).expect("answered after the timeout");
    assert_eq!(answer["partial"], true, "{answer}");
    assert_eq!(
        answer["results"][0],
        serde_json::json!({"id": answer["results"][0]["id"], "online": 0})
    );
    assert_eq!(answer["results"][1]["partial"], true, "{answer}");
    assert_eq!(answer["results"][1]["online"], 1, "{answer}");
}

#[test]
fn a_push_that_overflows_a_slow_consumer_under_disconnect_is_not_counted() {
    let mut sim = Sim::new(2, |c| {
        c.shard.outbound_queue_bytes = 4096;
        c.shard.slow_consumer = SlowConsumerPolicy::Disconnect;
    });
    let slow = sim.connect(1, "yuri");
    sim.set_reading(slow, false);
    let big = "z".repeat(1000);
    let counts: Vec<u64> = (0..8)
        .map(|_| {
            let body = format!(r#"{{"to":{},"payload":"{big}"}}"#, user("yuri"));
            let caller = sim.request(0, "POST", "/v1/push", &body);
            let (_, answer) = sim.answer(caller).expect("answered");
            answer["online"].as_u64().unwrap_or(99)
        })
        .collect();
    assert_eq!(sim.cores[1].stats.slow_consumer_disconnects, 1);
    let queued = counts.iter().take_while(|&&n| n == 1).count();
    assert!(queued > 0 && queued < counts.len(), "{counts:?}");
    assert!(
        counts[queued..].iter().all(|&n| n == 0),
        "the overflowing push and those after it reached nobody: {counts:?}"
    );
}

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

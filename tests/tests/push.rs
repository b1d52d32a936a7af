//! End-to-end tests of push delivery: the real gateway on 2 shards, real
//! clients, the push API over real HTTP.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http, token};
use protocol::client::{ClientConfig, ClientEvent};
use protocol::proto::{KickCode, Push};
use serde_json::{Value, json};

/// The shard a session lives on, from its Welcome's session id.
fn shard_of(c: &Client) -> u32 {
    let w = c.session.welcome().expect("established");
    u32::from_str_radix(w.session.split('-').next().unwrap(), 16).unwrap()
}

/// The pushes the client gets: waits up to `window` for the first, then
/// takes whatever else is already on its way (a short grace), so a
/// duplicate shows up as a second entry.
fn pushes(c: &mut Client, window: Duration) -> Vec<Push> {
    let Some(first) = c.next_push(window) else {
        return Vec::new();
    };
    let mut got = vec![first];
    got.extend(later_pushes(c, Duration::from_millis(5)));
    got
}

/// Pushes arriving within `window` (none expected, usually).
fn later_pushes(c: &mut Client, window: Duration) -> Vec<Push> {
    let mut got = Vec::new();
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        match c.next_event(deadline - Instant::now()) {
            Some(ClientEvent::Push(p)) => got.push(p),
            Some(_) => {}
            None => break,
        }
    }
    got
}

fn post(gw: &Gateway, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(gw.control, "POST", path, &body.to_string()).expect("request");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let (status, text) = http(gw.control, "GET", path, "").expect("request");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until `n` subscriptions are recorded and topic owners have heard.
fn wait_subscriptions(gw: &Gateway, n: u64) {
    assert_eq!(gw.wait_total("subscriptions", n), n);
    std::thread::sleep(Duration::from_millis(100));
}

fn subscribe(c: &mut Client, topic: &str) {
    c.send_with(|s, out| s.subscribe(vec![topic.to_string()], out));
    assert!(c.ping_pong(), "session lost after subscribing");
}

const WINDOW: Duration = Duration::from_millis(400);

#[test]
fn unicast_reaches_a_user_on_the_other_shard() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..16)
        .map(|i| Client::established(gw.client, &format!("uni{i}")))
        .collect();
    let target = clients
        .iter()
        .position(|c| shard_of(c) == 1)
        .expect("someone on shard 1");
    let user = format!("uni{target}");
    // Push from whichever shard takes the control connection, several times,
    // so both same-shard and cross-shard routing are exercised.
    for n in 0..4 {
        let (status, body) = post(
            &gw,
            "/v1/push",
            &json!({"to": {"user": user}, "payload": format!("hello {n}")}),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body["id"].as_u64().is_some());
        let got = pushes(&mut clients[target], WINDOW);
        assert_eq!(got.len(), 1, "push {n}: {got:?}");
        assert_eq!(&got[0].payload[..], format!("hello {n}").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        if i != target {
            assert!(
                later_pushes(c, Duration::from_millis(10)).is_empty(),
                "client {i} got someone else's push"
            );
        }
    }
}

#[test]
fn a_user_with_sessions_on_both_shards_gets_each_once() {
    let gw = Gateway::start(2, "");
    let mut sessions: Vec<Client> = Vec::new();
    while !(sessions.iter().any(|c| shard_of(c) == 0) && sessions.iter().any(|c| shard_of(c) == 1))
    {
        assert!(
            sessions.len() < 40,
            "could not land sessions on both shards"
        );
        sessions.push(Client::established(gw.client, "multi"));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (status, _) = post(
        &gw,
        "/v1/push",
        &json!({"to": {"user": "multi"}, "payload": "both"}),
    );
    assert_eq!(status, 200);
    for (i, c) in sessions.iter_mut().enumerate() {
        let got = pushes(c, WINDOW);
        assert_eq!(
            got.len(),
            1,
            "session {i} on shard {}: {got:?}",
            shard_of(c)
        );
    }
}

#[test]
fn topic_multicast_reaches_exactly_the_subscribers() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..20)
        .map(|i| Client::established(gw.client, &format!("t{i}")))
        .collect();
    for c in clients.iter_mut().step_by(2) {
        subscribe(c, "news");
    }
    wait_subscriptions(&gw, 10);
    assert!(
        clients.iter().step_by(2).any(|c| shard_of(c) == 0)
            && clients.iter().step_by(2).any(|c| shard_of(c) == 1)
    );
    let (status, _) = post(
        &gw,
        "/v1/push",
        &json!({"to": {"topic": "news"}, "payload": "extra"}),
    );
    assert_eq!(status, 200);
    for (i, c) in clients.iter_mut().enumerate() {
        let got = if i % 2 == 0 {
            pushes(c, WINDOW)
        } else {
            later_pushes(c, Duration::from_millis(30))
        };
        if i % 2 == 0 {
            assert_eq!(got.len(), 1, "subscriber {i}: {got:?}");
            assert_eq!(got[0].topic, "news");
        } else {
            assert!(got.is_empty(), "non-subscriber {i} got {got:?}");
        }
    }
    // After unsubscribing, nothing more arrives.
    clients[0].send_with(|s, out| s.unsubscribe(vec!["news".into()], out));
    assert!(clients[0].ping_pong());
    assert_eq!(gw.wait_total("subscriptions", 9), 9);
    post(
        &gw,
        "/v1/push",
        &json!({"to": {"topic": "news"}, "payload": "again"}),
    );
    assert!(pushes(&mut clients[0], Duration::from_millis(200)).is_empty());
    assert_eq!(pushes(&mut clients[2], WINDOW).len(), 1);
}

#[test]
fn broadcast_reaches_every_connection_exactly_once() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..120)
        .map(|i| Client::established(gw.client, &format!("b{i}")))
        .collect();
    let (status, _) = post(
        &gw,
        "/v1/push",
        &json!({"to": {"all": true}, "payload": "to everyone", "ack": true}),
    );
    assert_eq!(status, 200);
    for (i, c) in clients.iter_mut().enumerate() {
        let got = pushes(c, Duration::from_secs(2));
        assert_eq!(got.len(), 1, "client {i}: {got:?}");
        assert!(got[0].ack);
        let id = got[0].id;
        c.send_with(|s, out| s.ack(vec![id], out));
    }
    std::thread::sleep(Duration::from_millis(200));
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            later_pushes(c, Duration::from_millis(1)).is_empty(),
            "client {i} got a duplicate"
        );
    }
    assert_eq!(gw.wait_total("deliveries", 120), 120);
    assert_eq!(gw.wait_total("acks", 120), 120);
}

#[test]
fn app_filtering() {
    let gw = Gateway::start(2, "");
    let with = |apps: &[&str], user: &str| {
        let mut c = Client::connect_with(
            gw.client,
            ClientConfig {
                token: token(user),
                apps: apps.iter().map(|s| s.to_string()).collect(),
                ..ClientConfig::default()
            },
        );
        c.handshake();
        c
    };
    let mut chat = with(&["chat"], "a1");
    let mut feed = with(&["feed"], "a2");
    let mut both = with(&["chat", "feed"], "a3");
    let mut none = with(&[], "a4");
    post(
        &gw,
        "/v1/push",
        &json!({"to": {"all": true}, "app": "chat", "payload": "for chat"}),
    );
    assert_eq!(pushes(&mut chat, WINDOW).len(), 1);
    assert_eq!(pushes(&mut both, WINDOW).len(), 1);
    assert!(later_pushes(&mut feed, Duration::from_millis(50)).is_empty());
    assert!(later_pushes(&mut none, Duration::from_millis(50)).is_empty());
    post(
        &gw,
        "/v1/push",
        &json!({"to": {"all": true}, "payload": "for all"}),
    );
    for c in [&mut chat, &mut feed, &mut both, &mut none] {
        assert_eq!(
            pushes(c, WINDOW).len(),
            1,
            "an app-less push reaches every session"
        );
    }
    post(
        &gw,
        "/v1/push",
        &json!({"to": {"user": "a2"}, "app": "chat", "payload": "wrong app"}),
    );
    assert!(pushes(&mut feed, Duration::from_millis(200)).is_empty());
}

#[test]
fn a_paced_broadcast_takes_the_time_its_rate_implies() {
    let gw = Gateway::start(2, "");
    let n = 60;
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::established(gw.client, &format!("p{i}")))
        .collect();
    let rate = 100;
    let started = Instant::now();
    let (status, _) = post(
        &gw,
        "/v1/push",
        &json!({"to": {"all": true}, "payload": "slowly", "rate": rate}),
    );
    assert_eq!(status, 200);
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(pushes(c, Duration::from_secs(3)).len(), 1, "client {i}");
    }
    let took = started.elapsed();
    // n recipients at `rate`/s cannot be done in much less than n/rate s
    // (each shard sends its first one at once).
    let floor = Duration::from_millis((n as u64 - 2) * 1000 / rate);
    assert!(
        took >= floor,
        "paced broadcast finished in {took:?}, faster than {floor:?}"
    );
    assert!(
        took < floor * 3,
        "paced broadcast took {took:?}, far slower than its rate"
    );
}

#[test]
fn presence_query_and_kick() {
    let gw = Gateway::start(2, "");
    let mut phone = Client::connect_with(
        gw.client,
        ClientConfig {
            token: token("pk"),
            device: "phone".into(),
            apps: vec!["chat".into()],
            ..ClientConfig::default()
        },
    );
    phone.handshake();
    let mut laptop = Client::connect_with(
        gw.client,
        ClientConfig {
            token: token("pk"),
            device: "laptop".into(),
            ..ClientConfig::default()
        },
    );
    laptop.handshake();
    let _other = Client::established(gw.client, "someone-else");
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = get(&gw, "/v1/users/pk");
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{body}");
    let mut devices: Vec<&str> = sessions
        .iter()
        .map(|s| s["device"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, vec!["laptop", "phone"]);
    let phone_row = sessions.iter().find(|s| s["device"] == "phone").unwrap();
    assert_eq!(phone_row["apps"], json!(["chat"]));
    assert!(phone_row["since"].as_u64().unwrap() > 1_700_000_000);
    assert!(phone_row["shard"].as_u64().unwrap() < 2);
    assert_eq!(
        phone_row["session"],
        json!(phone.session.welcome().unwrap().session)
    );

    let (status, body) = get(&gw, "/v1/users/nobody");
    assert_eq!(
        (status, body["sessions"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    let (status, body) = post(
        &gw,
        "/v1/kick",
        &json!({"user": "pk", "reason": "account closed"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kicked"], json!(2));
    for c in [&mut phone, &mut laptop] {
        let (closed, events) = c.wait_closed(Duration::from_secs(5));
        let kick = events.iter().find_map(|e| match e {
            ClientEvent::Kick(k) => Some(k.clone()),
            _ => None,
        });
        let kick = kick.expect("a Kick");
        assert_eq!(kick.code, KickCode::Admin as u32);
        assert_eq!(kick.reason, "account closed");
        assert!(closed);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (_, body) = get(&gw, "/v1/users/pk");
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(0), "{body}");
}

/// `name{labels} value` lines of a Prometheus text body, summed by name.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .expect("every sample line is `series value`");
        let value: f64 = value.parse().expect("sample values are numbers");
        let metric = series.split('{').next().unwrap();
        if series.contains('{') {
            assert!(series.ends_with('}'), "unterminated labels: {line}");
        }
        if metric == name {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

#[test]
fn metrics_are_prometheus_text_and_match_what_happened() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..30)
        .map(|i| Client::established(gw.client, &format!("m{i}")))
        .collect();
    post(
        &gw,
        "/v1/push",
        &json!({"to": {"all": true}, "payload": "counted"}),
    );
    for c in clients.iter_mut() {
        assert_eq!(pushes(c, WINDOW).len(), 1);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = http(gw.control, "GET", "/metrics", "").unwrap();
        assert_eq!(status, 200);
        let deliveries = metric_sum(&text, "gateway_deliveries_total");
        let accepted = metric_sum(&text, "gateway_pushes_accepted_total");
        let handshakes = metric_sum(&text, "gateway_handshakes_ok_total");
        let connections = metric_sum(&text, "gateway_connections");
        if deliveries == Some(30.0) && connections == Some(30.0) {
            assert_eq!(accepted, Some(1.0));
            assert_eq!(handshakes, Some(30.0));
            assert!(
                text.contains("gateway_push_fanout_seconds_bucket"),
                "no fan-out histogram"
            );
            assert!(text.contains("shard=\"0\"") && text.contains("shard=\"1\""));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never matched: deliveries {deliveries:?}, connections {connections:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn malformed_http_and_json_get_4xx_and_the_gateway_keeps_serving() {
    let gw = Gateway::start(2, "");
    let mut c = Client::established(gw.client, "survivor");
    let raw = |bytes: &[u8]| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        e2e_tests::parse_response(&out).map(|(st, _)| st)
    };
    assert_eq!(raw(b"\x00\x01\x02 garbage\r\n\r\n"), Some(400));
    assert_eq!(
        raw(b"POST /v1/push HTTP/1.1\r\nContent-Length: nope\r\n\r\n"),
        Some(400)
    );
    for (body, why) in [
        ("{not json", "syntax"),
        (r#"{"to": {}, "payload": "x"}"#, "no target"),
        (
            r#"{"to": {"user": "a", "topic": "b"}, "payload": "x"}"#,
            "two targets",
        ),
        (r#"{"to": {"all": true}}"#, "no payload"),
        (
            r#"{"to": {"all": true}, "payload_b64": "***"}"#,
            "bad base64",
        ),
        (
            r#"{"to": {"all": true}, "payload": "x", "surprise": 1}"#,
            "unknown field",
        ),
    ] {
        let (status, text) = http(gw.control, "POST", "/v1/push", body).unwrap();
        assert_eq!(status, 400, "{why}: {text}");
        assert!(text.contains("error"), "{why}: {text}");
    }
    assert_eq!(http(gw.control, "GET", "/v1/nothing", "").unwrap().0, 404);
    assert_eq!(http(gw.control, "DELETE", "/v1/push", "").unwrap().0, 405);
    assert_eq!(http(gw.control, "POST", "/v1/kick", "[]").unwrap().0, 400);
    assert_eq!(http(gw.control, "GET", "/healthz", "").unwrap().0, 200);
    let (status, body) = post(
        &gw,
        "/v1/push",
        &json!({"to": {"user": "survivor"}, "payload_b64": "aGk="}),
    );
    assert_eq!(status, 200, "{body}");
    let got = pushes(&mut c, WINDOW);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"hi");
    let (status, body) = post(&gw, "/v1/push/batch", &json!(null));
    assert_eq!(
        status, 200,
        "an empty-ish batch is a batch of errors: {body}"
    );
    let batch = "{\"to\":{\"user\":\"survivor\"},\"payload\":\"one\"}\nnot json\n{\"to\":{\"user\":\"survivor\"},\"payload\":\"two\"}\n";
    let (status, text) = http(gw.control, "POST", "/v1/push/batch", batch).unwrap();
    assert_eq!(status, 200);
    let results: Value = serde_json::from_str(&text).unwrap();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results[0]["id"].is_u64() && results[1]["error"].is_string() && results[2]["id"].is_u64()
    );
    assert_eq!(pushes(&mut c, WINDOW).len(), 2);
}

#[test]
fn drain_kicks_everyone_with_hints_and_stops_accepting() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..10)
        .map(|i| Client::established(gw.client, &format!("d{i}")))
        .collect();
    let (status, body) = post(
        &gw,
        "/v1/drain",
        &json!({"rate": 1000, "reconnect": ["127.0.0.1:9999"], "retry_after_ms": 250}),
    );
    assert_eq!(status, 200, "{body}");
    for c in clients.iter_mut() {
        let (closed, events) = c.wait_closed(Duration::from_secs(5));
        let kick = events.iter().find_map(|e| match e {
            ClientEvent::Kick(k) => Some(k.clone()),
            _ => None,
        });
        let kick = kick.expect("a Kick");
        assert_eq!(kick.code, KickCode::Drain as u32);
        assert_eq!(kick.reconnect, vec!["127.0.0.1:9999"]);
        assert_eq!(kick.retry_after_ms, 250);
        assert!(closed);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        std::net::TcpStream::connect_timeout(&gw.client, Duration::from_millis(300)).is_err(),
        "still accepting"
    );
    assert_eq!(get(&gw, "/healthz").0, 200, "control API keeps serving");
}

#[test]
fn a_control_listener_off_loopback_requires_the_bearer_token() {
    let port = e2e_tests::free_port();
    let gw = Gateway::start_with_control(
        2,
        "[listen]\ncontrol_token = \"let-me-in\"\n",
        format!("0.0.0.0:{port}").parse().unwrap(),
    );
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let request = |auth: Option<&str>| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(local).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let auth = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /v1/stats HTTP/1.1\r\n{auth}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        e2e_tests::parse_response(&out).map(|(st, _)| st)
    };
    assert_eq!(request(None), Some(401));
    assert_eq!(request(Some("wrong")), Some(401));
    assert_eq!(request(Some("let-me-in")), Some(200));
    assert_eq!(
        http(local, "GET", "/healthz", "").unwrap().0,
        200,
        "health stays open"
    );
    drop(gw);
}

#[test]
fn a_batch_of_pushes_arrives_whole_and_in_order_per_target() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..20)
        .map(|i| Client::established(gw.client, &format!("bb{i}")))
        .collect();
    subscribe(&mut clients[0], "side");
    wait_subscriptions(&gw, 1);
    // Broadcasts and topic pushes interleaved: runs of the same target are
    // merged, and each target's pushes keep their order. A topic push takes
    // an extra hop through the topic's owner shard, so its place relative
    // to broadcasts is not promised (docs/PUSH.md, "Ordering").
    let plan = [
        ("all", "b1"),
        ("all", "b2"),
        ("all", "b3"),
        ("side", "t1"),
        ("all", "b4"),
        ("side", "t2"),
        ("side", "t3"),
        ("all", "b5"),
    ];
    let lines: Vec<String> = plan
        .iter()
        .map(|(to, p)| match *to {
            "all" => json!({"to": {"all": true}, "payload": p}).to_string(),
            topic => json!({"to": {"topic": topic}, "payload": p}).to_string(),
        })
        .collect();
    let (status, text) = http(gw.control, "POST", "/v1/push/batch", &lines.join("\n")).unwrap();
    assert_eq!(status, 200, "{text}");
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        let want = if i == 0 { 8 } else { 5 };
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < want && Instant::now() < deadline {
            got.extend(pushes(c, Duration::from_secs(1)));
        }
        let payloads: Vec<String> = got
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        let of = |prefix: char| -> Vec<&str> {
            payloads
                .iter()
                .map(String::as_str)
                .filter(|p| p.starts_with(prefix))
                .collect()
        };
        assert_eq!(payloads.len(), want, "client {i} got {payloads:?}");
        assert_eq!(of('b'), ["b1", "b2", "b3", "b4", "b5"], "client {i}");
        if i == 0 {
            assert_eq!(of('t'), ["t1", "t2", "t3"], "subscriber");
        }
        let mut ids: Vec<u64> = got.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), want, "every push keeps its own id");
    }
    assert_eq!(gw.wait_total("deliveries", 20 * 5 + 3), 103);
    assert_eq!(gw.wait_total("pushes_accepted", 8), 8);
}

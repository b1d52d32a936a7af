//! Regression tests for defects an adversarial run found (issue 14): each
//! drives the real gateway with a hostile client and checks that strangers
//! are unharmed and that nothing a client sends outlives its session.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http, token};
use protocol::client::{ClientConfig, ClientEvent};
use protocol::codec;
use protocol::proto::{ErrorCode, KickCode, frame::Kind};

/// A client that says Hello with `cfg` and returns its first event.
fn hello(addr: SocketAddr, cfg: ClientConfig) -> (Client, Option<ClientEvent>) {
    let mut c = Client::connect_with(addr, cfg);
    let mut out = Vec::new();
    c.session.start(&mut out);
    c.send_raw(&out);
    let first = c.next_event(Duration::from_secs(5));
    (c, first)
}

fn cfg(user: &str) -> ClientConfig {
    ClientConfig {
        token: token(user),
        device: "e2e".into(),
        ..ClientConfig::default()
    }
}

/// The code of an Error event (`None` for anything else).
fn error_code(e: &Option<ClientEvent>) -> Option<u32> {
    match e {
        Some(ClientEvent::Error(err)) => Some(err.code),
        _ => None,
    }
}

/// Waits until the gateway holds no connection (closes are asynchronous).
fn wait_no_connections(gw: &Gateway) {
    let left = gw.wait_total_until("connections", Duration::from_secs(10), |v| v == 0);
    assert_eq!(left, 0, "connections still open");
}

/// A client loops Hello → Welcome → Bye → close as fast as it can while
/// strangers connect: the close sequence of its connections must never
/// land on a stranger's connection that reuses the descriptor slot.
#[test]
fn a_bye_then_close_loop_harms_no_stranger() {
    let gw = Gateway::start(1, "");
    let addr = gw.client;
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut loops = 0u32;
            let mut bye = Vec::new();
            codec::encode_frame(&codec::frame(Kind::Bye(Default::default())), &mut bye);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && loops < 50_000 {
                let (mut c, first) = hello(addr, cfg("attacker"));
                if matches!(first, Some(ClientEvent::Welcome(_))) {
                    let _ = c.stream.write_all(&bye);
                }
                drop(c);
                loops += 1;
            }
            loops
        })
    };
    let mut victims = Vec::new();
    let mut refused = Vec::new();
    for i in 0..1500 {
        let (c, first) = hello(addr, cfg(&format!("victim-{i}")));
        match first {
            Some(ClientEvent::Welcome(_)) => victims.push(c),
            other => refused.push(format!("victim-{i}: {other:?}")),
        }
    }
    // Let the attacker go on a little longer against established sessions.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let loops = attacker.join().unwrap();
    let mut dead = 0;
    for c in &mut victims {
        if !c.ping_pong() {
            dead += 1;
        }
    }
    assert!(loops > 100, "the attacker ran only {loops} loops");
    assert!(
        refused.is_empty() && dead == 0,
        "{} of 1500 strangers got no Welcome (first: {:?}), {dead} died later; attacker loops: {loops}",
        refused.len(),
        refused.first()
    );
}

/// A Hello that declares more apps than `[protocol] max_apps` is refused
/// with LIMIT_EXCEEDED, and so is an app name longer than `max_app_len`.
#[test]
fn hello_with_too_many_or_too_long_apps_is_refused() {
    let gw = Gateway::start(1, "");
    let many = ClientConfig {
        apps: (0..10_000).map(|i| i.to_string()).collect(),
        ..cfg("greedy")
    };
    let (mut c, first) = hello(gw.client, many);
    assert_eq!(
        error_code(&first),
        Some(ErrorCode::LimitExceeded as u32),
        "{first:?}"
    );
    assert!(c.wait_closed(Duration::from_secs(2)).0, "not closed");
    let long = ClientConfig {
        apps: vec!["a".repeat(1000)],
        ..cfg("verbose")
    };
    let (_c, first) = hello(gw.client, long);
    assert_eq!(
        error_code(&first),
        Some(ErrorCode::LimitExceeded as u32),
        "{first:?}"
    );
}

/// A device label longer than `[protocol] max_device_len` is refused.
#[test]
fn an_oversized_device_label_is_refused() {
    let gw = Gateway::start(1, "");
    let big = ClientConfig {
        device: "d".repeat(32 * 1024),
        ..cfg("labeller")
    };
    let (mut c, first) = hello(gw.client, big);
    assert_eq!(
        error_code(&first),
        Some(ErrorCode::LimitExceeded as u32),
        "{first:?}"
    );
    assert!(c.wait_closed(Duration::from_secs(2)).0, "not closed");
}

/// App names and device labels are held only while a session uses them:
/// sessions that declared many distinct apps and labels come and go, and
/// afterwards the shard's tables are empty and app-filtered pushes reach
/// the clients that declare `chat`.
#[test]
fn app_names_and_device_labels_are_reclaimed_when_sessions_end() {
    let gw = Gateway::start(1, "");
    // 40 sessions x 8 distinct apps: far more names than a shard tells apart.
    for i in 0..40 {
        let junk = ClientConfig {
            apps: (0..8).map(|j| format!("junk-{i}-{j}")).collect(),
            device: format!("device-{i}-{}", "x".repeat(100)),
            ..cfg(&format!("junk-{i}"))
        };
        let (_c, _first) = hello(gw.client, junk);
    }
    wait_no_connections(&gw);
    assert_eq!(
        gw.total("app_names"),
        0,
        "app names outlived their sessions"
    );
    assert_eq!(
        gw.total("device_labels"),
        0,
        "device labels outlived their sessions"
    );
    let mut chat = Vec::new();
    for i in 0..20 {
        let c = ClientConfig {
            apps: vec!["chat".into()],
            ..cfg(&format!("chatter-{i}"))
        };
        let (c, first) = hello(gw.client, c);
        assert!(matches!(first, Some(ClientEvent::Welcome(_))), "{first:?}");
        chat.push(c);
    }
    let mut got = 0;
    for (i, c) in chat.iter_mut().enumerate() {
        let body =
            format!(r#"{{"to": {{"user": "chatter-{i}"}}, "app": "chat", "payload": "hi"}}"#);
        let (status, text) = http(gw.control, "POST", "/v1/push", &body).unwrap();
        assert_eq!(status, 200, "{text}");
        if c.next_push(Duration::from_secs(2))
            .is_some_and(|p| p.app == "chat")
        {
            got += 1;
        }
    }
    assert_eq!(got, 20, "app-filtered pushes lost");
}

/// With `slow_consumer = "disconnect"` a client that stops reading is
/// closed; it gets the best-effort Kick once it reads again, and the
/// queued-bytes gauge falls back to 0 with the connection.
#[test]
fn a_slow_consumer_is_kicked_and_its_queued_bytes_are_released() {
    let gw = Gateway::start(
        1,
        "[shard]\noutbound_queue_bytes = 65536\nslow_consumer = \"disconnect\"\n\
         [protocol]\nclose_linger_ms = 3000\n",
    );
    let mut c = Client::connect(gw.client, &token("sloth"));
    c.handshake();
    let payload = "p".repeat(60_000);
    let body = format!(r#"{{"to": {{"user": "sloth"}}, "payload": "{payload}"}}"#);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The kernel's socket buffers absorb megabytes before the queue fills.
    while gw.total("slow_consumer_disconnects") == 0 {
        assert!(Instant::now() < deadline, "never disconnected");
        for _ in 0..20 {
            let (status, text) = http(gw.control, "POST", "/v1/push", &body).unwrap();
            assert_eq!(status, 200, "{text}");
        }
    }
    // Read everything now: the last frame before the close is the Kick.
    let mut last = None;
    let (closed, events) = c.wait_closed(Duration::from_secs(10));
    for e in events {
        if !matches!(e, ClientEvent::Push(_) | ClientEvent::Closed(_)) {
            last = Some(e);
        }
    }
    assert!(closed, "not closed");
    match last {
        Some(ClientEvent::Kick(k)) => assert_eq!(k.code, KickCode::SlowConsumer as u32),
        other => panic!("expected a slow-consumer Kick, got {other:?}"),
    }
    wait_no_connections(&gw);
    let left = gw.wait_total_until("outbound_queued_bytes", Duration::from_secs(2), |v| v == 0);
    assert_eq!(left, 0, "queued-bytes gauge leaked");
}

/// After an Error the gateway shuts its side down and closes within the
/// linger (`close_linger_ms`, 200 ms by default), even if the client
/// never closes its side.
#[test]
fn the_gateway_closes_promptly_after_an_error() {
    let gw = Gateway::start(1, "");
    let mut s = TcpStream::connect(gw.client).unwrap();
    // A frame whose length prefix is zero: BAD_FRAME.
    s.write_all(&[0, 0, 0, 0]).unwrap();
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    // Read the Error and then the FIN; the client never closes.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The socket is freed on the gateway's side soon after, too.
    wait_no_connections(&gw);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "close took {took:?}");
}

/// Rejected handshakes leave a trace in the log, rate-limited: a client
/// retrying a wrong token in a loop gets one line at once, then one
/// summary per code every 10 s (the summary's arithmetic is unit-tested).
#[test]
fn rejected_handshakes_are_logged_without_flooding() {
    let gw = Gateway::start(1, "");
    let forged = protocol::auth::mint_hs256(
        b"not-the-gateway-secret-not-the-gateway-secret",
        &protocol::auth::Claims {
            sub: "mallory".into(),
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..50 {
        let (_c, first) = hello(
            gw.client,
            ClientConfig {
                token: forged.clone(),
                ..ClientConfig::default()
            },
        );
        assert_eq!(error_code(&first), Some(ErrorCode::Unauthorized as u32));
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("handshakes rejected"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}\n{log}");
    assert!(lines[0].contains("ERROR_CODE_UNAUTHORIZED"), "{}", lines[0]);
}

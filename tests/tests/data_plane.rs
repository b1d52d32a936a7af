//! End-to-end tests of the data plane: the real `gateway` binary, real TCP
//! sockets, the protocol crate's client session as the client.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, token, token_with, unix_now};
use protocol::auth::Claims;
use protocol::client::{ClientConfig, ClientEvent};
use protocol::codec::encode_frame;
use protocol::proto::{Ack, ErrorCode, Frame, KickCode, Ping, frame::Kind};

const SECS: Duration = Duration::from_secs(5);

/// The Error frame the gateway sent before closing, if any.
fn error_then_close(c: &mut Client) -> Option<u32> {
    let (closed, events) = c.wait_closed(SECS);
    assert!(closed, "connection still open; events: {events:?}");
    events.into_iter().find_map(|e| match e {
        ClientEvent::Error(err) => Some(err.code),
        _ => None,
    })
}

fn raw_frame(kind: Kind) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&Frame { kind: Some(kind) }, &mut out);
    out
}

#[test]
fn handshake_welcomes_the_token_subject() {
    let gw = Gateway::start(2, "");
    let mut c = Client::connect(gw.client, &token("alice"));
    let w = c.handshake();
    assert_eq!(w.user, "alice");
    assert!(!w.session.is_empty());
    assert_eq!(
        w.heartbeat_ms, 30_000,
        "default heartbeat when the client proposes none"
    );
    assert!(w.server_time_ms / 1000 >= unix_now() - 5);
    assert_eq!(gw.wait_total("handshakes_ok", 1), 1);
}

#[test]
fn heartbeat_is_clamped_to_the_configured_bounds() {
    let gw = Gateway::start(
        1,
        "[protocol]\nheartbeat_min_ms = 10000\nheartbeat_max_ms = 60000\n",
    );
    for (proposed, expected) in [(1_000, 10_000), (45_000, 45_000), (900_000, 60_000)] {
        let mut c = Client::connect_with(
            gw.client,
            ClientConfig {
                token: token("hb"),
                heartbeat_ms: proposed,
                ..ClientConfig::default()
            },
        );
        assert_eq!(c.handshake().heartbeat_ms, expected, "proposed {proposed}");
    }
}

#[test]
fn bad_and_expired_tokens_get_an_error_and_close() {
    let gw = Gateway::start(1, "");
    let mut bad = Client::connect(gw.client, "not-a-jwt");
    bad.send_with(|s, out| s.start(out));
    assert_eq!(
        error_then_close(&mut bad),
        Some(ErrorCode::Unauthorized as u32)
    );

    let forged = protocol::auth::mint_hs256(
        b"another-secret",
        &Claims {
            sub: "mallory".into(),
            exp: Some(unix_now() + 600),
            ..Claims::default()
        },
    )
    .unwrap();
    let mut forged = Client::connect(gw.client, &forged);
    forged.send_with(|s, out| s.start(out));
    assert_eq!(
        error_then_close(&mut forged),
        Some(ErrorCode::Unauthorized as u32)
    );

    let expired = token_with(Claims {
        sub: "bob".into(),
        exp: Some(unix_now() - 3600),
        ..Claims::default()
    });
    let mut old = Client::connect(gw.client, &expired);
    old.send_with(|s, out| s.start(out));
    assert_eq!(
        error_then_close(&mut old),
        Some(ErrorCode::TokenExpired as u32)
    );
    assert_eq!(gw.wait_total("handshakes_unauthorized", 2), 2);
    assert_eq!(gw.wait_total("handshakes_expired", 1), 1);
}

#[test]
fn no_hello_in_time_closes() {
    let gw = Gateway::start(
        1,
        "[protocol]\nhandshake_timeout_ms = 300\n[shard]\ntimer_tick_ms = 20\n",
    );
    let mut c = Client::connect(gw.client, &token("slow"));
    let started = Instant::now();
    let (closed, _) = c.wait_closed(SECS);
    assert!(closed, "no close after the handshake timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert_eq!(gw.wait_total("handshakes_timeout", 1), 1);
}

#[test]
fn ping_gets_pong_with_the_same_id() {
    let gw = Gateway::start(1, "");
    let mut c = Client::established(gw.client, "pinger");
    for _ in 0..3 {
        assert!(c.ping_pong());
    }
}

/// A client's last frame and its FIN can reach the gateway together (here
/// the gateway is stopped while both arrive, so one readiness report covers
/// them). The gateway still reads on to the end and closes the session at
/// once, not after the idle timeout (the default heartbeat gives minutes).
/// The last frame is an Ack, which gets no answer: an answer would bring
/// back the client's ACK, a new readiness report that hides a missed end.
#[test]
fn last_frame_and_fin_together_still_close_at_once() {
    let gw = Gateway::start(1, "");
    let mut c = Client::established(gw.client, "leaver");
    gw.signal(libc::SIGSTOP);
    c.send_raw(&raw_frame(Kind::Ack(Ack { ids: vec![1] })));
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    gw.signal(libc::SIGCONT);
    let (closed, events) = c.wait_closed(SECS);
    assert!(
        closed,
        "session still open after the client's FIN: {events:?}"
    );
    assert_eq!(gw.wait_total("acks", 1), 1, "the last frame was not read");
}

#[test]
fn silence_past_idle_factor_times_heartbeat_closes() {
    let gw = Gateway::start(
        1,
        "[protocol]\nheartbeat_min_ms = 100\nheartbeat_default_ms = 200\nidle_factor = 2.0\n[shard]\ntimer_tick_ms = 20\n",
    );
    let mut c = Client::connect_with(
        gw.client,
        ClientConfig {
            token: token("quiet"),
            heartbeat_ms: 200,
            ..ClientConfig::default()
        },
    );
    assert_eq!(c.handshake().heartbeat_ms, 200);
    // A frame inside the window keeps the session.
    std::thread::sleep(Duration::from_millis(250));
    assert!(c.ping_pong(), "session closed while still talking");
    let silent_from = Instant::now();
    let (closed, _) = c.wait_closed(SECS);
    assert!(closed, "idle session not closed");
    let silent = silent_from.elapsed();
    assert!(
        silent >= Duration::from_millis(350),
        "closed after only {silent:?} of silence"
    );
    assert_eq!(gw.wait_total("idle_timeouts", 1), 1);
}

#[test]
fn bad_input_gets_error_and_close_while_others_stay_up() {
    let gw = Gateway::start(2, "[protocol]\nmax_frame = 1024\n");
    let mut bystander = Client::established(gw.client, "bystander");

    let mut oversize = Client::connect(gw.client, &token("big"));
    oversize.send_raw(&[0, 0, 0x10, 0]);
    assert_eq!(
        error_then_close(&mut oversize),
        Some(ErrorCode::FrameTooLarge as u32)
    );

    let mut garbage = Client::connect(gw.client, &token("junk"));
    garbage.send_raw(&[0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        error_then_close(&mut garbage),
        Some(ErrorCode::BadFrame as u32)
    );

    let mut early = Client::connect(gw.client, &token("early"));
    early.send_raw(&raw_frame(Kind::Ping(Ping { id: 1 })));
    assert_eq!(
        error_then_close(&mut early),
        Some(ErrorCode::HelloRequired as u32)
    );

    let mut zero = Client::connect(gw.client, &token("zero"));
    zero.send_raw(&[0, 0, 0, 0]);
    assert!(error_then_close(&mut zero).is_some());

    // Garbage after a good handshake closes that session only.
    let mut later = Client::established(gw.client, "later");
    later.send_raw(&[0, 0, 0, 3, 1, 2, 3]);
    assert!(error_then_close(&mut later).is_some());

    assert!(bystander.ping_pong(), "a bystander was affected");
    let healthy = Client::established(gw.client, "newcomer");
    drop(healthy);
}

#[test]
fn shard_connection_limit_refuses_with_overloaded() {
    let gw = Gateway::start(1, "[shard]\nmax_connections = 3\n");
    let held: Vec<Client> = (0..3)
        .map(|i| Client::established(gw.client, &format!("u{i}")))
        .collect();
    let mut extra = Client::connect(gw.client, &token("extra"));
    assert_eq!(
        error_then_close(&mut extra),
        Some(ErrorCode::Overloaded as u32)
    );
    assert_eq!(gw.wait_total("refused_max_connections", 1), 1);
    drop(held);
    // Slots come back once the held connections are gone.
    let deadline = Instant::now() + SECS;
    while gw.total("connections") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _again = Client::established(gw.client, "again");
}

#[test]
fn handshakes_in_flight_are_capped() {
    let gw = Gateway::start(1, "[shard]\nmax_handshakes = 2\n");
    let _a = Client::connect(gw.client, &token("a"));
    let _b = Client::connect(gw.client, &token("b"));
    std::thread::sleep(Duration::from_millis(100));
    let mut c = Client::connect(gw.client, &token("c"));
    assert_eq!(error_then_close(&mut c), Some(ErrorCode::Overloaded as u32));
    assert_eq!(gw.wait_total("refused_max_handshakes", 1), 1);
}

fn connect_from(source: &str, gw: &Gateway) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &format!("{source}:0")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(&gw.client.into()).unwrap();
    sock.into()
}

fn client_from(source: &str, gw: &Gateway, user: &str) -> Client {
    Client::over(
        connect_from(source, gw),
        ClientConfig {
            token: token(user),
            ..ClientConfig::default()
        },
    )
}

#[test]
fn per_ip_cap_and_deny_list() {
    let gw = Gateway::start(
        1,
        "[admission]\nmax_connections_per_ip = 2\ndeny = [\"127.0.0.9/32\"]\n",
    );
    let mut a1 = client_from("127.0.0.2", &gw, "a1");
    a1.handshake();
    let mut a2 = client_from("127.0.0.2", &gw, "a2");
    a2.handshake();
    let mut a3 = client_from("127.0.0.2", &gw, "a3");
    assert_eq!(
        error_then_close(&mut a3),
        Some(ErrorCode::Overloaded as u32)
    );
    let mut b1 = client_from("127.0.0.3", &gw, "b1");
    b1.handshake();
    let mut denied = client_from("127.0.0.9", &gw, "d");
    assert_eq!(
        error_then_close(&mut denied),
        Some(ErrorCode::Forbidden as u32)
    );
    assert_eq!(gw.wait_total("refused_per_ip", 1), 1);
    assert_eq!(gw.wait_total("refused_address", 1), 1);
    // Closing one frees its address's slot.
    drop(a1);
    std::thread::sleep(Duration::from_millis(200));
    let mut a4 = client_from("127.0.0.2", &gw, "a4");
    a4.handshake();
}

#[test]
fn allow_list_refuses_everyone_else() {
    let gw = Gateway::start(1, "[admission]\nallow = [\"127.0.0.5\"]\n");
    let mut ok = client_from("127.0.0.5", &gw, "ok");
    ok.handshake();
    let mut other = client_from("127.0.0.6", &gw, "other");
    assert_eq!(
        error_then_close(&mut other),
        Some(ErrorCode::Forbidden as u32)
    );
}

#[test]
fn sigterm_kicks_every_session_and_exits_zero() {
    let mut gw = Gateway::start(
        2,
        "[shutdown]\nreconnect = [\"127.0.0.1:7200\", \"127.0.0.1:7300\"]\nretry_after_ms = 1500\nkick_rate = 1000\ndeadline_ms = 5000\n",
    );
    let mut clients: Vec<Client> = (0..20)
        .map(|i| Client::established(gw.client, &format!("k{i}")))
        .collect();
    gw.signal(libc::SIGTERM);
    for (i, c) in clients.iter_mut().enumerate() {
        let (closed, events) = c.wait_closed(SECS);
        let kick = events.iter().find_map(|e| match e {
            ClientEvent::Kick(k) => Some(k.clone()),
            _ => None,
        });
        let kick = kick.unwrap_or_else(|| panic!("client {i} got no Kick: {events:?}"));
        assert_eq!(kick.code, KickCode::GoingAway as u32);
        assert_eq!(kick.reconnect, vec!["127.0.0.1:7200", "127.0.0.1:7300"]);
        assert_eq!(kick.retry_after_ms, 1500);
        assert!(closed, "client {i} not closed after its Kick");
    }
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        TcpStream::connect_timeout(&gw.client, Duration::from_millis(500)).is_err(),
        "still accepting"
    );
}

#[test]
fn both_shards_accept_connections() {
    let gw = Gateway::start(2, "");
    let clients: Vec<Client> = (0..64)
        .map(|i| Client::established(gw.client, &format!("s{i}")))
        .collect();
    let deadline = Instant::now() + SECS;
    loop {
        let stats = gw.stats();
        let per_shard: Vec<u64> = stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["connections"].as_u64().unwrap())
            .collect();
        assert_eq!(per_shard.len(), 2);
        if per_shard.iter().sum::<u64>() == 64 {
            assert!(
                per_shard.iter().all(|&n| n > 0),
                "one shard got nothing: {per_shard:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts never reached 64: {per_shard:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(clients);
}

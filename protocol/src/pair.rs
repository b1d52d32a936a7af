//! A client and a server session wired back to back through byte buffers,
//! driven with simulated time (in the manner of quinn-proto's `Pair`).

use bytes::Bytes;

use crate::auth::{Claims, JwtVerifier, TokenVerifier, mint_hs256};
use crate::client::{ClientCloseReason, ClientConfig, ClientEvent, ClientSession};
use crate::codec;
use crate::proto::{ErrorCode, KickCode, Push, Reply, Welcome};
use crate::server::{CloseReason, Event, Output, ServerConfig, ServerSession, SessionState};
use crate::time::Millis;

const SECRET: &[u8] = b"pair-secret";
/// Wall clock at simulated time zero, seconds since the Unix epoch.
const EPOCH_S: u64 = 1_800_000_000;

struct Pair {
    now: Millis,
    scfg: ServerConfig,
    verifier: JwtVerifier,
    server: ServerSession,
    client: ClientSession,
    out: Output,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    server_events: Vec<Event>,
    client_events: Vec<ClientEvent>,
}

impl Pair {
    fn new(claims: &Claims, heartbeat_ms: u32) -> Pair {
        let scfg = ServerConfig::default();
        let token = mint_hs256(SECRET, claims).unwrap();
        let ccfg = ClientConfig {
            token,
            device: "test".into(),
            apps: vec!["chat".into()],
            heartbeat_ms,
            ..ClientConfig::default()
        };
        let now = Millis(0);
        let mut client = ClientSession::new(now, ccfg);
        let mut to_server = Vec::new();
        client.start(&mut to_server);
        Pair {
            now,
            server: ServerSession::new(now, &scfg),
            scfg,
            verifier: JwtVerifier::hs256(SECRET, 0),
            client,
            out: Output::new(),
            to_server,
            to_client: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    fn wall_s(&self) -> u64 {
        EPOCH_S + self.now.0 / 1000
    }

    /// What a gateway does with the server's output: authenticate Hellos
    /// (with the verdict a gateway in token mode uses,
    /// [`TokenVerifier::verify_hello`]), queue bytes for the client, keep
    /// the events. The gateway's own handshake handling (interning, the
    /// Welcome's session id, presence) is tested in its shard core.
    fn collect_server_output(&mut self) {
        loop {
            self.to_client.append(&mut self.out.transmit);
            let events: Vec<Event> = self.out.events.drain(..).collect();
            if events.is_empty() {
                return;
            }
            for ev in events {
                if let Event::Hello(hello) = &ev {
                    match self.verifier.verify_hello(hello, self.wall_s()) {
                        Ok(id) => {
                            let w = Welcome {
                                session: "s-1".into(),
                                user: id.user,
                                server_time_ms: self.wall_s() * 1000,
                                ..Welcome::default()
                            };
                            self.server.accept(self.now, &self.scfg, w, &mut self.out);
                        }
                        Err(e) => self
                            .server
                            .reject(e.error_code(), &e.to_string(), &mut self.out),
                    }
                }
                self.server_events.push(ev);
            }
        }
    }

    /// Delivers bytes both ways until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            if !self.to_server.is_empty() {
                let data = std::mem::take(&mut self.to_server);
                self.server
                    .handle_input(self.now, &data, &self.scfg, &mut self.out);
                self.collect_server_output();
                moved = true;
            }
            if !self.to_client.is_empty() {
                let data = std::mem::take(&mut self.to_client);
                self.client.handle_input(
                    self.now,
                    &data,
                    &mut self.client_events,
                    &mut self.to_server,
                );
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances simulated time to `until`, firing each side's timers at their
    /// deadlines and delivering bytes instantly.
    fn advance_to(&mut self, until: Millis) {
        loop {
            self.drive();
            let next = [self.server.deadline(&self.scfg), self.client.deadline()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.server
                        .handle_timeout(self.now, &self.scfg, &mut self.out);
                    self.collect_server_output();
                    self.client.handle_timeout(self.now, &mut self.to_server);
                }
                _ => break,
            }
        }
        self.now = until;
        self.drive();
    }
}

fn claims(exp: Option<u64>) -> Claims {
    Claims {
        sub: "alice".into(),
        apps: Some(vec!["chat".into()]),
        exp,
        nbf: None,
    }
}

#[test]
fn handshake_subscribe_ping_push_and_idle_timeout() {
    let mut p = Pair::new(&claims(Some(EPOCH_S + 3600)), 6_000);
    p.drive();
    assert!(p.client.is_established());
    assert_eq!(p.server.state(), SessionState::Established);
    assert_eq!(p.server.heartbeat_ms(), 6_000);
    assert_eq!(p.client.heartbeat_ms(), 6_000);
    assert_eq!(p.client.welcome().map(|w| w.user.as_str()), Some("alice"));

    // Subscribe and an uplink reach the gateway as events.
    p.client.subscribe(vec!["news".into()], &mut p.to_server);
    let rid = p
        .client
        .uplink("chat", "echo", Bytes::from_static(b"hi"), &mut p.to_server);
    p.drive();
    assert!(
        p.server_events
            .contains(&Event::Subscribe(vec!["news".into()]))
    );
    assert!(matches!(p.server_events.last(), Some(Event::Uplink(u)) if u.request_id == rid));

    // The gateway answers and pushes (encoded once, as for a broadcast).
    codec::encode_frame(
        &codec::frame(crate::proto::frame::Kind::Reply(Reply {
            request_id: rid,
            status: 200,
            payload: Bytes::from_static(b"hi"),
        })),
        &mut p.to_client,
    );
    let push = Push {
        id: 77,
        app: "chat".into(),
        topic: "news".into(),
        payload: Bytes::from_static(b"headline"),
        ack: true,
        ts_us: 1,
        redelivery: false,
    };
    p.to_client.extend_from_slice(&codec::encode_push(&push));
    p.client.set_auto_ack(true);
    p.drive();
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Reply(r) if r.status == 200))
    );
    assert!(p.client_events.contains(&ClientEvent::Push(push)));
    assert_eq!(p.server_events.last(), Some(&Event::Ack(vec![77])));

    // An hour of heartbeats: the client pings, the server pongs, nobody times out.
    p.advance_to(Millis(3_600_000));
    assert!(!p.server.is_closed() && !p.client.is_closed());
    let pongs = p
        .client_events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Pong(_)))
        .count();
    assert!((590..=601).contains(&pongs), "{pongs} pongs");

    // The client goes silent (stops pinging): the server closes it after 2.5 × heartbeat.
    let silent_from = p.now;
    loop {
        let t = p.server.deadline(&p.scfg).unwrap();
        p.now = t;
        p.server.handle_timeout(t, &p.scfg, &mut p.out);
        p.collect_server_output();
        if p.server.is_closed() {
            break;
        }
    }
    assert_eq!(p.now.since(silent_from), 15_000);
    assert_eq!(
        p.server_events.last(),
        Some(&Event::Closed(CloseReason::IdleTimeout))
    );
    p.drive();
    assert!(
        p.client_events
            .contains(&ClientEvent::Closed(ClientCloseReason::ServerError(
                ErrorCode::IdleTimeout.as_u32()
            )))
    );
}

#[test]
fn expired_token_is_rejected() {
    let mut p = Pair::new(&claims(Some(EPOCH_S - 1)), 0);
    p.drive();
    assert!(p.client.is_closed());
    assert_eq!(
        p.client.close_reason(),
        Some(ClientCloseReason::ServerError(
            ErrorCode::TokenExpired.as_u32()
        ))
    );
    assert_eq!(
        p.server_events.last(),
        Some(&Event::Closed(CloseReason::Rejected(
            ErrorCode::TokenExpired
        )))
    );
}

#[test]
fn app_not_in_token_is_rejected() {
    let c = Claims {
        apps: Some(vec!["other".into()]),
        ..claims(None)
    };
    let mut p = Pair::new(&c, 0);
    p.drive();
    assert_eq!(
        p.client.close_reason(),
        Some(ClientCloseReason::ServerError(
            ErrorCode::Unauthorized.as_u32()
        ))
    );
}

#[test]
fn heartbeat_zero_negotiates_default_and_bye_closes() {
    let mut p = Pair::new(&claims(None), 0);
    p.drive();
    assert_eq!(p.client.heartbeat_ms(), 30_000);
    p.client.bye(&mut p.to_server);
    p.drive();
    assert_eq!(
        p.server_events.last(),
        Some(&Event::Closed(CloseReason::ClientBye))
    );
    assert_eq!(p.client.close_reason(), Some(ClientCloseReason::Bye));
}

#[test]
fn kick_reaches_the_client() {
    let mut p = Pair::new(&claims(None), 0);
    p.drive();
    p.server.kick(
        KickCode::Drain,
        "drain",
        &["b:7100".into()],
        250,
        &mut p.out,
    );
    p.collect_server_output();
    p.drive();
    assert!(p.client_events.iter().any(
        |e| matches!(e, ClientEvent::Kick(k) if k.retry_after_ms == 250 && k.reconnect == ["b:7100"])
    ));
    assert_eq!(
        p.client.close_reason(),
        Some(ClientCloseReason::Kicked(KickCode::Drain.as_u32()))
    );
}

#[test]
fn silent_server_times_the_client_out() {
    let mut p = Pair::new(&claims(None), 5_000);
    p.drive();
    // Pretend the gateway vanished: drop everything it would send.
    loop {
        let t = p.client.deadline().unwrap();
        p.now = t;
        p.client.handle_timeout(t, &mut p.to_server);
        p.to_server.clear();
        if p.client.is_closed() {
            break;
        }
    }
    assert_eq!(p.now, Millis(12_500));
    assert_eq!(
        p.client.close_reason(),
        Some(ClientCloseReason::IdleTimeout)
    );
}

#[test]
fn client_without_hello_hits_handshake_timeout() {
    let mut p = Pair::new(&claims(None), 0);
    p.to_server.clear(); // the Hello never arrives
    p.advance_to(Millis(20_000));
    assert_eq!(
        p.server_events.last(),
        Some(&Event::Closed(CloseReason::HandshakeTimeout))
    );
    assert!(p.client.is_closed());
}

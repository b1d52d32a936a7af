//! A whole gateway in memory, for the core's tests: N [`ShardCore`]s wired
//! with in-memory mailboxes, a simulated clock, simulated streams, and on
//! each stream a real protocol client ([`ClientSession`]). What quinn's
//! `Pair` is for one connection, at the level of shards.
//!
//! The simulation is a driver like the io_uring one: it performs the
//! cores' actions (a send hands the bytes to the client at once, unless
//! the client has stopped reading), carries mail between shards, and
//! moves time forward from deadline to deadline. Nothing touches a socket.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use protocol::auth::{Claims, JwtVerifier, mint_hs256};
use protocol::client::{ClientConfig, ClientEvent, ClientSession};
use protocol::time::Millis;
use tuning::config::GatewayConfig;

use super::{
    Action, Answer, BackendCall, Census, CountingPushIds, Message, ShardCore, StreamOp,
    StreamOpKind, Time,
};
use crate::control::Caller;
use crate::control::http::Request;
use crate::settings::Settings;

pub use super::sim_mqtt::SimMqtt;

/// HS256 secret of the simulated gateway's tokens.
pub const SECRET: &[u8] = b"sim-secret-of-at-least-thirty-two-bytes";
/// Wall clock at simulated time zero, ms since the Unix epoch.
pub const EPOCH_MS: u64 = 1_800_000_000_000;

/// One simulated client connection.
#[derive(Debug)]
pub struct SimClient {
    /// Shard it connected to.
    pub shard: usize,
    /// The connection as the core names it, once the core armed a receive.
    pub conn: Option<(u32, u32)>,
    /// The client's protocol session.
    pub session: ClientSession,
    /// What the client saw.
    pub events: Vec<ClientEvent>,
    /// Bytes the client wrote that the gateway has not read yet.
    to_gateway: Vec<u8>,
    /// Whether the gateway has a receive armed on the stream.
    recv_armed: bool,
    /// Whether the client reads (a slow consumer does not: the gateway's
    /// sends stay in flight).
    pub reading: bool,
    /// A send of the gateway waiting for the client to read.
    stalled_send: Option<StreamOp>,
    /// Whether the client has stopped heartbeating (a dead peer).
    pub silent: bool,
    /// The gateway shut down its write side.
    pub got_fin: bool,
    /// The gateway closed the stream.
    pub closed: bool,
    /// The WebSocket framing of a client of the WebSocket listener.
    pub ws: Option<SimWs>,
    /// The MQTT side of a client of the MQTT listener (its v1 `session`
    /// is unused).
    pub mqtt: Option<SimMqtt>,
}

/// The WebSocket side of a simulated client: its Upgrade request (sent
/// with its first bytes), the answer, then the server's frames.
#[derive(Debug)]
pub struct SimWs {
    key: String,
    request: Option<Vec<u8>>,
    /// Whether v1 frames may follow the request before the 101 came.
    pipeline: bool,
    answer: Vec<u8>,
    /// The server's frames, once the upgrade is answered with 101.
    pub frames: Option<protocol::ws::client::ServerFrames>,
    /// The status of a refused upgrade.
    pub refused: Option<u16>,
}

impl SimWs {
    /// A client that sends `request` (made with `key`) first.
    fn new(request: Vec<u8>, key: String, pipeline: bool) -> Self {
        SimWs {
            key,
            request: Some(request),
            pipeline,
            answer: Vec::new(),
            frames: None,
            refused: None,
        }
    }

    /// Bytes from the gateway: the answer to the upgrade, then frames,
    /// which come out as v1 frames.
    fn take(&mut self, bytes: &[u8]) -> Vec<u8> {
        use protocol::ws::client::{ServerFrames, UpgradeAnswer, read_upgrade_answer};
        let mut v1 = Vec::new();
        if let Some(frames) = &mut self.frames {
            frames.decode(bytes, &mut v1);
            return v1;
        }
        self.answer.extend_from_slice(bytes);
        match read_upgrade_answer(&self.answer, &self.key) {
            UpgradeAnswer::NeedMore => {}
            UpgradeAnswer::Upgraded { consumed } => {
                let mut frames = ServerFrames::new();
                frames.decode(&self.answer[consumed..], &mut v1);
                self.frames = Some(frames);
            }
            UpgradeAnswer::Refused { status, .. } => self.refused = Some(status),
        }
        v1
    }

    /// The close code of the server's close frame, once it came.
    pub fn close_code(&self) -> Option<Option<u16>> {
        self.frames
            .as_ref()
            .and_then(|f| f.closed)
            .map(|c| c.map(|c| c.0))
    }

    /// v1 bytes as the client puts them on the wire: the request first,
    /// then masked binary messages (held back until the upgrade is
    /// answered, unless the client pipelines). Takes what it sends.
    fn wire(&mut self, v1: &mut Vec<u8>) -> Vec<u8> {
        let mut wire = self.request.take().unwrap_or_default();
        if self.pipeline || self.frames.is_some() {
            protocol::ws::client::wrap_v1(v1, [0x11, 0x22, 0x33, 0x44], &mut wire);
            v1.clear();
        }
        wire
    }
}

impl SimClient {
    /// A client of `shard` that writes `first` when its stream is read.
    pub(super) fn new(shard: usize, session: ClientSession, first: Vec<u8>) -> Self {
        SimClient {
            shard,
            conn: None,
            session,
            events: Vec::new(),
            to_gateway: first,
            recv_armed: false,
            reading: true,
            stalled_send: None,
            silent: false,
            got_fin: false,
            closed: false,
            ws: None,
            mqtt: None,
        }
    }

    /// The client reads the whole of the gateway's send `op`, and the send
    /// completes.
    fn read_send(&mut self, core: &mut ShardCore, t: Time, op: StreamOp) {
        let bytes = core.sending(op.key, op.generation).map(<[u8]>::to_vec);
        let bytes = bytes.expect("a send with bytes in flight");
        if let Some(mqtt) = &mut self.mqtt {
            mqtt.take(&bytes);
            core.on_send_done(t, op.key, op.generation, Ok(bytes.len()));
            return;
        }
        let v1 = match &mut self.ws {
            Some(ws) => ws.take(&bytes),
            None => bytes.clone(),
        };
        self.session
            .handle_input(t.now, &v1, &mut self.events, &mut self.to_gateway);
        core.on_send_done(t, op.key, op.generation, Ok(bytes.len()));
    }

    /// Bytes the client writes (frames its session encoded; framed as
    /// binary messages for a WebSocket client).
    pub fn write(&mut self, mut bytes: Vec<u8>) {
        self.to_gateway.append(&mut bytes);
    }

    /// Bytes a WebSocket client writes as they are, ahead of its frames
    /// (the rest of an Upgrade request).
    pub fn write_wire(&mut self, mut bytes: Vec<u8>) {
        if let Some(ws) = &mut self.ws {
            ws.request.get_or_insert_with(Vec::new).append(&mut bytes);
        }
    }

    /// The pushes' payloads the client received, in order.
    pub fn payloads(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Push(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
                _ => None,
            })
            .collect()
    }

    /// The Kick code the client got, if any.
    pub fn kicked(&self) -> Option<u32> {
        self.events.iter().find_map(|e| match e {
            ClientEvent::Kick(k) => Some(k.code),
            _ => None,
        })
    }

    /// The Error code the client got, if any.
    pub fn error(&self) -> Option<u32> {
        self.events.iter().find_map(|e| match e {
            ClientEvent::Error(err) => Some(err.code),
            _ => None,
        })
    }
}

/// The sessions each simulated shard published last: the simulation
/// publishes every core's count whenever it has run them.
#[derive(Debug)]
pub struct SimCensus(Vec<AtomicU64>);

impl Census for SimCensus {
    fn sessions_elsewhere(&self, shard: usize) -> u64 {
        self.0
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != shard)
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// The simulated gateway.
pub struct Sim {
    /// One core per shard.
    pub cores: Vec<ShardCore>,
    /// Simulated monotonic time.
    pub now: Millis,
    /// Every client ever connected (index = stream handle).
    pub clients: Vec<SimClient>,
    inboxes: Vec<VecDeque<Message>>,
    /// Capacity of each shard's inbox.
    pub inbox_capacity: usize,
    /// Answers to control requests: (shard, caller, answer).
    pub answers: Vec<(usize, Caller, Answer)>,
    /// Backend calls the cores made: (shard, call).
    pub backend_calls: Vec<(usize, BackendCall)>,
    /// Shards that stopped accepting.
    pub stopped_accepting: Vec<bool>,
    /// What the cores read as the other shards' sessions.
    pub census: Arc<SimCensus>,
    /// Shards whose mail is lost (a shard that never answers).
    pub deaf: Vec<bool>,
    next_caller: usize,
    actions: Vec<Action>,
}

impl Sim {
    /// A gateway of `shards` shards on the default config changed by
    /// `tweak`.
    pub fn new(shards: usize, tweak: impl FnOnce(&mut GatewayConfig)) -> Sim {
        let mut config = GatewayConfig::default();
        config.shard.count = shards;
        tweak(&mut config);
        // `max_connections = 0` means "as many as the descriptor table
        // holds", resolved as the gateway does at start-up.
        crate::settings::resolve_auto_limits(
            &mut config,
            20_000,
            tuning::driver::Driver::IoUring,
            shards,
        );
        let settings = Arc::new(Settings::new(config, shards).expect("a valid sim config"));
        let verifier = Arc::new(JwtVerifier::hs256(SECRET, 0));
        let ids = Arc::new(CountingPushIds::default());
        let census = Arc::new(SimCensus((0..shards).map(|_| AtomicU64::new(0)).collect()));
        let t = Time {
            now: Millis(0),
            unix_ms: EPOCH_MS,
        };
        let cores = (0..shards)
            .map(|i| {
                let census: Arc<dyn Census> = census.clone();
                ShardCore::new(
                    i,
                    settings.clone(),
                    verifier.clone(),
                    ids.clone(),
                    census,
                    t,
                )
            })
            .collect();
        Sim {
            cores,
            now: Millis(0),
            clients: Vec::new(),
            inboxes: (0..shards).map(|_| VecDeque::new()).collect(),
            inbox_capacity: 1 << 16,
            answers: Vec::new(),
            backend_calls: Vec::new(),
            stopped_accepting: vec![false; shards],
            census,
            deaf: vec![false; shards],
            next_caller: 0,
            actions: Vec::new(),
        }
    }

    /// The time inputs carry now.
    pub fn time(&self) -> Time {
        Time {
            now: self.now,
            unix_ms: EPOCH_MS + self.now.0,
        }
    }

    /// A token for `user` that expires `exp_s` seconds after simulated
    /// time zero (never when `None`), allowing `apps` (any when `None`).
    pub fn token(user: &str, exp_s: Option<u64>, apps: Option<Vec<String>>) -> String {
        let claims = Claims {
            sub: user.into(),
            exp: exp_s.map(|s| EPOCH_MS / 1000 + s),
            apps,
            ..Claims::default()
        };
        mint_hs256(SECRET, &claims).expect("minting a test token")
    }

    /// Connects a client of `user` (app "chat", 10 s heartbeat) to `shard`.
    pub fn connect(&mut self, shard: usize, user: &str) -> usize {
        let cfg = ClientConfig {
            token: Self::token(user, None, None),
            device: "sim".into(),
            apps: vec!["chat".into()],
            heartbeat_ms: 10_000,
            ..ClientConfig::default()
        };
        self.connect_with(shard, cfg, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    }

    /// Connects a client with `cfg` from `peer` to `shard`; returns its
    /// index in [`Sim::clients`].
    pub fn connect_with(&mut self, shard: usize, cfg: ClientConfig, peer: IpAddr) -> usize {
        let mut session = ClientSession::new(self.now, cfg);
        let mut hello = Vec::new();
        session.start(&mut hello);
        let id = self.clients.len();
        self.clients.push(SimClient::new(shard, session, hello));
        let t = self.time();
        self.cores[shard].on_accepted(t, id as u32, super::ListenerKind::RawV1, Some(peer));
        self.run();
        id
    }

    /// Connects a client of `user` to `shard`'s WebSocket listener: the
    /// Upgrade request and the Hello go in its first write (before the
    /// 101 comes back, as a client may pipeline them).
    pub fn connect_ws(&mut self, shard: usize, user: &str) -> usize {
        let (request, key) =
            protocol::ws::client::upgrade_request("sim", "/", [user.len() as u8; 16]);
        self.connect_ws_with(shard, user, SimWs::new(request, key, true))
    }

    /// Like [`Sim::connect_ws`] with the Upgrade `request` (made with
    /// `key`) given; the Hello waits for the upgrade's answer.
    pub fn connect_ws_request(
        &mut self,
        shard: usize,
        user: &str,
        request: Vec<u8>,
        key: String,
    ) -> usize {
        self.connect_ws_with(shard, user, SimWs::new(request, key, false))
    }

    fn connect_ws_with(&mut self, shard: usize, user: &str, ws: SimWs) -> usize {
        let cfg = ClientConfig {
            token: Self::token(user, None, None),
            device: "sim-ws".into(),
            apps: vec!["chat".into()],
            heartbeat_ms: 10_000,
            ..ClientConfig::default()
        };
        let mut session = ClientSession::new(self.now, cfg);
        let mut hello = Vec::new();
        session.start(&mut hello);
        let id = self.clients.len();
        let mut client = SimClient::new(shard, session, hello);
        client.ws = Some(ws);
        self.clients.push(client);
        let t = self.time();
        self.cores[shard].on_accepted(t, id as u32, super::ListenerKind::WebSocket, None);
        self.run();
        id
    }

    /// Sends a control request to `shard`; returns who asked.
    pub fn request(&mut self, shard: usize, method: &str, path: &str, body: &str) -> Caller {
        let caller = Caller::new(self.next_caller, 0);
        self.next_caller += 1;
        let req = Request {
            method: method.into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
            authorization: None,
            keep_alive: true,
        };
        let t = self.time();
        self.cores[shard].on_control_request(t, caller, &req);
        self.cores[shard].route_accepted_pushes(t);
        self.run();
        caller
    }

    /// The status and JSON body of `caller`'s answer, once it came.
    pub fn answer(&self, caller: Caller) -> Option<(u16, serde_json::Value)> {
        self.answers.iter().find_map(|(_, c, a)| match a {
            Answer::Response(r) if *c == caller => Some((
                r.status,
                serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
            )),
            _ => None,
        })
    }

    /// Pushes `payload` through shard `via`'s API to `to` (a JSON target).
    pub fn push(&mut self, via: usize, to: &str, payload: &str) -> u16 {
        let body = format!(r#"{{"to":{to},"payload":"{payload}"}}"#);
        let caller = self.request(via, "POST", "/v1/push", &body);
        self.answer(caller).map_or(0, |(status, _)| status)
    }

    /// The client's end of the connection goes (EOF or reset, as a lost
    /// network looks to the gateway), and it sends nothing more.
    pub fn hang_up(&mut self, client: usize) {
        let t = self.time();
        let c = &mut self.clients[client];
        c.silent = true;
        if let (Some((key, generation)), true) = (c.conn, c.recv_armed) {
            c.recv_armed = false;
            let shard = c.shard;
            self.cores[shard].on_recv_ended(t, key, generation);
        }
        self.run();
    }

    /// A client starts or stops reading.
    pub fn set_reading(&mut self, client: usize, reading: bool) {
        self.clients[client].reading = reading;
        self.run();
    }

    /// Runs every core until nothing moves: actions performed, bytes
    /// delivered both ways, mail carried.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for shard in 0..self.cores.len() {
                moved |= self.perform_actions(shard);
            }
            moved |= self.deliver_client_bytes();
            moved |= self.carry_mail();
            for (core, published) in self.cores.iter_mut().zip(&self.census.0) {
                core.end_turn();
                moved |= core.has_actions();
                published.store(core.stats.sessions, Ordering::Relaxed);
            }
            if !moved {
                return;
            }
        }
        panic!("the simulation never went quiet");
    }

    /// Moves time to `until`, firing every deadline (cores', clients',
    /// drains') on the way.
    pub fn advance_to(&mut self, until: Millis) {
        loop {
            self.run();
            let now = self.now;
            let cores = self.cores.iter().filter_map(|c| c.next_deadline(now));
            let clients = self
                .clients
                .iter()
                .filter(|c| !c.closed && !c.silent)
                .filter_map(|c| c.session.deadline());
            let Some(next) = cores.chain(clients).min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = next.max(Millis(now.0 + 1)).min(until);
            self.tick();
            if self.now >= until {
                break;
            }
        }
        self.now = self.now.max(until);
        self.tick();
    }

    /// Moves time forward by `ms`.
    pub fn advance(&mut self, ms: u64) {
        self.advance_to(self.now.saturating_add(ms));
    }

    fn tick(&mut self) {
        let t = self.time();
        for core in &mut self.cores {
            core.on_tick(t);
            core.drain_step(t);
        }
        for c in &mut self.clients {
            if !c.closed && !c.silent {
                c.session.handle_timeout(t.now, &mut c.to_gateway);
            }
        }
        self.run();
    }

    fn perform_actions(&mut self, shard: usize) -> bool {
        let mut actions = std::mem::take(&mut self.actions);
        self.cores[shard].take_actions(&mut actions);
        let moved = !actions.is_empty();
        for action in actions.drain(..) {
            match action {
                Action::Stream(op) => self.perform_stream_op(shard, op),
                Action::Backend(call) => self.backend_calls.push((shard, *call)),
                Action::Answer(caller, answer) => self.answers.push((shard, caller, answer)),
                Action::StopAccepting => self.stopped_accepting[shard] = true,
            }
        }
        self.actions = actions;
        moved
    }

    fn perform_stream_op(&mut self, shard: usize, op: StreamOp) {
        let t = self.time();
        let (key, generation) = (op.key, op.generation);
        let core = &mut self.cores[shard];
        let Some(client) = self.clients.get_mut(op.stream as usize) else {
            panic!(
                "an operation on stream {} that was never accepted",
                op.stream
            );
        };
        assert!(!client.closed, "{:?} on a closed stream", op.kind);
        match op.kind {
            StreamOpKind::Recv => {
                client.conn = Some((key, generation));
                client.recv_armed = true;
            }
            StreamOpKind::Send => {
                if client.reading {
                    client.read_send(core, t, op);
                } else {
                    client.stalled_send = Some(op);
                }
            }
            StreamOpKind::Shutdown => {
                client.got_fin = true;
                core.on_shutdown_done(t, key, generation);
                // The client reads the FIN and closes its side.
                if client.recv_armed {
                    client.recv_armed = false;
                    core.on_recv_ended(t, key, generation);
                }
            }
            StreamOpKind::CancelRecv => {
                if client.recv_armed {
                    client.recv_armed = false;
                    core.on_recv_ended(t, key, generation);
                }
            }
            StreamOpKind::CancelSend => {
                if client.stalled_send.take().is_some() {
                    core.on_send_done(t, key, generation, Err(-libc::ECANCELED));
                }
            }
            StreamOpKind::Close => {
                client.closed = true;
                core.on_close_done(t, key, generation);
            }
        }
    }

    /// Hands clients' bytes to the gateway and resumes the stalled sends
    /// of clients that read again.
    fn deliver_client_bytes(&mut self) -> bool {
        let t = self.time();
        let mut moved = false;
        for c in &mut self.clients {
            let Some((key, generation)) = c.conn else {
                continue;
            };
            let core = &mut self.cores[c.shard];
            if c.reading
                && let Some(op) = c.stalled_send.take()
            {
                c.read_send(core, t, op);
                moved = true;
            }
            let data = match &mut c.ws {
                Some(ws) if c.recv_armed => ws.wire(&mut c.to_gateway),
                _ if c.recv_armed => std::mem::take(&mut c.to_gateway),
                _ => Vec::new(),
            };
            if !data.is_empty() {
                core.on_received(t, key, generation, &data, true);
                moved = true;
            }
        }
        moved
    }

    fn carry_mail(&mut self) -> bool {
        let mut moved = false;
        let capacity = self.inbox_capacity;
        let t = self.time();
        for core in &mut self.cores {
            moved |= core.has_mail();
            let inboxes = &mut self.inboxes;
            core.flush_mail(t, &mut |to: usize, msg: Message| {
                let inbox = &mut inboxes[to];
                if inbox.len() >= capacity {
                    return Err(msg);
                }
                inbox.push_back(msg);
                Ok(())
            });
        }
        for (shard, inbox) in self.inboxes.iter_mut().enumerate() {
            while let Some(msg) = inbox.pop_front() {
                if !self.deaf[shard] {
                    self.cores[shard].on_mail(t, msg);
                }
                moved = true;
            }
        }
        moved
    }
}

//! Client-side wire adapters, sans-IO: the gateway's protocol v1, MQTT
//! 3.1.1 (to a broker or to the gateway's MQTT listener) and core NATS
//! behind one interface, so every scenario runs unchanged against the
//! gateway and against its peers; each over the same layers ([`link`]):
//! TLS ([`tls`]), WebSocket ([`ws`]), both, or none.

pub mod gateway;
pub mod link;
pub mod mqtt;
pub mod nats;
pub mod tls;
pub mod ws;

use std::cell::Cell;

use protocol::time::Millis;
use serde::{Deserialize, Serialize};

use crate::stamp::Stamp;

/// The system under test and how to talk to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// The gateway, protocol v1.
    Gateway,
    /// An MQTT 3.1.1 broker (mosquitto), QoS 0.
    Mqtt,
    /// An MQTT 3.1.1 broker, QoS 1 (every delivery acknowledged).
    MqttQos1,
    /// A core NATS server.
    Nats,
}

impl PeerKind {
    /// Short label for reports.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Gateway => "gateway",
            PeerKind::Mqtt => "mqtt-qos0",
            PeerKind::MqttQos1 => "mqtt-qos1",
            PeerKind::Nats => "nats",
        }
    }

    /// The peer as `--peer` spells it (`mqtt`, not its report label
    /// `mqtt-qos0`), for messages that tell the user what to change.
    #[must_use]
    pub fn cli_name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(|| self.label().to_owned(), |v| v.get_name().to_owned())
    }
}

/// How a connection reaches the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// The peer's own protocol straight over TCP (protocol v1 with length
    /// prefixes for the gateway).
    #[default]
    Tcp,
    /// WebSocket: the gateway's listener (`[listen] websocket`, one v1
    /// frame per binary message), mosquitto's `protocol websockets`
    /// listener (subprotocol `mqtt`), nats-server's `websocket {}` block.
    Ws,
    /// The peer's protocol inside TLS: the gateway's `[listen] client_tls`,
    /// mosquitto's listener with `certfile`/`keyfile`, nats-server's `tls {}`
    /// (after its plaintext INFO).
    Tls,
    /// WebSocket inside TLS: the gateway's `[listen] websocket_tls`, the
    /// brokers' WebSocket listeners with a certificate.
    Wss,
    /// The gateway's MQTT 3.1.1 listener (`[listen] mqtt`): CONNECT with
    /// the token as password, SUBSCRIBE for topics, pushes as PUBLISH.
    Mqtt,
}

impl Transport {
    /// Short label for reports.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Tls => "tls",
            Transport::Wss => "wss",
            Transport::Mqtt => "mqtt",
        }
    }

    /// Whether connections speak WebSocket.
    #[must_use]
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Whether connections speak TLS.
    #[must_use]
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether `peer` can be reached over this transport.
    ///
    /// # Errors
    /// `mqtt` is the gateway's MQTT listener: mosquitto speaks MQTT as
    /// `--peer mqtt` over tcp, ws, tls or wss, and nats-server has no MQTT
    /// here.
    pub fn check(self, peer: PeerKind) -> Result<(), TransportError> {
        match (self, peer) {
            (Transport::Mqtt, PeerKind::Gateway)
            | (Transport::Tcp | Transport::Ws | Transport::Tls | Transport::Wss, _) => Ok(()),
            (Transport::Mqtt, _) => Err(TransportError::NeedsGateway {
                transport: self.label(),
                listener: "MQTT",
                peer: peer.cli_name(),
            }),
        }
    }

    /// What the report says about a run over this transport to `target`
    /// (nothing for plain TCP).
    #[must_use]
    pub fn note(self, peer: PeerKind, target: std::net::SocketAddrV4) -> Option<String> {
        let ws = match peer {
            PeerKind::Gateway => "WebSocket (gateway.v1 subprotocol)",
            PeerKind::Mqtt | PeerKind::MqttQos1 => "WebSocket (mqtt subprotocol)",
            PeerKind::Nats => "WebSocket (no subprotocol)",
        };
        match self {
            Transport::Tcp => None,
            Transport::Ws => Some(format!("transport: {ws} to {target}")),
            Transport::Tls => Some(format!("transport: TLS to {target}")),
            Transport::Wss => Some(format!("transport: {ws} inside TLS to {target}")),
            Transport::Mqtt => Some(format!(
                "transport: MQTT 3.1.1 (token as password) to {target}"
            )),
        }
    }
}

/// A transport the peer cannot be reached over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// `--transport mqtt` with a peer other than the gateway.
    #[error(
        "--transport {transport} is for --peer gateway only (its {listener} listener); \
         --peer {peer} runs over --transport tcp, ws, tls or wss"
    )]
    NeedsGateway {
        /// The transport asked for, as `--transport` spells it.
        transport: &'static str,
        /// The gateway's listener it reaches.
        listener: &'static str,
        /// The peer, as `--peer` spells it.
        peer: String,
    },
    /// `--transport tls|wss` without the CA to trust.
    #[error("--transport {0} needs --tls-ca PEM (the CA that signed the server's certificate)")]
    NeedsCa(&'static str),
}

/// `unicast --ack` with a peer other than the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// Durable pushes are the gateway's push API (`"ack": true`).
    #[error(
        "--ack is for --peer gateway only (durable pushes through its push API, acked with v1 Ack \
         frames); --peer {0} has no durable unicast here"
    )]
    NeedsGateway(String),
    /// Durable pushes over the gateway's MQTT listener (QoS 1, PUBACK) are
    /// not modelled: redelivered copies carry only DUP and a recycled
    /// packet id, which the harness does not tell from duplicates yet.
    #[error(
        "--ack runs over --transport tcp or ws (v1 Ack frames); durable pushes over \
         --transport mqtt (QoS 1, PUBACK) are not modelled by the harness"
    )]
    NotOverMqtt,
}

/// Something a connection's adapter reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WireEvent {
    /// The handshake completed (Welcome, CONNACK accepted, first PONG).
    Established,
    /// A subscription is confirmed (SUBACK, or the PONG behind a SUB).
    Subscribed,
    /// A message arrived; its stamp if it carries one.
    Delivery(Option<Stamp>),
    /// A durable push arrived again (a copy of an id this connection has
    /// seen, or one flagged `redelivery`): counted, acked again when it
    /// had been acked, never a second delivery.
    Redelivery,
    /// The TLS handshake completed: version, cipher suite, key exchange
    /// group and kind (`TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519 full`).
    TlsHandshake(String),
    /// An uplink's reply arrived.
    Reply {
        /// The request it answers.
        request_id: u64,
        /// Its status.
        status: u32,
    },
    /// The session is over, and why.
    Closed(String),
}

/// What a connection says and how it authenticates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// User or client id.
    pub user: String,
    /// Gateway token (JWT) for `user`; unused by the peers.
    pub token: String,
    /// Heartbeat to propose, ms.
    pub heartbeat_ms: u32,
}

thread_local! {
    /// What the adapter writes, on its way to the layers.
    static TO_LINK: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// What the layers pass up, on its way to the adapter.
    static FROM_LINK: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A connection that cannot be made with the settings given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A TLS transport without TLS settings.
    #[error("TLS transport without TLS settings")]
    NoTlsSettings,
    /// rustls could not start the connection.
    #[error("tls: {0}")]
    Tls(String),
}

/// One connection's protocol state: the adapter and the layers under it.
#[derive(Debug)]
pub struct ClientWire {
    app: App,
    link: link::Link,
    /// The layers ended (reported once): nothing more is read or timed.
    ended: bool,
}

/// The adapter of a connection.
#[derive(Debug)]
enum App {
    /// Gateway protocol v1.
    Gateway(Box<gateway::GatewayClient>),
    /// MQTT 3.1.1.
    Mqtt(mqtt::MqttClient),
    /// Core NATS.
    Nats(nats::NatsClient),
}

impl App {
    fn new(kind: PeerKind, transport: Transport, id: &Identity, now: Millis) -> Self {
        match (kind, transport) {
            (PeerKind::Gateway, Transport::Mqtt) => {
                Self::Mqtt(mqtt::MqttClient::for_gateway(id, now))
            }
            (PeerKind::Gateway, _) => Self::Gateway(Box::new(gateway::GatewayClient::new(id, now))),
            (PeerKind::Mqtt, _) => Self::Mqtt(mqtt::MqttClient::new(id, 0, now)),
            (PeerKind::MqttQos1, _) => Self::Mqtt(mqtt::MqttClient::new(id, 1, now)),
            (PeerKind::Nats, _) => Self::Nats(nats::NatsClient::new(now)),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Self::Gateway(c) => c.is_closed(),
            Self::Mqtt(c) => c.is_closed(),
            Self::Nats(c) => c.is_closed(),
        }
    }
}

/// The layers for `kind` over `transport`: the WebSocket mapping of the
/// peer's protocol, TLS from `tls`.
///
/// # Errors
/// A TLS transport without settings, or rustls refusing them.
pub fn layers(
    kind: PeerKind,
    transport: Transport,
    seed: u64,
    tls: Option<&tls::TlsClient>,
) -> Result<link::Link, WireError> {
    let ws = transport.is_websocket().then(|| {
        let mapping = match kind {
            PeerKind::Gateway => ws::WsMapping::GatewayV1,
            PeerKind::Mqtt | PeerKind::MqttQos1 => ws::WsMapping::Mqtt,
            PeerKind::Nats => ws::WsMapping::Nats,
        };
        ws::WsLayer::new(mapping, seed)
    });
    let tls = if transport.is_tls() {
        let client = tls.ok_or(WireError::NoTlsSettings)?;
        // nats-server 2.9 sends its INFO in plaintext before TLS on its
        // client port; its WebSocket port starts with TLS.
        let after_line = kind == PeerKind::Nats && transport == Transport::Tls;
        Some(tls::TlsLayer::new(client, after_line).map_err(|e| WireError::Tls(e.to_string()))?)
    } else {
        None
    };
    Ok(link::Link::new(tls, ws))
}

impl ClientWire {
    /// A fresh adapter for `kind` over `transport`, created at `now`;
    /// `seed` (any value, different per connection) makes what must be
    /// random on the wire: WebSocket nonces and masking keys; `tls` is the
    /// shard's TLS client for `tls` and `wss`. A transport the peer does
    /// not have ([`Transport::check`]) is TCP.
    ///
    /// # Errors
    /// A TLS transport without `tls`, or rustls refusing it.
    pub fn new(
        kind: PeerKind,
        transport: Transport,
        id: &Identity,
        now: Millis,
        seed: u64,
        tls: Option<&tls::TlsClient>,
    ) -> Result<Self, WireError> {
        Ok(Self {
            app: App::new(kind, transport, id, now),
            link: layers(kind, transport, seed, tls)?,
            ended: false,
        })
    }

    /// The layers under the adapter.
    #[must_use]
    pub fn link(&self) -> &link::Link {
        &self.link
    }

    /// Runs `f` on the adapter with a buffer, then sends what it wrote
    /// through the layers into `out` (straight into `out` without layers).
    fn write<R>(&mut self, out: &mut Vec<u8>, f: impl FnOnce(&mut App, &mut Vec<u8>) -> R) -> R {
        if self.link.is_plain() {
            return f(&mut self.app, out);
        }
        let mut buf = TO_LINK.take();
        buf.clear();
        let r = f(&mut self.app, &mut buf);
        self.link.send(&buf, out);
        TO_LINK.set(buf);
        r
    }

    /// Writes the opening handshake: the layers' (ClientHello, Upgrade
    /// request; `host` is the target as the Upgrade's `Host` names it),
    /// then the adapter's (Hello, CONNECT), queued by the layers until they
    /// are ready.
    pub fn start(&mut self, now: Millis, host: &str, out: &mut Vec<u8>) {
        self.link.start(host, out);
        self.write(out, |app, out| match app {
            App::Gateway(c) => c.start(out),
            App::Mqtt(c) => c.start(now, out),
            App::Nats(c) => c.start(out),
        });
    }

    /// Subscribes to `topic` (a `Subscribed` event follows when confirmed).
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        self.write(out, |app, out| match app {
            App::Gateway(c) => c.subscribe(topic, out),
            App::Mqtt(c) => c.subscribe(topic, out),
            App::Nats(c) => c.subscribe(topic, out),
        });
    }

    /// Feeds received bytes. An end of the layers (a close frame, a TLS
    /// alert) is reported as `Closed` once, unless the adapter has said
    /// why it closed already (an `Error` or `Kick` before the close).
    pub fn input(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        if self.link.is_plain() {
            app_input(&mut self.app, now, data, ev, out);
            return;
        }
        if self.ended {
            return;
        }
        let mut upper = FROM_LINK.take();
        upper.clear();
        let seen = self.link.input(data, &mut upper, out);
        if let Some(label) = seen.tls_handshake {
            ev.push(WireEvent::TlsHandshake(label));
        }
        if !upper.is_empty() && !self.app.is_closed() {
            self.write(out, |app, out| app_input(app, now, &upper, ev, out));
        }
        FROM_LINK.set(upper);
        if let Some(why) = seen.ended {
            self.ended = true;
            if !self.app.is_closed() {
                ev.push(WireEvent::Closed(why));
            }
        }
    }

    /// Runs timers (heartbeats, timeouts); returns when to call again.
    pub fn tick(
        &mut self,
        now: Millis,
        ev: &mut Vec<WireEvent>,
        out: &mut Vec<u8>,
    ) -> Option<Millis> {
        if self.ended {
            return None;
        }
        self.write(out, |app, out| match app {
            App::Gateway(c) => c.tick(now, ev, out),
            App::Mqtt(c) => c.tick(now, ev, out),
            App::Nats(_) => None,
        })
    }

    /// Acks durable pushes on receipt (`unicast --ack`); the gateway's
    /// protocol v1 only (the brokers and `--transport mqtt` are refused
    /// `--ack` before they start; MQTT PUBACKs every QoS 1 PUBLISH anyway).
    pub fn set_auto_ack(&mut self, on: bool) {
        if let App::Gateway(c) = &mut self.app {
            c.set_auto_ack(on);
        }
    }

    /// Sends an uplink request; its request id, if the protocol has uplinks.
    pub fn uplink(&mut self, route: &str, payload: &[u8], out: &mut Vec<u8>) -> Option<u64> {
        self.write(out, |app, out| match app {
            App::Gateway(c) => c.uplink(route, payload, out),
            App::Mqtt(_) | App::Nats(_) => None,
        })
    }

    /// Writes a polite goodbye (Bye, DISCONNECT) where the protocol has
    /// one, then the layers' (a close frame, a close_notify).
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        self.write(out, |app, out| match app {
            App::Gateway(c) => c.goodbye(out),
            App::Mqtt(c) => c.goodbye(out),
            App::Nats(_) => {}
        });
        self.link.goodbye(out);
    }
}

/// Feeds bytes to the adapter.
fn app_input(app: &mut App, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
    match app {
        App::Gateway(c) => c.input(now, data, ev, out),
        App::Mqtt(c) => c.input(now, data, ev, out),
        App::Nats(c) => c.input(data, ev, out),
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod ws_tests;

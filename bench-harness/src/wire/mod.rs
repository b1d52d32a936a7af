//! Client-side wire adapters, sans-IO: the gateway's protocol v1 (over TCP
//! or its WebSocket mapping), MQTT 3.1.1 (to a broker or to the gateway's
//! MQTT listener) and core NATS behind one interface, so every scenario
//! runs unchanged against the gateway and against its peers.

pub mod gateway;
pub mod gateway_ws;
pub mod mqtt;
pub mod nats;

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
    /// The gateway's WebSocket listener (`[listen] websocket`): an HTTP
    /// Upgrade, then one v1 frame per binary message.
    Ws,
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
            Transport::Mqtt => "mqtt",
        }
    }

    /// Whether `peer` can be reached over this transport.
    ///
    /// # Errors
    /// WebSocket and MQTT are the gateway's listeners: mosquitto and
    /// nats-server over WebSocket are not modelled, and mosquitto speaks
    /// MQTT as `--peer mqtt` over `--transport tcp`.
    pub fn check(self, peer: PeerKind) -> Result<(), TransportError> {
        let listener = match (self, peer) {
            (Transport::Tcp, _) | (Transport::Ws | Transport::Mqtt, PeerKind::Gateway) => {
                return Ok(());
            }
            (Transport::Ws, _) => "WebSocket",
            (Transport::Mqtt, _) => "MQTT",
        };
        Err(TransportError::NeedsGateway {
            transport: self.label(),
            listener,
            peer: peer.cli_name(),
        })
    }

    /// What the report says about a run over this transport to `target`
    /// (nothing for plain TCP).
    #[must_use]
    pub fn note(self, target: std::net::SocketAddrV4) -> Option<String> {
        match self {
            Transport::Tcp => None,
            Transport::Ws => Some(format!(
                "transport: WebSocket (gateway.v1 subprotocol) to {target}"
            )),
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
    /// `--transport ws|mqtt` with a peer other than the gateway.
    #[error(
        "--transport {transport} is for --peer gateway only (its {listener} listener); \
         --peer {peer} runs over --transport tcp"
    )]
    NeedsGateway {
        /// The transport asked for, as `--transport` spells it.
        transport: &'static str,
        /// The gateway's listener it reaches.
        listener: &'static str,
        /// The peer, as `--peer` spells it.
        peer: String,
    },
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

/// One connection's protocol state.
#[derive(Debug)]
pub enum ClientWire {
    /// Gateway protocol v1.
    Gateway(Box<gateway::GatewayClient>),
    /// Gateway protocol v1 over WebSocket.
    GatewayWs(Box<gateway_ws::GatewayWsClient>),
    /// MQTT 3.1.1.
    Mqtt(mqtt::MqttClient),
    /// Core NATS.
    Nats(nats::NatsClient),
}

impl ClientWire {
    /// A fresh adapter for `kind` over `transport`, created at `now`;
    /// `seed` (any value, different per connection) makes what must be
    /// random on the wire: WebSocket nonces and masking keys. A transport
    /// the peer does not have ([`Transport::check`]) falls back to TCP.
    #[must_use]
    pub fn new(
        kind: PeerKind,
        transport: Transport,
        id: &Identity,
        now: Millis,
        seed: u64,
    ) -> Self {
        match (kind, transport) {
            (PeerKind::Gateway, Transport::Ws) => {
                Self::GatewayWs(Box::new(gateway_ws::GatewayWsClient::new(id, now, seed)))
            }
            (PeerKind::Gateway, Transport::Mqtt) => {
                Self::Mqtt(mqtt::MqttClient::for_gateway(id, now))
            }
            (PeerKind::Gateway, Transport::Tcp) => {
                Self::Gateway(Box::new(gateway::GatewayClient::new(id, now)))
            }
            (PeerKind::Mqtt, _) => Self::Mqtt(mqtt::MqttClient::new(id, 0, now)),
            (PeerKind::MqttQos1, _) => Self::Mqtt(mqtt::MqttClient::new(id, 1, now)),
            (PeerKind::Nats, _) => Self::Nats(nats::NatsClient::new(now)),
        }
    }

    /// Writes the opening handshake; `host` is the target as the
    /// WebSocket Upgrade names it (`Host`).
    pub fn start(&mut self, now: Millis, host: &str, out: &mut Vec<u8>) {
        match self {
            Self::Gateway(c) => c.start(out),
            Self::GatewayWs(c) => c.start(host, out),
            Self::Mqtt(c) => c.start(now, out),
            Self::Nats(c) => c.start(out),
        }
    }

    /// Subscribes to `topic` (a `Subscribed` event follows when confirmed).
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        match self {
            Self::Gateway(c) => c.subscribe(topic, out),
            Self::GatewayWs(c) => c.subscribe(topic, out),
            Self::Mqtt(c) => c.subscribe(topic, out),
            Self::Nats(c) => c.subscribe(topic, out),
        }
    }

    /// Feeds received bytes.
    pub fn input(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        match self {
            Self::Gateway(c) => c.input(now, data, ev, out),
            Self::GatewayWs(c) => c.input(now, data, ev, out),
            Self::Mqtt(c) => c.input(now, data, ev, out),
            Self::Nats(c) => c.input(data, ev, out),
        }
    }

    /// Runs timers (heartbeats, timeouts); returns when to call again.
    pub fn tick(
        &mut self,
        now: Millis,
        ev: &mut Vec<WireEvent>,
        out: &mut Vec<u8>,
    ) -> Option<Millis> {
        match self {
            Self::Gateway(c) => c.tick(now, ev, out),
            Self::GatewayWs(c) => c.tick(now, ev, out),
            Self::Mqtt(c) => c.tick(now, ev, out),
            Self::Nats(_) => None,
        }
    }

    /// Acks durable pushes on receipt (`unicast --ack`); the gateway's
    /// protocol v1 only (the brokers and `--transport mqtt` are refused
    /// `--ack` before they start; MQTT PUBACKs every QoS 1 PUBLISH anyway).
    pub fn set_auto_ack(&mut self, on: bool) {
        match self {
            Self::Gateway(c) => c.set_auto_ack(on),
            Self::GatewayWs(c) => c.set_auto_ack(on),
            Self::Mqtt(_) | Self::Nats(_) => {}
        }
    }

    /// Sends an uplink request; its request id, if the protocol has uplinks.
    pub fn uplink(&mut self, route: &str, payload: &[u8], out: &mut Vec<u8>) -> Option<u64> {
        match self {
            Self::Gateway(c) => c.uplink(route, payload, out),
            Self::GatewayWs(c) => c.uplink(route, payload, out),
            Self::Mqtt(_) | Self::Nats(_) => None,
        }
    }

    /// Writes a polite goodbye (Bye, DISCONNECT) where the protocol has one.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::Gateway(c) => c.goodbye(out),
            Self::GatewayWs(c) => c.goodbye(out),
            Self::Mqtt(c) => c.goodbye(out),
            Self::Nats(_) => {}
        }
    }
}

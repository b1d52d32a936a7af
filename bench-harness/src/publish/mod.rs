//! The sending side of `fanout` and `unicast`: the gateway's push API over
//! pipelined HTTP/1.1 ([`pipelined`]), and here an MQTT publisher and a
//! NATS publisher, all blocking (the coordinator runs them on their own
//! threads).

pub mod pipelined;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use protocol::mqtt::{EncodeError, Packet};

use crate::wire::link::Link;
use crate::wire::tls::TlsClient;
use crate::wire::{PeerKind, Transport, layers, mqtt, nats};

/// Errors while publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Socket trouble.
    #[error("publisher I/O to {addr}: {source}")]
    Io {
        /// Peer.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The push API answered with a non-200 status.
    #[error("push API answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// The peer said something unexpected.
    #[error("publisher protocol: {0}")]
    Protocol(String),
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To<'a> {
    /// Every connection.
    All,
    /// Subscribers of a topic.
    Topic(&'a str),
    /// One user (its own topic on the peers).
    User(&'a str),
}

/// Reads more of `stream` into `buf`.
fn fill(stream: &mut TcpStream, addr: SocketAddr, buf: &mut Vec<u8>) -> Result<(), PublishError> {
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .map_err(|source| PublishError::Io { addr, source })?;
    if n == 0 {
        return Err(PublishError::Io {
            addr,
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// A message the MQTT codec cannot put on the wire (a topic over 65535 bytes).
fn encode_error(e: EncodeError) -> PublishError {
    PublishError::Protocol(format!("MQTT: cannot encode: {e}"))
}

/// The gateway is not a broker: its push API has its own publisher.
fn not_a_broker() -> PublishError {
    PublishError::Protocol("the gateway's push API is published to by PipelinedPush".into())
}

fn nats_subject(to: To<'_>) -> String {
    match to {
        To::All => "all".to_string(),
        To::Topic(t) => t.to_string(),
        To::User(u) => format!("u.{u}"),
    }
}

fn mqtt_topic(to: To<'_>) -> String {
    match to {
        To::All => "all".to_string(),
        To::Topic(t) => t.to_string(),
        To::User(u) => format!("u/{u}"),
    }
}

/// A publisher for one kind of system.
#[derive(Debug)]
pub struct Publisher {
    kind: PeerKind,
    addr: SocketAddr,
    stream: TcpStream,
    /// The layers (TLS, WebSocket) the broker is reached over, as the
    /// subscribers reach it.
    link: Link,
    buf: Vec<u8>,
    packet_id: u16,
}

impl Publisher {
    /// Connects to the broker at `addr` over `transport` (the gateway's
    /// push API is [`pipelined::PipelinedPush`]); `tls` for `tls` and `wss`.
    pub fn connect(
        kind: PeerKind,
        addr: SocketAddr,
        transport: Transport,
        tls: Option<&TlsClient>,
    ) -> Result<Self, PublishError> {
        let io = |source| PublishError::Io { addr, source };
        let link = layers(kind, transport, crate::stamp::wall_us(), tls)
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        let mut p = Self {
            kind,
            addr,
            stream,
            link,
            buf: Vec::new(),
            packet_id: 1,
        };
        let mut opening = Vec::new();
        p.link.start(&addr.to_string(), &mut opening);
        p.write_raw(&opening)?;
        match kind {
            PeerKind::Gateway => return Err(not_a_broker()),
            PeerKind::Mqtt | PeerKind::MqttQos1 => {
                let mut out = Vec::new();
                let id = format!(
                    "bench-pub-{}-{}",
                    std::process::id(),
                    crate::stamp::wall_us()
                );
                mqtt::connect(&id, 60, None, &mut out).map_err(encode_error)?;
                p.write(&out)?;
                match p.read_mqtt()? {
                    MqttReply::ConnAck(0) => {}
                    other => {
                        return Err(PublishError::Protocol(format!(
                            "MQTT CONNECT answered {other:?}"
                        )));
                    }
                }
            }
            PeerKind::Nats => {
                let mut out = Vec::new();
                nats::connect(&mut out);
                p.write(&out)?;
                p.nats_until_pong()?;
            }
        }
        Ok(p)
    }

    /// Writes the adapter's `bytes` through the layers.
    fn write(&mut self, bytes: &[u8]) -> Result<(), PublishError> {
        if self.link.is_plain() {
            return self.write_raw(bytes);
        }
        let mut out = Vec::new();
        self.link.send(bytes, &mut out);
        self.write_raw(&out)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PublishError> {
        let addr = self.addr;
        if bytes.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(bytes)
            .map_err(|source| PublishError::Io { addr, source })
    }

    /// Reads more for the adapter, through the layers (whose answers,
    /// handshake records and pongs, go back at once).
    fn fill(&mut self) -> Result<(), PublishError> {
        if self.link.is_plain() {
            return fill(&mut self.stream, self.addr, &mut self.buf);
        }
        let mut raw = Vec::new();
        fill(&mut self.stream, self.addr, &mut raw)?;
        let mut out = Vec::new();
        let seen = self.link.input(&raw, &mut self.buf, &mut out);
        self.write_raw(&out)?;
        match seen.ended {
            Some(why) => Err(PublishError::Protocol(why)),
            None => Ok(()),
        }
    }

    /// Sends several messages back to back in one write of pipelined
    /// publishes (MQTT QoS 1 stays stop-and-wait, as its protocol
    /// requires). Returns how many were accepted.
    pub fn send_batch(&mut self, items: &[(To<'_>, &str)]) -> Result<u64, PublishError> {
        match self.kind {
            PeerKind::Gateway => Err(not_a_broker()),
            PeerKind::MqttQos1 => {
                for (to, payload) in items {
                    self.send(*to, payload)?;
                }
                Ok(items.len() as u64)
            }
            PeerKind::Mqtt | PeerKind::Nats => {
                let mut out = Vec::new();
                for (to, payload) in items {
                    match self.kind {
                        PeerKind::Nats => {
                            nats::publish(&nats_subject(*to), payload.as_bytes(), &mut out)
                        }
                        _ => mqtt::publish(
                            &mqtt_topic(*to),
                            payload.as_bytes(),
                            0,
                            self.packet_id,
                            &mut out,
                        )
                        .map_err(encode_error)?,
                    }
                }
                self.write(&out)?;
                Ok(items.len() as u64)
            }
        }
    }

    /// Sends one message with `payload` to `to`.
    pub fn send(&mut self, to: To<'_>, payload: &str) -> Result<(), PublishError> {
        match self.kind {
            PeerKind::Gateway => Err(not_a_broker()),
            PeerKind::Mqtt | PeerKind::MqttQos1 => {
                let qos = u8::from(self.kind == PeerKind::MqttQos1);
                let topic = mqtt_topic(to);
                let mut out = Vec::new();
                self.packet_id = self.packet_id.wrapping_add(1).max(1);
                mqtt::publish(&topic, payload.as_bytes(), qos, self.packet_id, &mut out)
                    .map_err(encode_error)?;
                self.write(&out)?;
                if qos == 1 {
                    // Stop-and-wait on PUBACK.
                    loop {
                        if let MqttReply::PubAck = self.read_mqtt()? {
                            break;
                        }
                    }
                }
                Ok(())
            }
            PeerKind::Nats => {
                let subject = nats_subject(to);
                let mut out = Vec::new();
                nats::publish(&subject, payload.as_bytes(), &mut out);
                self.write(&out)
            }
        }
    }

    /// Waits until the peer has processed everything sent so far (NATS
    /// PING/PONG; QoS 1 is already synchronous).
    pub fn flush(&mut self) -> Result<(), PublishError> {
        if self.kind == PeerKind::Nats {
            self.write(b"PING\r\n")?;
            self.nats_until_pong()?;
        }
        Ok(())
    }

    fn read_mqtt(&mut self) -> Result<MqttReply, PublishError> {
        loop {
            match mqtt::decode(&self.buf) {
                Ok(Some((pkt, n))) => {
                    let owned = match pkt {
                        Packet::ConnAck(ack) => MqttReply::ConnAck(ack.code as u8),
                        Packet::PubAck(_) => MqttReply::PubAck,
                        _ => MqttReply::Other,
                    };
                    self.buf.drain(..n);
                    return Ok(owned);
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(PublishError::Protocol(format!("MQTT: {e}"))),
            }
        }
    }

    fn nats_until_pong(&mut self) -> Result<(), PublishError> {
        loop {
            match nats::decode(&self.buf) {
                Ok(Some((op, n))) => {
                    let done = match op {
                        nats::Op::Pong => true,
                        nats::Op::Err(m) => {
                            return Err(PublishError::Protocol(
                                String::from_utf8_lossy(m).into_owned(),
                            ));
                        }
                        _ => false,
                    };
                    self.buf.drain(..n);
                    if done {
                        return Ok(());
                    }
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(PublishError::Protocol(e)),
            }
        }
    }
}

/// MQTT packets the publisher waits for, owned.
#[derive(Debug)]
enum MqttReply {
    ConnAck(u8),
    PubAck,
    Other,
}

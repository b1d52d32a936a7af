//! Transports: how a listener's streams carry a wire protocol, between the
//! driver's bytes and the session. Raw v1 (length-prefixed frames straight
//! on TCP) and WebSocket (RFC 6455, one v1 frame per binary message, see
//! `protocol::ws`), each either on TCP or inside TLS (the connection's
//! `TLS` flag; the record layer is `shard_core::tls`); and MQTT 3.1.1
//! (`shard_core::mqtt`), whose session is not v1 at all.
//!
//! A push is encoded once per [`Encoding`] a shard's recipients need, not
//! once per recipient: framing that does not depend on the recipient (raw
//! v1; an unmasked WebSocket server frame) is shared by every connection
//! of that encoding, while a per-connection layer such as TLS encrypts
//! each copy on its own connection.

use bytes::Bytes;
use shard_router::messages::Target;

use super::mqtt_publish::{Direct, Publish, publishes};

/// What a client listener speaks: every connection it accepts starts in
/// that listener's transport ([`ListenerKind::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// `[listen] client`: wire protocol v1 on TCP.
    RawV1,
    /// `[listen] websocket`: an HTTP/1.1 Upgrade, then v1 over WebSocket.
    WebSocket,
    /// `[listen] client_tls`: wire protocol v1 inside TLS.
    TlsRawV1,
    /// `[listen] websocket_tls`: WebSocket inside TLS (`wss://`).
    TlsWebSocket,
    /// `[listen] mqtt`: MQTT 3.1.1 on TCP.
    Mqtt,
    /// `[listen] mqtt_tls`: MQTT 3.1.1 inside TLS.
    TlsMqtt,
}

impl ListenerKind {
    /// The transport a connection accepted on this listener starts in.
    pub fn transport(self) -> Transport {
        match self {
            ListenerKind::RawV1 | ListenerKind::TlsRawV1 => Transport::RawV1,
            ListenerKind::WebSocket | ListenerKind::TlsWebSocket => {
                Transport::WebSocket(WsPhase::Upgrading)
            }
            ListenerKind::Mqtt | ListenerKind::TlsMqtt => Transport::Mqtt,
        }
    }

    /// Whether the listener's streams are TLS (the transport runs on the
    /// plaintext inside).
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            ListenerKind::TlsRawV1 | ListenerKind::TlsWebSocket | ListenerKind::TlsMqtt
        )
    }

    /// The listener's name in logs and the ready file (its `[listen]` key).
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::RawV1 => "client",
            ListenerKind::WebSocket => "websocket",
            ListenerKind::TlsRawV1 => "client_tls",
            ListenerKind::TlsWebSocket => "websocket_tls",
            ListenerKind::Mqtt => "mqtt",
            ListenerKind::TlsMqtt => "mqtt_tls",
        }
    }
}

/// Where a WebSocket connection is. The state that needs memory (an
/// incomplete request head, an incomplete frame) is held by the shard's
/// `WsConns` table only while it is incomplete, so an idle WebSocket
/// connection holds nothing but this tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsPhase {
    /// Reading the HTTP Upgrade request; nothing else is sent or read.
    Upgrading,
    /// Upgraded: v1 frames in binary messages both ways.
    Open,
    /// The server sent its close frame (after the session's last frame, or
    /// in answer to the client's close or a protocol violation): nothing
    /// more is sent; the stream closes.
    CloseSent,
}

/// The transport of one connection (chosen by the listener it came in on,
/// then moved on by its handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Wire protocol v1 frames straight on the stream.
    #[default]
    RawV1,
    /// Wire protocol v1 over WebSocket, in the given phase.
    WebSocket(WsPhase),
    /// MQTT 3.1.1 packets straight on the stream (the session is a
    /// `Session::Mqtt`).
    Mqtt,
}

/// What a push is encoded into for a connection: wire format and framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// v1 frames, unframed on the stream.
    V1Raw,
    /// Each v1 frame as one unmasked binary WebSocket message.
    V1WsBinary,
    /// MQTT PUBLISH packets (`shard_core::mqtt` makes them: their topic
    /// depends on what the push was sent to, and a QoS 1 PUBLISH carries
    /// a packet id of its recipient's).
    MqttPublish,
}

impl Transport {
    /// The encoding this transport's connections receive pushes in.
    pub fn encoding(self) -> Encoding {
        match self {
            Transport::RawV1 => Encoding::V1Raw,
            Transport::WebSocket(_) => Encoding::V1WsBinary,
            Transport::Mqtt => Encoding::MqttPublish,
        }
    }

    /// Whether the transport is WebSocket (in any phase).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::WebSocket(_))
    }
}

/// One push as a holding shard sends it: a copy per encoding its
/// recipients need, each made once, on first use. The copy is the shard's
/// own, so the per-recipient reference counting stays on this core.
#[derive(Debug, Default)]
pub struct LocalCopies {
    v1_raw: Option<Bytes>,
    v1_ws: Option<Bytes>,
    /// The push as MQTT PUBLISH packets, and what it was sent to (which
    /// names their topic).
    mqtt: Option<Vec<Publish>>,
    direct: Direct,
}

impl LocalCopies {
    /// No copy yet, of a push delivered to `target` here.
    pub fn for_target(target: &Target) -> Self {
        let direct = match target {
            Target::All => Direct::All,
            Target::Topic(_) => Direct::Topic,
            Target::User(user, _) => Direct::User(user.clone()),
        };
        LocalCopies {
            direct,
            ..LocalCopies::default()
        }
    }

    /// No copy yet, of a push whose MQTT topic is named by `direct`.
    pub(super) fn with_direct(direct: Direct) -> Self {
        LocalCopies {
            direct,
            ..LocalCopies::default()
        }
    }

    /// The push as PUBLISH packets for MQTT recipients, made on first use
    /// from its v1 frames (each at most `max_frame`).
    pub(super) fn mqtt(&mut self, v1: &[u8], max_frame: u32) -> &[Publish] {
        let direct = &self.direct;
        self.mqtt
            .get_or_insert_with(|| publishes(v1, direct, max_frame))
    }

    /// The bytes for a recipient of `encoding`, of the push whose v1 frame
    /// (or run of frames) is `v1`.
    pub fn get(&mut self, v1: &[u8], encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::V1Raw => self
                .v1_raw
                .get_or_insert_with(|| Bytes::copy_from_slice(v1)),
            // MQTT recipients take `LocalCopies::mqtt`; as v1 bytes this
            // is the v1 frame itself.
            Encoding::V1WsBinary => self
                .v1_ws
                .get_or_insert_with(|| protocol::ws::encode::encode_v1_as_binary(v1)),
            Encoding::MqttPublish => self
                .v1_raw
                .get_or_insert_with(|| Bytes::copy_from_slice(v1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_is_encoded_once_per_encoding() {
        let v1 = [0, 0, 0, 2, 0x3a, 0x00, 0, 0, 0, 1, 0x6a];
        let mut copies = LocalCopies::default();
        let ws = copies.get(&v1, Encoding::V1WsBinary).clone();
        // Two binary messages, FIN set, unmasked, no length prefix.
        assert_eq!(&ws[..], &[0x82, 2, 0x3a, 0x00, 0x82, 1, 0x6a]);
        let again = copies.get(&v1, Encoding::V1WsBinary);
        assert_eq!(again.as_ptr(), ws.as_ptr(), "the same shared bytes");
        assert_eq!(&copies.get(&v1, Encoding::V1Raw)[..], &v1);
    }

    #[test]
    fn listeners_start_their_connections_in_their_transport() {
        assert_eq!(ListenerKind::RawV1.transport(), Transport::RawV1);
        assert_eq!(
            ListenerKind::WebSocket.transport(),
            Transport::WebSocket(WsPhase::Upgrading)
        );
        assert_eq!(
            Transport::WebSocket(WsPhase::Open).encoding(),
            Encoding::V1WsBinary
        );
    }
}

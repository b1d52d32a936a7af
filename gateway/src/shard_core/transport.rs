//! Transports: how a listener's streams carry a wire protocol, between the
//! driver's bytes and the session. Raw v1 (length-prefixed frames straight
//! on TCP) is the only one today; WebSocket, TLS and MQTT listeners add
//! variants here.
//!
//! A push is encoded once per [`Encoding`] a shard's recipients need, not
//! once per recipient: framing that does not depend on the recipient (raw
//! v1; an unmasked WebSocket server frame) is shared by every connection
//! of that encoding, while a per-connection layer such as TLS encrypts
//! each copy on its own connection.

use bytes::Bytes;

/// The transport of one connection (chosen by the listener it came in on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Wire protocol v1 frames straight on the stream.
    #[default]
    RawV1,
}

/// What a push is encoded into for a connection: wire format and framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// v1 frames, unframed on the stream.
    V1Raw,
}

impl Transport {
    /// The encoding this transport's connections receive pushes in.
    pub fn encoding(self) -> Encoding {
        match self {
            Transport::RawV1 => Encoding::V1Raw,
        }
    }

    /// The session's bytes as this transport puts them on the stream
    /// (raw v1: as they are).
    pub fn outbound(self, session_bytes: &[u8]) -> &[u8] {
        match self {
            Transport::RawV1 => session_bytes,
        }
    }

    /// Received bytes as the session reads them (raw v1: as they are).
    pub fn inbound(self, stream_bytes: &[u8]) -> &[u8] {
        match self {
            Transport::RawV1 => stream_bytes,
        }
    }
}

/// One push as a holding shard sends it: a copy per encoding its
/// recipients need, each made once, on first use. The copy is the shard's
/// own, so the per-recipient reference counting stays on this core.
#[derive(Debug, Default, Clone)]
pub struct LocalCopies {
    v1_raw: Option<Bytes>,
}

impl LocalCopies {
    /// The bytes for a recipient of `encoding`, of the push whose v1 frame
    /// (or run of frames) is `v1`.
    pub fn get(&mut self, v1: &[u8], encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::V1Raw => self
                .v1_raw
                .get_or_insert_with(|| Bytes::copy_from_slice(v1)),
        }
    }
}

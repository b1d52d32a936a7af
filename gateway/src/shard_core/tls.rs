//! TLS connections in the core (`[listen] client_tls`, `websocket_tls`):
//! records from the socket are opened by the connection's
//! [`TlsStream`](crate::tls::TlsStream) and the plaintext goes to the
//! transport above (raw v1 or WebSocket) as if it had come from TCP; what
//! the connection sends is queued as plaintext and sealed into records
//! when its send starts (`Outbound::start_send_sealed`), so pushes are
//! still encoded once per shard and only encrypted per connection.
//!
//! The handshake counts against the session's `handshake_timeout`, which
//! runs from the accept to the `Hello` behind it.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::time::Millis;

use super::ShardCore;
use super::conn::flags;
use super::outbound::Frame;
use crate::tls::{TlsAcceptor, TlsStream};

/// The shard's TLS connections, by key, and the config new ones get.
#[derive(Debug, Default)]
pub(super) struct TlsConns {
    streams: HashMap<u32, Box<TlsStream>>,
    /// Plaintext of the records of one read.
    plain: Vec<u8>,
    acceptor: Option<Arc<TlsAcceptor>>,
}

impl TlsConns {
    /// The record layer of connection `key`, if it is a TLS one.
    pub(super) fn stream(&mut self, key: u32) -> Option<&mut TlsStream> {
        self.streams.get_mut(&key).map(|s| &mut **s)
    }

    /// Drops connection `key`'s record layer (its slot is being freed).
    pub(super) fn forget(&mut self, key: u32) {
        if !self.streams.is_empty() {
            self.streams.remove(&key);
        }
    }
}

impl ShardCore {
    /// Gives the core the certificate its TLS listeners present.
    pub fn set_tls_acceptor(&mut self, acceptor: Arc<TlsAcceptor>) {
        self.tls.acceptor = Some(acceptor);
    }

    /// Connection `key` came in on a TLS listener: starts its record layer
    /// with the config current now. False when there is none to start.
    pub(super) fn tls_accept(&mut self, key: u32) -> bool {
        let Some(acceptor) = &self.tls.acceptor else {
            tracing::warn!(shard = self.index, "a TLS connection, but no [tls] config");
            return false;
        };
        match TlsStream::new(acceptor.config()) {
            Ok(stream) => {
                self.tls.streams.insert(key, Box::new(stream));
                if let Some(conn) = self.conns.get_mut(key as usize) {
                    conn.set(flags::TLS);
                }
                true
            }
            Err(e) => {
                tracing::warn!(shard = self.index, "cannot start a TLS connection: {e}");
                false
            }
        }
    }

    /// Records received on TLS connection `key`: their plaintext to the
    /// transport; handshake answers, and on a TLS error its alert and the
    /// close.
    pub(super) fn tls_received(&mut self, now: Millis, key: u32, data: &[u8]) {
        let Some(stream) = self.tls.streams.get_mut(&key) else {
            return;
        };
        let mut plain = std::mem::take(&mut self.tls.plain);
        plain.clear();
        let was_handshaking = stream.is_handshaking();
        let read = stream.read(data, &mut plain);
        if was_handshaking && !stream.is_handshaking() {
            self.stats.tls_handshakes += 1;
        }
        match read {
            Ok(()) => {
                if !plain.is_empty() {
                    self.plain_received(now, key, &plain);
                }
                if self.tls.stream(key).is_some_and(|s| s.wants_write()) {
                    self.enqueue(now, key, Frame::copied(&[]));
                }
            }
            Err(e) => {
                self.stats.tls_failures += 1;
                tracing::debug!(shard = self.index, "TLS connection failed: {e}");
                // The alert rustls queued goes out before the close.
                self.enqueue(now, key, Frame::copied(&[]));
                self.begin_close(now, key);
            }
        }
        if plain.capacity() > 64 * 1024 {
            plain = Vec::new();
        }
        self.tls.plain = plain;
    }

    /// Connection `key` is closing: a close_notify after its last frame.
    pub(super) fn tls_close_notify(&mut self, now: Millis, key: u32) {
        if let Some(stream) = self.tls.stream(key) {
            stream.close();
            self.enqueue(now, key, Frame::copied(&[]));
        }
    }
}

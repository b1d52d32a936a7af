//! The TLS layer of a connection (client side), sans-IO, under any adapter
//! (and under the WebSocket layer for `wss`): ciphertext from the socket
//! in, plaintext for the layer above out; plaintext to send in, ciphertext
//! for the socket out. The handshake, the records and the certificate
//! check are rustls's (ring provider, as the gateway's listeners); this
//! only moves bytes between its buffered `ClientConnection` and the
//! caller's buffers.
//!
//! Every handshake is a full one: session resumption is off, so a
//! `connect` run over TLS measures full handshakes (`--tls-version`: TLS
//! 1.3 only by default, or TLS 1.2 only). Once a handshake is done the
//! layer says which version, cipher suite, key exchange group and kind of
//! handshake it was ([`TlsLayer::input`]), for the report.
//!
//! The buffered connection keeps a few KB per connection at rest (its
//! read buffer); the harness holds 19,000 TLS connections per worker
//! within its memory, so the gateway's unbuffered code is not needed here.
//!
//! nats-server 2.9 starts its TLS after a plaintext `INFO` line (as
//! STARTTLS does): [`TlsLayer::new`] with `after_line` reads that line
//! first, hands it up as plaintext, and only then sends its ClientHello.

use std::io::Read as _;
use std::io::Write as _;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};
use serde::{Deserialize, Serialize};

/// Longest plaintext line accepted before a STARTTLS-style handshake.
const MAX_PRELUDE: usize = 64 * 1024;

/// Which TLS version the harness offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.3 only.
    #[default]
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    V13,
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    V12,
}

/// What a shard needs to make TLS connections: the CA it trusts (PEM), the
/// name it checks the server's certificate against, the version it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsPlan {
    /// PEM text of the certificates to trust.
    pub ca_pem: String,
    /// DNS name or IP address the certificate must name.
    pub server_name: String,
    /// The version offered.
    pub version: TlsVersion,
}

/// Why TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The CA file holds no certificate, or one that does not parse.
    #[error("--tls-ca: {0}")]
    Ca(String),
    /// The server name is neither a DNS name nor an IP address.
    #[error("--tls-server-name {0:?} is neither a DNS name nor an IP address")]
    Name(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A client configuration built once per shard, shared by its connections.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// The configuration for `plan`.
    ///
    /// # Errors
    /// A CA that does not parse or holds no certificate, a bad name.
    pub fn new(plan: &TlsPlan) -> Result<Self, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(plan.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsSetupError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsSetupError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsSetupError::Ca("no CERTIFICATE in the file".into()));
        }
        let name = ServerName::try_from(plan.server_name.clone())
            .map_err(|_| TlsSetupError::Name(plan.server_name.clone()))?;
        let versions: &[&'static rustls::SupportedProtocolVersion] = match plan.version {
            TlsVersion::V13 => &[&rustls::version::TLS13],
            TlsVersion::V12 => &[&rustls::version::TLS12],
        };
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .map_err(|e| TlsSetupError::Config(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        // Every handshake a full one: what a TLS connect run measures.
        config.resumption = Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            name,
        })
    }
}

/// One connection's TLS state.
pub struct TlsLayer {
    conn: ClientConnection,
    /// The plaintext line read before the handshake starts, while it is
    /// awaited (`after_line`).
    prelude: Option<Vec<u8>>,
    /// The handshake has been reported.
    reported: bool,
    /// The connection failed or the server closed it: nothing more flows.
    over: bool,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .field("prelude", &self.prelude.as_ref().map(Vec::len))
            .field("over", &self.over)
            .finish()
    }
}

impl TlsLayer {
    /// A connection to `client`'s server; with `after_line` the handshake
    /// starts after the server's first plaintext line.
    ///
    /// # Errors
    /// rustls could not start a connection with this configuration.
    pub fn new(client: &TlsClient, after_line: bool) -> Result<Self, rustls::Error> {
        let mut conn = ClientConnection::new(Arc::clone(&client.config), client.name.clone())?;
        // What the adapter writes before the handshake ends waits in rustls.
        conn.set_buffer_limit(None);
        Ok(Self {
            conn,
            prelude: after_line.then(Vec::new),
            reported: false,
            over: false,
        })
    }

    /// Writes the ClientHello (unless a plaintext line comes first).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.prelude.is_none() {
            self.flush(out);
        }
    }

    /// Encrypts `plain` into `out` (held by rustls until the handshake
    /// allows application data).
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        if self.over || plain.is_empty() {
            return;
        }
        // Unlimited buffers: writing into rustls cannot fall short.
        let _ = self.conn.writer().write_all(plain);
        if self.prelude.is_none() {
            self.flush(out);
        }
    }

    /// Ciphertext from the server: the plaintext goes to `upper`, the
    /// records rustls answers with (handshake flights, alerts) to `out`.
    /// Returns the handshake's description once it is done.
    ///
    /// # Errors
    /// The connection is over and why: a bad certificate, an alert, a
    /// close_notify. The plaintext received before it is in `upper`.
    pub fn input(
        &mut self,
        mut data: &[u8],
        upper: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Option<String>, String> {
        if self.over {
            return Ok(None);
        }
        if let Some(line) = &mut self.prelude {
            let take = data
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |i| i + 1);
            line.extend_from_slice(&data[..take]);
            data = &data[take..];
            if !line.ends_with(b"\n") {
                if line.len() > MAX_PRELUDE {
                    self.over = true;
                    return Err("tls: no line before the handshake".into());
                }
                return Ok(None);
            }
            upper.extend_from_slice(line);
            self.prelude = None;
            self.flush(out);
        }
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(self.end(format!("tls: {e}"), out)),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Err(self.end(format!("tls: {e}"), out)),
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = upper.len();
                upper.resize(start + n, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut upper[start..]) {
                    upper.truncate(start);
                    return Err(self.end(format!("tls: {e}"), out));
                }
            }
            if state.peer_has_closed() {
                return Err(self.end("tls: close_notify from the server".into(), out));
            }
        }
        self.flush(out);
        if self.reported || self.conn.is_handshaking() {
            return Ok(None);
        }
        self.reported = true;
        Ok(Some(self.describe()))
    }

    /// What the handshake agreed, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384
    /// X25519 full`.
    fn describe(&self) -> String {
        let version = self
            .conn
            .protocol_version()
            .map_or_else(|| "?".to_string(), |v| format!("{v:?}"));
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_string(), |s| format!("{:?}", s.suite()));
        let group = self
            .conn
            .negotiated_key_exchange_group()
            .map_or_else(|| "?".to_string(), |g| format!("{:?}", g.name()));
        let kind = match self.conn.handshake_kind() {
            Some(HandshakeKind::Full) => "full",
            Some(HandshakeKind::FullWithHelloRetryRequest) => "full+HelloRetryRequest",
            Some(HandshakeKind::Resumed) => "resumed",
            None => "?",
        };
        format!("{version} {suite} {group} {kind}")
    }

    /// Ends the connection with `why`, the alert rustls queued into `out`.
    fn end(&mut self, why: String, out: &mut Vec<u8>) -> String {
        self.flush(out);
        self.over = true;
        why
    }

    /// Sends a close_notify.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        if !self.over {
            self.conn.send_close_notify();
            self.flush(out);
        }
    }

    /// Takes every record rustls has to send into `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;

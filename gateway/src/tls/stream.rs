//! One TLS connection's state, driven by the shard core: ciphertext from
//! the socket in, plaintext for the transport above (raw v1 or WebSocket)
//! out; plaintext to send in, ciphertext for the socket out. The record
//! layer, the handshake and alerts are rustls's; this only moves bytes
//! between it and caller-owned buffers.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// A server-side TLS connection.
#[derive(Debug)]
pub struct TlsStream {
    conn: ServerConnection,
    /// A close_notify is to follow the last plaintext sealed.
    closing: bool,
}

impl TlsStream {
    /// A connection just accepted, to be handshaken with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // The shard's outbound queue bounds what waits to be sent; rustls
        // only holds what is sealed before the handshake ends.
        conn.set_buffer_limit(None);
        Ok(TlsStream {
            conn,
            closing: false,
        })
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether rustls has records to send (handshake messages, an alert, a
    /// close_notify): call [`TlsStream::seal`] with no plaintext.
    pub fn wants_write(&self) -> bool {
        self.closing || self.conn.wants_write()
    }

    /// Ciphertext received: the plaintext it carried is appended to
    /// `plain`. An error is the end of the connection: the alert that says
    /// why is pending ([`TlsStream::wants_write`]); send it, then close.
    pub fn read(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let state = self.conn.process_new_packets()?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                let got = self
                    .conn
                    .reader()
                    .read(&mut plain[start..])
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                plain.truncate(start + got);
            }
        }
        Ok(())
    }

    /// Encrypts `plain` and appends every record rustls has to send to
    /// `out` (handshake messages or alerts pending before it come first).
    /// `last`: nothing else is waiting to be sealed, so a close asked for
    /// by [`TlsStream::close`] goes out behind it.
    pub fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) {
        if !plain.is_empty() {
            // Unbounded (see `new`): the write takes all of it.
            let _ = self.conn.writer().write_all(plain);
        }
        if self.closing && last {
            self.closing = false;
            self.conn.send_close_notify();
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Asks for a close_notify alert behind the last plaintext (sent by
    /// the [`TlsStream::seal`] that has nothing left behind it).
    pub fn close(&mut self) {
        self.closing = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::acceptor::tests::{TestPki, pki, temp_dir, write_files};
    use crate::tls::load_server_config;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    fn server(pki: &TestPki, tag: &str, min: tuning::config::TlsVersion) -> Arc<ServerConfig> {
        let dir = temp_dir(tag);
        let mut files = write_files(&dir, pki);
        files.min_version = min;
        let config = load_server_config(&files).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        config
    }

    fn client(
        pki: &TestPki,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// Moves bytes both ways until neither side has anything to say;
    /// `chunk` is how many bytes each delivery to the server carries.
    fn pump(
        c: &mut ClientConnection,
        s: &mut TlsStream,
        chunk: usize,
        got: &mut Vec<u8>,
    ) -> Result<(), rustls::Error> {
        for _ in 0..100 {
            let mut to_server = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut to_server).unwrap();
            }
            for piece in to_server.chunks(chunk.max(1)) {
                s.read(piece, got)?;
            }
            let mut to_client = Vec::new();
            s.seal(&[], true, &mut to_client);
            if to_server.is_empty() && to_client.is_empty() {
                return Ok(());
            }
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
        }
        panic!("the handshake never settled");
    }

    fn exchange(versions: &[&'static rustls::SupportedProtocolVersion], chunk: usize) {
        let pki = pki("leaf");
        let mut s = TlsStream::new(server(&pki, "x", tuning::config::TlsVersion::V1_2)).unwrap();
        let mut c = client(&pki, versions);
        let mut got = Vec::new();
        pump(&mut c, &mut s, chunk, &mut got).unwrap();
        assert!(!s.is_handshaking() && !c.is_handshaking());
        assert_eq!(c.protocol_version(), Some(versions[0].version));
        // Client to server, two messages in one read.
        c.writer().write_all(b"hello ").unwrap();
        c.writer().write_all(b"gateway").unwrap();
        pump(&mut c, &mut s, chunk, &mut got).unwrap();
        assert_eq!(got, b"hello gateway");
        // Server to client.
        let mut wire = Vec::new();
        s.seal(b"welcome", true, &mut wire);
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        let mut plain = [0u8; 16];
        let n = c.reader().read(&mut plain).unwrap();
        assert_eq!(&plain[..n], b"welcome");
        // A close asked for before the last frame is sealed goes behind it.
        s.close();
        assert!(s.wants_write());
        let mut wire = Vec::new();
        s.seal(b"last", false, &mut wire);
        s.seal(b" frame", true, &mut wire);
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        let state = c.process_new_packets().unwrap();
        assert!(state.peer_has_closed());
        let mut all = Vec::new();
        c.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, b"last frame");
    }

    #[test]
    fn tls13_and_tls12_handshake_and_carry_data_both_ways() {
        exchange(&[&rustls::version::TLS13], usize::MAX);
        exchange(&[&rustls::version::TLS12], usize::MAX);
    }

    #[test]
    fn records_split_a_byte_at_a_time_still_arrive() {
        exchange(&[&rustls::version::TLS13], 1);
    }

    #[test]
    fn a_client_that_does_not_trust_the_ca_fails_and_min_version_holds() {
        let ours = pki("leaf");
        let theirs = pki("other");
        let mut s = TlsStream::new(server(&ours, "y", tuning::config::TlsVersion::V1_2)).unwrap();
        let mut c = client(&theirs, &[&rustls::version::TLS13]);
        assert!(pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).is_err());

        let mut s = TlsStream::new(server(&ours, "z", tuning::config::TlsVersion::V1_3)).unwrap();
        let mut c = client(&ours, &[&rustls::version::TLS12]);
        assert!(pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).is_err());
        // The server says why in an alert before the close.
        assert!(s.wants_write() || s.is_handshaking());
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_not_a_panic() {
        let pki = pki("leaf");
        let config = server(&pki, "g", tuning::config::TlsVersion::V1_2);
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0],
            &[0u8; 300],
        ] {
            let mut s = TlsStream::new(config.clone()).unwrap();
            assert!(s.read(garbage, &mut Vec::new()).is_err());
            let mut alert = Vec::new();
            s.seal(&[], true, &mut alert);
            assert!(!alert.is_empty(), "an alert is sent");
        }
    }
}

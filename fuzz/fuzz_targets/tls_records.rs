//! Fuzzes the gateway's TLS record layer (`gateway::tls::TlsStream`), the
//! first code to see the bytes of a TLS listener's client: fed whole and in
//! pieces, the same input must end the same way (an error or not); nothing
//! panics; what a connection holds stays within one handshake message and
//! a record; after an error only whole records go out (the alert rustls
//! queued), never the plaintext, and the stream stays failed.
//!
//! Input layout: byte 0 is a control byte: bits 0..6 are the piece size
//! (1..=64 bytes), bit 7 prepends a real client's ClientHello (recorded
//! once per process) so the states after it are reached; the rest is the
//! wire data.
#![no_main]

use std::sync::{Arc, OnceLock};

use gateway::tls::TlsStream;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

/// The most a stream may hold: a handshake message of 64 KiB (rustls's
/// cap) and the records around it, or one record.
const MAX_HELD: usize = 2 * (0xffff + 16 * 1024 + 2048);

struct Fixture {
    server: Arc<ServerConfig>,
    client_hello: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("a certificate");
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("a server config");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("a root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = ClientConnection::new(
            Arc::new(client),
            ServerName::try_from("localhost").expect("a name"),
        )
        .expect("a client");
        let mut client_hello = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut client_hello).expect("in memory");
        }
        Fixture {
            server: Arc::new(server),
            client_hello,
        }
    })
}

/// Whether `wire` is a run of whole TLS records: what was produced before
/// the error (the server's flight), then the alert rustls queued for it
/// (rustls sends none for some errors, such as an oversized handshake
/// message).
fn whole_records(mut wire: &[u8]) -> bool {
    while !wire.is_empty() {
        if wire.len() < 5 || !(0x14..=0x17).contains(&wire[0]) {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        let Some(rest) = wire.get(5 + len..) else {
            return false;
        };
        wire = rest;
    }
    true
}

/// Feeds `data` in pieces of `piece`; whether the stream failed.
fn run(data: &[u8], piece: usize) -> bool {
    let f = fixture();
    let mut s = TlsStream::new(f.server.clone()).expect("a stream");
    let mut plain = Vec::new();
    let mut out = Vec::new();
    let mut failed = false;
    for chunk in data.chunks(piece) {
        let res = s.read(chunk, &mut plain);
        assert!(s.held_bytes() <= MAX_HELD, "{} held", s.held_bytes());
        if res.is_err() {
            failed = true;
            out.clear();
            s.seal(b"never sent", true, &mut out);
            // After an error: whole records, and never the plaintext.
            assert!(whole_records(&out), "{out:?}");
            assert!(!out.windows(10).any(|w| w == b"never sent"));
            assert!(s.read(b"\x16\x03\x03\x00\x00", &mut plain).is_err());
            assert_eq!(s.held_bytes(), 0);
            break;
        }
        out.clear();
        s.seal(&[], true, &mut out);
    }
    // No handshake can finish without the client's keys: no plaintext.
    assert!(plain.is_empty());
    failed
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let piece = usize::from(ctl & 0x3f) + 1;
    let mut wire = Vec::new();
    if ctl & 0x80 != 0 {
        wire.extend_from_slice(&fixture().client_hello);
    }
    wire.extend_from_slice(data);
    let whole = run(&wire, wire.len().max(1));
    let pieces = run(&wire, piece);
    assert_eq!(whole, pieces, "piece size {piece}");
});

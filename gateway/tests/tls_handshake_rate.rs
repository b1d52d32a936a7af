//! TLS 1.3 handshakes per second on one core, in process: the gateway's
//! [`TlsStream`] against rustls's client, bytes moved in memory, full
//! handshakes (no resumption), ECDSA P-256 leaf, X25519 and the cipher
//! suite the client prefers. The figure counts both sides' work; the
//! server's own share is timed apart (its calls only), which is what one
//! shard spends per handshake.
//!
//! Run: `cargo test --release -p gateway --test tls_handshake_rate --
//! --ignored --nocapture` (ignored by default: a measurement, not a check).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::tls::{TlsStream, load_server_config};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn tls13_handshakes_per_second_on_one_core() {
    let dir = std::env::temp_dir().join(format!("gw-tls-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let files = tuning::config::TlsConfig {
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        ..Default::default()
    };
    let server = load_server_config(&files).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let client = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let budget = Duration::from_secs(3);
    let start = Instant::now();
    let mut server_time = Duration::ZERO;
    let mut handshakes = 0u64;
    let mut suite = None;
    let (mut up, mut down, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    while start.elapsed() < budget && handshakes < 100_000 {
        let mut c =
            ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let t = Instant::now();
        let mut s = TlsStream::new(server.clone()).unwrap();
        server_time += t.elapsed();
        for _ in 0..10 {
            up.clear();
            while c.wants_write() {
                c.write_tls(&mut up).unwrap();
            }
            let t = Instant::now();
            s.read(&up, &mut plain).unwrap();
            down.clear();
            s.seal(&[], true, &mut down);
            server_time += t.elapsed();
            if up.is_empty() && down.is_empty() {
                break;
            }
            let mut rd = &down[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
        }
        assert!(!s.is_handshaking() && !c.is_handshaking());
        suite = s.cipher_suite();
        let t = Instant::now();
        drop(s);
        server_time += t.elapsed();
        handshakes += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "TLS 1.3 full handshakes on one core, client and server in one thread: \
         {handshakes} in {wall:.2} s = {:.0}/s; the server's share {:.2} s = {:.0}/s \
         server-side ({suite:?})",
        handshakes as f64 / wall,
        server_time.as_secs_f64(),
        handshakes as f64 / server_time.as_secs_f64(),
    );
}

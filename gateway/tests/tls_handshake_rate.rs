//! TLS 1.3 handshakes per second on one core, in process: the gateway's
//! [`TlsStream`] against rustls's client, bytes moved in memory, full
//! handshakes (no resumption), ECDSA P-256 leaf, X25519 and the cipher
//! suite the client prefers. The figure counts both sides' work; the
//! server's own share is timed apart (its calls only), which is what one
//! shard spends per handshake.
//!
//! Also the cost of one small record each way after the handshake (what a
//! push costs per TLS recipient, and an uplink frame).
//!
//! Run: `cargo test --release -p gateway --test tls_handshake_rate --
//! --ignored --nocapture --test-threads=1` (ignored by default: a
//! measurement, not a check).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::tls::{TlsStream, load_server_config};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A server config for a fresh CA-signed leaf, and a TLS 1.3 client
/// config that trusts the CA.
fn configs() -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gw-tls-rate-{}-{n}", std::process::id()));
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
    (server, client)
}

/// Runs the handshake of `c` and `s` to its end.
fn handshake(c: &mut ClientConnection, s: &mut TlsStream) {
    for _ in 0..10 {
        let mut up = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut up).unwrap();
        }
        s.read(&up, &mut Vec::new()).unwrap();
        let mut down = Vec::new();
        s.seal(&[], true, &mut down);
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
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn tls13_handshakes_per_second_on_one_core() {
    let (server, client) = configs();
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

/// What encrypting one push costs per recipient: `seal` of a 100-byte
/// frame into a fresh output, as the core does when a send starts; and
/// what opening one 100-byte record from the client costs (`read`).
#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn seal_and_read_cost_per_small_record() {
    let (server, client) = configs();
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = TlsStream::new(server).unwrap();
    handshake(&mut c, &mut s);
    let push = [0x5au8; 100];
    const N: u32 = 200_000;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..N {
        let mut out = Vec::with_capacity(push.len() + 64);
        s.seal(&push, true, &mut out);
        bytes += out.len();
    }
    let seal_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    // Records from the client, one per read.
    let mut records = Vec::new();
    for _ in 0..N {
        use std::io::Write;
        c.writer().write_all(&push).unwrap();
        let mut up = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut up).unwrap();
        }
        records.push(up);
    }
    let mut plain = Vec::new();
    let t = Instant::now();
    for r in &records {
        plain.clear();
        s.read(r, &mut plain).unwrap();
    }
    let read_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    println!(
        "100-byte records ({:?}): seal {seal_ns:.0} ns each ({} B on the wire), read {read_ns:.0} ns each",
        s.cipher_suite(),
        bytes / N as usize
    );
}

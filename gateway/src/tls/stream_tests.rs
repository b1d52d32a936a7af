//! [`TlsStream`] against rustls's own client, in memory.

use std::io::{Read, Write};

use super::*;
use crate::tls::acceptor::tests::{TestPki, pki, temp_dir, write_files};
use crate::tls::{TlsAcceptor, load_server_config};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tuning::config::TlsVersion;

fn server(pki: &TestPki, tag: &str, min: TlsVersion) -> Arc<ServerConfig> {
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

/// Gives the client all of `wire`; the plaintext it carried is appended
/// to `plain`.
fn to_client_into(
    c: &mut ClientConnection,
    wire: &[u8],
    plain: &mut Vec<u8>,
) -> Result<rustls::IoState, rustls::Error> {
    let mut rd = wire;
    let mut state = c.process_new_packets()?;
    loop {
        let n = state.plaintext_bytes_to_read();
        let start = plain.len();
        plain.resize(start + n, 0);
        c.reader().read_exact(&mut plain[start..]).unwrap();
        if rd.is_empty() {
            return Ok(state);
        }
        c.read_tls(&mut rd).unwrap();
        state = c.process_new_packets()?;
    }
}

/// Gives the client all of `wire`, which carries no plaintext.
fn to_client(c: &mut ClientConnection, wire: &[u8]) -> Result<rustls::IoState, rustls::Error> {
    let mut plain = Vec::new();
    let state = to_client_into(c, wire, &mut plain)?;
    assert!(plain.is_empty(), "unexpected plaintext");
    Ok(state)
}

/// Gives the client all of `wire` and returns the plaintext it carried.
fn client_reads(c: &mut ClientConnection, wire: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    to_client_into(c, wire, &mut plain).unwrap();
    plain
}

/// Moves bytes both ways until neither side has anything to say;
/// `chunk` is how many bytes each delivery to the server carries. The
/// server's plaintext is appended to `got`; the client's is returned.
fn pump(
    c: &mut ClientConnection,
    s: &mut TlsStream,
    chunk: usize,
    got: &mut Vec<u8>,
) -> Result<Vec<u8>, rustls::Error> {
    let mut client_got = Vec::new();
    for _ in 0..100 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        for piece in to_server.chunks(chunk.max(1)) {
            s.read(piece, got)?;
        }
        let mut down = Vec::new();
        s.seal(&[], true, &mut down);
        if to_server.is_empty() && down.is_empty() {
            return Ok(client_got);
        }
        to_client_into(c, &down, &mut client_got)?;
    }
    panic!("the handshake never settled");
}

fn exchange(versions: &[&'static rustls::SupportedProtocolVersion], chunk: usize) {
    let pki = pki("leaf");
    let mut s = TlsStream::new(server(&pki, "x", TlsVersion::V1_2)).unwrap();
    let mut c = client(&pki, versions);
    assert!(s.is_handshaking());
    let mut got = Vec::new();
    pump(&mut c, &mut s, chunk, &mut got).unwrap();
    assert!(!s.is_handshaking() && !c.is_handshaking());
    assert_eq!(c.protocol_version(), Some(versions[0].version));
    assert_eq!(s.protocol_version(), Some(versions[0].version));
    assert!(s.cipher_suite().is_some());
    assert_eq!(s.held_bytes(), 0, "nothing held after the handshake");
    // Client to server: two records in one read.
    c.writer().write_all(b"hello ").unwrap();
    c.writer().write_all(b"gateway").unwrap();
    pump(&mut c, &mut s, chunk, &mut got).unwrap();
    assert_eq!(got, b"hello gateway");
    assert_eq!(s.held_bytes(), 0, "nothing held at rest");
    // Server to client, one message and then several sealed into one
    // output, the largest over one record.
    let mut wire = Vec::new();
    s.seal(b"welcome", true, &mut wire);
    assert_eq!(client_reads(&mut c, &wire), b"welcome");
    let big: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let mut wire = Vec::new();
    s.seal(b"a", false, &mut wire);
    s.seal(&big, false, &mut wire);
    s.seal(b"z", true, &mut wire);
    let all = client_reads(&mut c, &wire);
    assert_eq!(all.len(), 1 + big.len() + 1);
    assert_eq!(all[0], b'a');
    assert_eq!(&all[1..1 + big.len()], &big[..]);
    assert_eq!(all[1 + big.len()], b'z');
    // A close asked for before the last frame is sealed goes behind it.
    s.close();
    assert!(s.wants_write());
    let mut wire = Vec::new();
    s.seal(b"last", false, &mut wire);
    s.seal(b" frame", true, &mut wire);
    assert!(!s.wants_write());
    let mut all = Vec::new();
    let state = to_client_into(&mut c, &wire, &mut all).unwrap();
    assert!(state.peer_has_closed());
    assert_eq!(all, b"last frame");
    // Nothing after the close_notify.
    let mut after = Vec::new();
    s.seal(b"late", true, &mut after);
    assert!(after.is_empty());
    // The client's close_notify is seen.
    c.send_close_notify();
    pump(&mut c, &mut s, chunk, &mut got).unwrap();
    assert!(s.peer_closed());
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn tls13_and_tls12_handshake_and_carry_data_both_ways() {
    exchange(&[&rustls::version::TLS13], usize::MAX);
    exchange(&[&rustls::version::TLS12], usize::MAX);
}

#[test]
fn records_split_a_byte_at_a_time_still_arrive() {
    exchange(&[&rustls::version::TLS13], 1);
    exchange(&[&rustls::version::TLS12], 1);
}

#[test]
fn an_incomplete_record_is_held_only_while_incomplete() {
    let pki = pki("leaf");
    let mut s = TlsStream::new(server(&pki, "held", TlsVersion::V1_2)).unwrap();
    let mut c = client(&pki, &[&rustls::version::TLS13]);
    pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap();
    c.writer().write_all(&[7u8; 1000]).unwrap();
    let mut up = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut up).unwrap();
    }
    let mut got = Vec::new();
    s.read(&up[..500], &mut got).unwrap();
    assert!(got.is_empty());
    assert!(s.held_bytes() >= 500, "the first half is held");
    s.read(&up[500..], &mut got).unwrap();
    assert_eq!(got, vec![7u8; 1000]);
    assert_eq!(s.held_bytes(), 0, "and freed once complete");
}

#[test]
fn plaintext_sealed_during_the_handshake_goes_out_after_it() {
    let pki = pki("leaf");
    let mut s = TlsStream::new(server(&pki, "early", TlsVersion::V1_2)).unwrap();
    let mut c = client(&pki, &[&rustls::version::TLS12]);
    let mut out = Vec::new();
    s.seal(b"early", true, &mut out);
    assert!(out.is_empty(), "nothing can be sent before the handshake");
    assert!(!s.wants_write());
    let plain = pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap();
    assert_eq!(plain, b"early");
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn a_client_that_does_not_trust_the_ca_fails_and_min_version_holds() {
    let ours = pki("leaf");
    let theirs = pki("other");
    let mut s = TlsStream::new(server(&ours, "y", TlsVersion::V1_2)).unwrap();
    let mut c = client(&theirs, &[&rustls::version::TLS13]);
    let err = pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    // The client's alert reaches the server, which fails too.
    let mut up = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut up).unwrap();
    }
    let e = s.read(&up, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, rustls::Error::AlertReceived(_)), "{e}");
    assert!(s.is_handshaking(), "a failed handshake is not a handshake");
    assert!(s.read(b"more", &mut Vec::new()).is_err(), "it stays failed");

    // A TLS 1.2 client against min_version = "1.3": the server refuses
    // with an alert the client sees.
    let mut s = TlsStream::new(server(&ours, "z", TlsVersion::V1_3)).unwrap();
    let mut c = client(&ours, &[&rustls::version::TLS12]);
    let mut up = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut up).unwrap();
    }
    assert!(s.read(&up, &mut Vec::new()).is_err());
    assert!(s.wants_write(), "an alert waits");
    let mut alert = Vec::new();
    s.seal(&[], true, &mut alert);
    let e = to_client(&mut c, &alert).unwrap_err();
    assert!(matches!(e, rustls::Error::AlertReceived(_)), "{e}");
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn garbage_is_an_error_with_an_alert_not_a_panic() {
    let pki = pki("leaf");
    let config = server(&pki, "g", TlsVersion::V1_2);
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0],
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00],
        &[
            0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ],
        &[0u8; 300],
    ] {
        for chunk in [1, usize::MAX] {
            let mut s = TlsStream::new(config.clone()).unwrap();
            let failed = garbage
                .chunks(chunk)
                .any(|piece| s.read(piece, &mut Vec::new()).is_err());
            assert!(failed, "{garbage:?}");
            let mut alert = Vec::new();
            s.seal(b"ignored", true, &mut alert);
            assert!(!alert.is_empty(), "an alert is sent: {garbage:?}");
            assert_eq!(alert[0], 0x15, "an alert record");
            assert_eq!(s.held_bytes(), 0);
        }
    }
}

#[test]
fn garbage_after_the_handshake_is_an_error_with_an_alert() {
    let pki = pki("leaf");
    let mut s = TlsStream::new(server(&pki, "g2", TlsVersion::V1_2)).unwrap();
    let mut c = client(&pki, &[&rustls::version::TLS13]);
    pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap();
    // An application-data record that does not decrypt.
    let bad = [0x17, 0x03, 0x03, 0x00, 0x20]
        .iter()
        .copied()
        .chain([0xaa; 32]);
    assert!(s.read(&bad.collect::<Vec<_>>(), &mut Vec::new()).is_err());
    let mut alert = Vec::new();
    s.seal(&[], true, &mut alert);
    // The alert is encrypted under the traffic keys: the client reads it.
    let e = to_client(&mut c, &alert).unwrap_err();
    assert!(matches!(e, rustls::Error::AlertReceived(_)), "{e}");
}

/// The end-entity certificate the client was shown.
fn leaf_seen(c: &ClientConnection) -> CertificateDer<'static> {
    c.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn a_reload_changes_the_certificate_of_new_sessions_only() {
    let dir = temp_dir("reload-peer");
    let first = pki("first");
    let files = write_files(&dir, &first);
    let acceptor = TlsAcceptor::load(&files).unwrap();

    // One session before the reload.
    let mut old = TlsStream::new(acceptor.config()).unwrap();
    let mut old_c = client(&first, &[&rustls::version::TLS13]);
    pump(&mut old_c, &mut old, usize::MAX, &mut Vec::new()).unwrap();
    let first_leaf = leaf_seen(&old_c);

    // The second pair, from another CA: a client trusting only that CA
    // gets through only after the reload.
    let second = pki("second");
    write_files(&dir, &second);
    let mut s = TlsStream::new(acceptor.config()).unwrap();
    let mut c = client(&second, &[&rustls::version::TLS13]);
    assert!(pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).is_err());
    acceptor.reload().unwrap();
    let mut s = TlsStream::new(acceptor.config()).unwrap();
    let mut c = client(&second, &[&rustls::version::TLS13]);
    pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap();
    let second_leaf = leaf_seen(&c);
    assert_ne!(first_leaf, second_leaf);
    assert_eq!(second_leaf.as_ref(), pem_der(&second.cert_pem));

    // The session from before goes on with its own.
    let mut wire = Vec::new();
    old.seal(b"still here", true, &mut wire);
    assert_eq!(client_reads(&mut old_c, &wire), b"still here");

    // A broken file: the reload fails and new sessions keep the second.
    std::fs::write(dir.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    assert!(acceptor.reload().is_err());
    let mut s = TlsStream::new(acceptor.config()).unwrap();
    let mut c = client(&second, &[&rustls::version::TLS13]);
    pump(&mut c, &mut s, usize::MAX, &mut Vec::new()).unwrap();
    assert_eq!(leaf_seen(&c), second_leaf);
    let _ = std::fs::remove_dir_all(&dir);
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

//! The TLS layer against an in-memory rustls server (certificates from
//! rcgen): a full TLS 1.3 handshake with plaintext written before it ends,
//! the report of what was agreed, TLS 1.2 when asked, an untrusted
//! certificate refused, and the STARTTLS-style line first.

use std::io::{Read, Write};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

use super::*;

/// A CA (PEM) and a server config for localhost / 127.0.0.1 signed by it.
fn pki() -> (String, Arc<ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
    (ca.pem(), Arc::new(server))
}

fn plan(ca_pem: &str, version: TlsVersion) -> TlsPlan {
    TlsPlan {
        ca_pem: ca_pem.into(),
        server_name: "127.0.0.1".into(),
        version,
    }
}

/// Moves bytes both ways until neither side has anything to say; returns
/// the handshake reports and the plaintext the client got, or its error.
fn pump(
    client: &mut TlsLayer,
    mut to_server: Vec<u8>,
    server: &mut ServerConnection,
) -> (Vec<String>, Vec<u8>, Option<String>) {
    let (mut reports, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            if server.process_new_packets().is_err() {
                break;
            }
        }
        let mut to_client = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut to_client).unwrap();
        }
        if to_client.is_empty() {
            break;
        }
        to_server = Vec::new();
        match client.input(&to_client, &mut plain, &mut to_server) {
            Ok(r) => reports.extend(r),
            Err(e) => return (reports, plain, Some(e)),
        }
    }
    (reports, plain, None)
}

#[test]
fn a_full_tls13_handshake_carries_data_both_ways_and_says_what_it_agreed() {
    let (ca, server_cfg) = pki();
    let client = TlsClient::new(&plan(&ca, TlsVersion::V13)).unwrap();
    let mut c = TlsLayer::new(&client, false).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    assert_eq!(out[0], 0x16, "a handshake record: the ClientHello");
    // Written before the handshake ends: held, then sent encrypted.
    c.send(b"hello", &mut out);
    server.writer().write_all(b"welcome").unwrap();
    let (reports, plain, err) = pump(&mut c, out, &mut server);
    assert_eq!(err, None);
    assert_eq!(plain, b"welcome");
    assert_eq!(reports.len(), 1, "reported once: {reports:?}");
    assert!(
        reports[0].starts_with("TLSv1_3 TLS13_") && reports[0].ends_with(" X25519 full"),
        "{}",
        reports[0]
    );
    let mut got = [0u8; 5];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // After the handshake, a send is records at once.
    let mut out = Vec::new();
    c.send(b"more", &mut out);
    assert_eq!(out[0], 0x17, "application data");
    // A close_notify from the server ends the layer and says so.
    server.send_close_notify();
    let (_, _, err) = pump(&mut c, Vec::new(), &mut server);
    assert_eq!(err.as_deref(), Some("tls: close_notify from the server"));
}

#[test]
fn tls12_only_when_asked() {
    let (ca, server_cfg) = pki();
    let client = TlsClient::new(&plan(&ca, TlsVersion::V12)).unwrap();
    let mut c = TlsLayer::new(&client, false).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    let (reports, _, err) = pump(&mut c, out, &mut server);
    assert_eq!(err, None);
    assert!(reports[0].starts_with("TLSv1_2 TLS_ECDHE_"), "{reports:?}");
}

#[test]
fn a_certificate_from_another_ca_or_for_another_name_is_refused() {
    let (_, server_cfg) = pki();
    let (other_ca, _) = pki();
    let client = TlsClient::new(&plan(&other_ca, TlsVersion::V13)).unwrap();
    let mut c = TlsLayer::new(&client, false).unwrap();
    let mut server = ServerConnection::new(Arc::clone(&server_cfg)).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    let (reports, _, err) = pump(&mut c, out, &mut server);
    assert!(reports.is_empty());
    let err = err.unwrap();
    // Both CAs have the same (empty) name: the other CA is found and its
    // signature does not match.
    assert!(err.starts_with("tls: invalid peer certificate: "), "{err}");

    let (ca, server_cfg) = pki();
    let mut wrong = plan(&ca, TlsVersion::V13);
    wrong.server_name = "example.org".into();
    let mut c = TlsLayer::new(&TlsClient::new(&wrong).unwrap(), false).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    let (_, _, err) = pump(&mut c, out, &mut server);
    let err = err.unwrap();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "{err}"
    );
}

#[test]
fn bad_settings_are_named() {
    let none = plan("not a pem", TlsVersion::V13);
    assert_eq!(
        TlsClient::new(&none).unwrap_err(),
        TlsSetupError::Ca("no CERTIFICATE in the file".into())
    );
    let (ca, _) = pki();
    let mut bad = plan(&ca, TlsVersion::V13);
    bad.server_name = "not a name!".into();
    assert!(matches!(
        TlsClient::new(&bad).unwrap_err(),
        TlsSetupError::Name(_)
    ));
}

#[test]
fn after_a_plaintext_line_the_handshake_starts() {
    let (ca, server_cfg) = pki();
    let client = TlsClient::new(&plan(&ca, TlsVersion::V13)).unwrap();
    let mut c = TlsLayer::new(&client, true).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    c.send(b"CONNECT {}\r\n", &mut out);
    assert!(out.is_empty(), "nothing before the server's line");
    let (mut up, mut out) = (Vec::new(), Vec::new());
    c.input(b"INFO {\"tls_required\"", &mut up, &mut out)
        .unwrap();
    assert!(up.is_empty() && out.is_empty());
    c.input(b":true}\r\n", &mut up, &mut out).unwrap();
    assert_eq!(up, b"INFO {\"tls_required\":true}\r\n");
    assert_eq!(out[0], 0x16, "then the ClientHello");
    let mut server = ServerConnection::new(server_cfg).unwrap();
    let (reports, _, err) = pump(&mut c, out, &mut server);
    assert_eq!((reports.len(), err), (1, None));
    let mut got = [0u8; 12];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"CONNECT {}\r\n");
}

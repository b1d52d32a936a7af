//! End-to-end tests of the TLS listeners (`[listen] client_tls` and
//! `websocket_tls` with `[tls] cert` and `key`) against clients nobody here
//! wrote: Python's `ssl` module (raw v1 over TLS), Python's `websockets`
//! over `wss://`, and `openssl s_client`. The CA and the certificates are
//! made in the test (rcgen).

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod tls_common;

use e2e_tests::{Gateway, TempDir, http, test_python, test_script, token};
use serde_json::json;
use tls_common::Pki;

/// The gateway with its three TLS listeners (v1, WebSocket, MQTT). The close linger is longer than
/// the default 200 ms: a TLS client answers the close with a close_notify
/// of its own, and on a loaded box (the tests of this file run in
/// parallel) one arriving after the gateway closed draws a reset that can
/// discard the close frame before the client has read it.
fn start(dir: &Path) -> Gateway {
    let config = format!(
        "[listen]\nclient_tls = \"127.0.0.1:0\"\nwebsocket_tls = \"127.0.0.1:0\"\n\
         mqtt_tls = \"127.0.0.1:0\"\n\
         [protocol]\nclose_linger_ms = 2000\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    Gateway::start(2, &config)
}

/// Runs `tls_peer.py` to the gateway's TLS client listener; `push` is
/// sent once the peer says it is welcomed. Returns its output lines.
fn ssl_peer(
    gw: &Gateway,
    cafile: &str,
    user: &str,
    push: Option<serde_json::Value>,
) -> Vec<String> {
    let addr = gw.client_tls.expect("client_tls bound");
    let mut child = Command::new(test_python())
        .arg(test_script("tls_peer.py"))
        .args(["127.0.0.1", &addr.port().to_string(), cafile, &token(user)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let welcomed = line.starts_with("welcome ");
        lines.push(line);
        if welcomed && let Some(body) = &push {
            let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).unwrap();
            assert_eq!(status, 200, "{text}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn pythons_ssl_client_verifies_the_certificate_and_gets_a_durable_push() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(&dir.0);
    pki.leaf(&dir.0, "gateway-one");
    let gw = start(&dir.0);
    let ca = dir.0.join("ca.pem").display().to_string();
    let push = json!({"to": {"user": "ssl-user"}, "payload": "sealed", "ack": true});
    let lines = ssl_peer(&gw, &ca, "ssl-user", Some(push));
    assert_eq!(
        lines.first().map(String::as_str),
        Some("cert gateway-one TLSv1.3"),
        "{lines:?}"
    );
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("welcome ssl-user"),
        "{lines:?}"
    );
    let last = lines.get(2).expect("a push");
    assert!(
        last.starts_with("push ") && last.ends_with(" 1 sealed"),
        "{last}"
    );
    assert_eq!(gw.wait_total("acks", 1), 1);
    let handshakes = gw.wait_total_until("tls_handshakes", Duration::from_secs(5), |v| v >= 1);
    assert!(handshakes >= 1);
}

#[test]
fn a_client_that_does_not_trust_the_ca_is_refused_and_nobody_else_is_hurt() {
    let dir = TempDir::new("tls-untrusted");
    let pki = Pki::new(&dir.0);
    pki.leaf(&dir.0, "gateway-one");
    let gw = start(&dir.0);
    // The system's roots do not include the test CA.
    let lines = ssl_peer(&gw, "-", "nobody", None);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("refused CERTIFICATE_VERIFY_FAILED"),
        "{lines:?}"
    );
    assert!(
        gw.wait_total_until("tls_failures", Duration::from_secs(5), |v| v >= 1) >= 1,
        "the gateway saw the client's alert"
    );
    let ca = dir.0.join("ca.pem").display().to_string();
    let push = json!({"to": {"user": "after"}, "payload": "still fine"});
    let lines = ssl_peer(&gw, &ca, "after", Some(push));
    assert!(
        lines.last().unwrap().ends_with(" 0 still fine"),
        "{lines:?}"
    );
}

/// `openssl s_client` to `port` with extra `args`: its output.
fn s_client(port: u16, ca: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_s_client_verifies_tls13_and_tls12_and_sighup_reloads_the_certificate() {
    let dir = TempDir::new("tls-openssl");
    let pki = Pki::new(&dir.0);
    pki.leaf(&dir.0, "gateway-one");
    let gw = start(&dir.0);
    let port = gw.client_tls.unwrap().port();
    let ca = dir.0.join("ca.pem");
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let (ok, text) = s_client(port, &ca, &[flag]);
        assert!(ok, "{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert!(text.contains(version), "{version}: {text}");
        assert!(
            text.contains("CN=gateway-one") || text.contains("CN = gateway-one"),
            "{text}"
        );
    }

    // A new certificate on disk, then SIGHUP: new connections get it.
    pki.leaf(&dir.0, "gateway-two");
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let (_, text) = s_client(port, &ca, &[]);
        if text.contains("gateway-two") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(seen.contains("gateway-two"), "{seen}");
    assert!(
        gw.log().contains("TLS certificate and key reloaded"),
        "{}",
        gw.log()
    );

    // A broken file and SIGHUP: the old certificate stays, the log says why.
    std::fs::write(dir.0.join("key.pem"), "not a key\n").unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("TLS reload failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.log().contains("TLS reload failed"), "{}", gw.log());
    let (ok, text) = s_client(port, &ca, &[]);
    assert!(ok && text.contains("gateway-two"), "{text}");
}

#[test]
fn pythons_websockets_client_over_wss() {
    let dir = TempDir::new("tls-wss");
    let pki = Pki::new(&dir.0);
    pki.leaf(&dir.0, "gateway-one");
    let gw = start(&dir.0);
    let url = format!("wss://localhost:{}/", gw.websocket_tls.unwrap().port());
    let mut child = Command::new(test_python())
        .arg(test_script("ws_peer.py"))
        .args([url.as_str(), &token("wss-user")])
        .arg(dir.0.join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a line from the peer")
    };
    assert_eq!(line(), "welcome wss-user");
    let (status, text) = http(
        gw.control,
        "POST",
        "/v1/push",
        &json!({"to": {"all": true}, "payload": "over-wss"}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let got = line();
    assert!(got.ends_with(" 0 over-wss"), "{got}");
    use std::io::Write;
    writeln!(stdin, "ping").unwrap();
    assert_eq!(line(), "pong");
    writeln!(stdin, "bye").unwrap();
    let mut last = line();
    if last.starts_with("reader-ended") {
        last = line();
    }
    assert_eq!(last, "closed 1000");
    let _ = child.wait();
}

#[test]
fn mosquitto_sub_over_tls_verifies_the_certificate_and_gets_pushes() {
    let dir = TempDir::new("tls-mqtt");
    let pki = Pki::new(&dir.0);
    pki.leaf(&dir.0, "gw-mqtt");
    let gw = start(&dir.0);
    let port = gw.mqtt_tls.expect("mqtt_tls listener").port().to_string();
    let ca = dir.0.join("ca.pem");
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "localhost", "-p", &port])
        .args(["--cafile", ca.to_str().unwrap()])
        .args([
            "-u",
            "",
            "-P",
            &token("tls-mqtt"),
            "-t",
            "secure/#",
            "-v",
            "-d",
        ])
        .args(["-W", "30"]);
    let sub = e2e_tests::LineChild::spawn(cmd);
    sub.line_where(|l| l.contains("received SUBACK"));
    std::thread::sleep(Duration::from_millis(200));
    let body = json!({"to": {"topic": "secure/room"}, "payload": "sealed"}).to_string();
    let (status, text) = http(gw.control, "POST", "/v1/push", &body).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        sub.line_where(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed ")),
        "secure/room sealed"
    );
    let handshakes = gw.wait_total_until("tls_handshakes", Duration::from_secs(5), |v| v >= 1);
    assert!(handshakes >= 1);

    // A client that does not trust the CA gets no session.
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            "/etc/ssl/certs/ca-certificates.crt",
        ])
        .args(["-u", "", "-P", &token("tls-mqtt"), "-t", "x", "-W", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let failures = gw.wait_total_until("tls_failures", Duration::from_secs(5), |v| v >= 1);
    assert!(failures >= 1, "the untrusting client's handshake failed");
    assert_eq!(gw.total("sessions"), 1, "only the trusting subscriber");
}

//! What a gateway refuses to start with: addresses another gateway already
//! serves (SO_REUSEPORT would otherwise let it join silently), an address
//! someone else holds (said once, not twice), and an HS256 secret shorter
//! than 32 bytes (from the environment or the config).

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{Gateway, SECRET, TempDir, binary};

/// Runs a gateway that must refuse to start: (exited non-zero, stderr).
/// Killed (and the test failed) if it is still running after 10 s.
fn refused(args: &[&str], secret: Option<&str>) -> String {
    let dir = TempDir::new("refused");
    let err_path = dir.0.join("stderr");
    let mut cmd = Command::new(binary("gateway"));
    // In its own directory: a gateway that gets as far as its store keeps
    // it there, not beside the tests.
    cmd.args(args)
        .current_dir(&dir.0)
        .env_remove("GATEWAY_JWT_SECRET")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap());
    if let Some(s) = secret {
        cmd.env("GATEWAY_JWT_SECRET", s);
    }
    let mut child = cmd.spawn().expect("spawn gateway");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gateway {args:?} did not refuse to start; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{args:?} exited 0:\n{text}");
    text
}

#[test]
fn a_second_gateway_on_the_same_client_address_refuses_to_start() {
    let first = Gateway::start(1, "");
    let addr = first.client.to_string();
    let err = refused(
        &[
            "--listen",
            &addr,
            "--control",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
        Some(SECRET),
    );
    assert!(err.contains(&format!("already serves {addr}")), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    // The first one is untouched: still serving, still alone on its port.
    assert_eq!(first.total("connections"), 0);
    e2e_tests::Client::established(first.client, "still-there");
}

#[test]
fn a_second_gateway_on_the_same_control_address_refuses_to_start() {
    let first = Gateway::start(1, "");
    let addr = first.control.to_string();
    let err = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--control",
            &addr,
            "--shards",
            "1",
        ],
        Some(SECRET),
    );
    assert!(err.contains(&format!("already serves {addr}")), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
}

#[test]
fn a_wildcard_address_over_a_served_port_refuses_to_start() {
    // SO_REUSEPORT would let 0.0.0.0:P bind beside 127.0.0.1:P.
    let first = Gateway::start(1, "");
    let port = first.client.port();
    let wildcard = format!("0.0.0.0:{port}");
    let err = refused(
        &[
            "--listen",
            &wildcard,
            "--control",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
        Some(SECRET),
    );
    assert!(
        err.contains(&format!(
            "already serves {}, which overlaps {wildcard}",
            first.client
        )),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
}

#[test]
fn an_address_in_use_by_another_program_is_said_once() {
    // A plain listener without SO_REUSEPORT: the gateway's bind fails.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    let err = refused(
        &[
            "--listen",
            &addr,
            "--control",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
        Some(SECRET),
    );
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

#[test]
fn a_short_secret_in_the_environment_is_refused() {
    let err = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
        Some("e2e-test-secret"),
    );
    assert!(err.contains("GATEWAY_JWT_SECRET is 15 bytes"), "{err}");
    assert!(err.contains("at least 32 bytes"), "{err}");
}

#[test]
fn a_short_secret_in_the_config_is_refused() {
    let dir = TempDir::new("short-secret");
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, "[auth]\njwt_secret = \"0123456789\"\n").unwrap();
    let err = refused(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
        None,
    );
    assert!(err.contains("auth.jwt_secret"), "{err}");
    assert!(
        err.contains("10 bytes") && err.contains("at least 32"),
        "{err}"
    );
}

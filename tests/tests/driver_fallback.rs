//! Where io_uring is not allowed: the gateway under a seccomp filter that
//! denies the io_uring syscalls (as Docker's and containerd's default
//! profiles do), installed on the gateway process alone by
//! `e2e-no-io-uring` before it execs. `auto` falls back to epoll, says why
//! in one log line and serves clients; `io_uring` refuses to start with a
//! one-line error naming the cause; `gateway-tune check` says which
//! driver will run.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use e2e_tests::{Client, Gateway, binary, http};
use serde_json::json;

#[test]
fn auto_falls_back_to_epoll_says_why_once_and_serves_clients() {
    let gw = Gateway::start_under(&binary("e2e-no-io-uring"), 2, "");
    let log = gw.log();
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("falling back to epoll"))
        .collect();
    assert_eq!(why.len(), 1, "one line says why:\n{log}");
    assert!(
        why[0].contains("io_uring_setup: EPERM (blocked by seccomp"),
        "{}",
        why[0]
    );
    assert_eq!(
        log.matches("driver=\"epoll\"").count(),
        2,
        "both shards on epoll:\n{log}"
    );
    // It serves: a session on each shard, a push to each, a broadcast.
    let mut clients: Vec<Client> = (0..8)
        .map(|i| Client::established(gw.client, &format!("fb{i}")))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let body = json!({"to": {"user": format!("fb{i}")}, "payload": format!("p{i}")});
        let (status, answer) = http(gw.control, "POST", "/v1/push", &body.to_string()).unwrap();
        assert_eq!(status, 200, "{answer}");
        let push = c
            .next_push(Duration::from_secs(5))
            .expect("the push arrives");
        assert_eq!(&push.payload[..], format!("p{i}").as_bytes());
    }
    let body = json!({"to": {"all": true}, "payload": "all"});
    let (status, answer) = http(gw.control, "POST", "/v1/push", &body.to_string()).unwrap();
    assert_eq!(status, 200, "{answer}");
    for c in &mut clients {
        let push = c
            .next_push(Duration::from_secs(5))
            .expect("the broadcast arrives");
        assert_eq!(&push.payload[..], b"all");
    }
}

#[test]
fn io_uring_under_the_filter_fails_with_one_line_naming_the_cause() {
    let dir = e2e_tests::TempDir::new("uring-refused");
    let out = Command::new(binary("e2e-no-io-uring"))
        .current_dir(&dir.0)
        .arg(binary("gateway"))
        .args([
            "--driver",
            "io_uring",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run the gateway");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "gateway: driver = \"io_uring\" but io_uring is unavailable: io_uring_setup: EPERM (blocked by seccomp or kernel.io_uring_disabled?)"
        ],
        "{stderr}"
    );
}

#[test]
fn the_host_check_says_which_driver_will_run_and_why() {
    let run = |launcher: bool| {
        let mut c = if launcher {
            let mut c = Command::new(binary("e2e-no-io-uring"));
            c.arg(binary("gateway-tune"));
            c
        } else {
            Command::new(binary("gateway-tune"))
        };
        let out = c
            .args(["check", "--json"])
            .output()
            .expect("run gateway-tune");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["key"] == "shard.driver")
            .cloned()
            .unwrap_or_else(|| panic!("no shard.driver in {text}"))
    };
    let blocked = run(true);
    assert_eq!(blocked["current"], "epoll (auto)", "{blocked}");
    assert!(
        blocked["why"]
            .as_str()
            .unwrap()
            .contains("io_uring_setup: EPERM"),
        "{blocked}"
    );
    let free = run(false);
    assert_eq!(free["current"], "io_uring (auto)", "{free}");
}

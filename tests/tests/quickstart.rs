//! The README's quickstart, as it is written there, against a real
//! gateway: `gateway token --user alice`, `gateway sub --user alice` in the
//! background, `gateway push --user alice hello`; the sub prints the push.
//! Plus `gateway stats`, a durable push that `gateway sub` acks, and a
//! gateway started on what `gateway config` prints.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use e2e_tests::{Gateway, SECRET, binary, http};
use serde_json::Value;

/// `gateway ARGS...` with the test secret, to completion.
fn gateway(args: &[&str]) -> Output {
    Command::new(binary("gateway"))
        .args(args)
        .env("GATEWAY_JWT_SECRET", SECRET)
        .env_remove("GATEWAY_CONTROL_TOKEN")
        .output()
        .expect("run gateway")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `gateway sub ...` in the background, its stderr lines on a channel.
struct Sub {
    child: Child,
    stderr: Receiver<String>,
}

impl Sub {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(binary("gateway"))
            .arg("sub")
            .args(args)
            .env("GATEWAY_JWT_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway sub");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stderr: rx }
    }

    /// Waits for the `ready` line (Welcome in, subscription answered).
    fn wait_ready(&self) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with("ready") => return seen,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("gateway sub never got ready; stderr: {seen:?}");
    }

    /// Waits (bounded: the sub has --timeout-secs) for it to exit.
    fn finish(self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut child = self.child;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = child.wait_with_output().expect("sub output");
        out.stderr
            .extend(self.stderr.try_iter().flat_map(|l| (l + "\n").into_bytes()));
        out
    }
}

/// Waits until the gateway's directory lists a session of `user`.
fn wait_online(gw: &Gateway, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (_, body) = http(gw.control, "GET", &format!("/v1/users/{user}"), "").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if v["sessions"].as_array().is_some_and(|s| !s.is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{user} never showed up online");
}

/// The one JSON line a sub printed.
fn only_push(out: &Output) -> Value {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {text}\nstderr: {}", stderr(out));
    serde_json::from_str(lines[0]).expect("a JSON line")
}

#[test]
fn the_readme_quickstart_works() {
    let gw = Gateway::start(2, "");
    let (client, control) = (gw.client.to_string(), gw.control.to_string());

    // ./target/release/gateway token --user alice
    let t = gateway(&["token", "--user", "alice"]);
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let check = gateway(&["token", "--check", &token]);
    assert!(check.status.success(), "{}", stderr(&check));
    let claims: Value = serde_json::from_str(stdout(&check).trim()).unwrap();
    assert_eq!(claims["sub"], "alice");

    // gateway sub --user alice (bounded here), in the background.
    let sub = Sub::spawn(&[
        "--user",
        "alice",
        "--addr",
        &client,
        "--count",
        "1",
        "--timeout-secs",
        "10",
    ]);
    let before = sub.wait_ready();
    assert!(before.iter().any(|l| l.contains("as alice")), "{before:?}");
    wait_online(&gw, "alice");

    // gateway push --user alice hello
    let p = gateway(&["push", "--user", "alice", "--control", &control, "hello"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let answer: Value = serde_json::from_str(stdout(&p).trim()).unwrap();
    assert!(answer["id"].as_u64().is_some(), "{answer}");

    let out = sub.finish();
    assert!(out.status.success(), "sub failed: {}", stderr(&out));
    let push = only_push(&out);
    assert_eq!(push["payload"], "hello");
    assert_eq!(push["encoding"], "utf-8");
    assert_eq!(push["id"], answer["id"]);
    assert_eq!(push["ack"], false);

    // gateway stats (counters are published every 250 ms)
    gw.wait_total_until("deliveries", Duration::from_secs(5), |v| v >= 1);
    let s = gateway(&["stats", "--control", &control]);
    assert!(s.status.success(), "{}", stderr(&s));
    let stats: Value = serde_json::from_str(&stdout(&s)).unwrap();
    assert!(
        stats["totals"]["deliveries"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn sub_takes_a_minted_token_follows_a_topic_and_acks_durable_pushes() {
    let gw = Gateway::start(2, "");
    let (client, control) = (gw.client.to_string(), gw.control.to_string());
    let t = gateway(&["token", "--user", "bob", "--apps", "chat", "--ttl", "5m"]);
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t).trim().to_string();
    let sub = Sub::spawn(&[
        "--token",
        &token,
        "--app",
        "chat",
        "--topic",
        "news",
        "--addr",
        &client,
        "--count",
        "1",
        "--timeout-secs",
        "10",
    ]);
    sub.wait_ready();
    assert_eq!(gw.wait_total("subscriptions", 1), 1);
    std::thread::sleep(Duration::from_millis(100));
    let p = gateway(&[
        "push",
        "--topic",
        "news",
        "--app",
        "chat",
        "--ack",
        "--control",
        &control,
        "extra",
    ]);
    assert!(p.status.success(), "{}", stderr(&p));
    let out = sub.finish();
    assert!(out.status.success(), "sub failed: {}", stderr(&out));
    let push = only_push(&out);
    assert_eq!(
        (&push["topic"], &push["app"], &push["ack"]),
        (&"news".into(), &"chat".into(), &true.into())
    );
    assert_eq!(gw.wait_total("acks", 1), 1, "the sub acks the durable push");
}

#[test]
fn failures_exit_non_zero_with_a_reason() {
    let gw = Gateway::start(1, "");
    let control = gw.control.to_string();
    // A bad push: the control API's 400 comes back as a failure.
    let p = gateway(&["push", "--user", "", "--control", &control, "x"]);
    assert!(!p.status.success());
    assert!(stderr(&p).contains("HTTP 400"), "{}", stderr(&p));
    // A token signed with another secret does not check out.
    let other = "another-secret-another-secret-another";
    let t = Command::new(binary("gateway"))
        .args(["token", "--user", "eve", "--secret", other])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", stderr(&t));
    let check = gateway(&["token", "--check", stdout(&t).trim()]);
    assert!(!check.status.success());
    assert!(stderr(&check).contains("signature"), "{}", stderr(&check));
    // A sub nobody pushes to: bounded by its timeout, and says so.
    let sub = Sub::spawn(&[
        "--user",
        "idle",
        "--addr",
        &gw.client.to_string(),
        "--count",
        "1",
        "--timeout-secs",
        "1",
    ]);
    let out = sub.finish();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn a_gateway_runs_on_the_config_gateway_config_prints() {
    let c = gateway(&["config"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let text = stdout(&c);
    assert!(text.contains("[listen]") && text.contains("# "), "{text}");
    // The harness overrides the addresses; everything else is the starter.
    let gw = Gateway::start(1, &text);
    assert_eq!(gw.total("connections"), 0);
}

#[test]
fn version_names_the_crate_version_and_commit() {
    let v = gateway(&["--version"]);
    assert!(v.status.success());
    let text = stdout(&v);
    assert!(
        text.starts_with(&format!("gateway {} (git ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

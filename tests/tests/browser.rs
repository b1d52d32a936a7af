//! clients/js in a real browser: headless Chromium (Debian's `chromium`,
//! installed by `make deps`) loads tests/browser/gateway-e2e.html, which
//! imports clients/js/gateway.js, connects to the gateway's WebSocket
//! listener, receives a durable push sent through the control API, acks
//! it, sends an uplink that the gateway forwards to a backend (Python's
//! http.server), and reports the outcome to the page's server, which this
//! test reads.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use e2e_tests::{Gateway, TempDir, http, token};
use serde_json::{Value, json};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("chromium is not installed: `make deps` installs Debian's chromium package");
}

/// A child process killed on drop, with its stdout lines.
struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The next line starting with `prefix` within `within`, without it.
    fn line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(_) => panic!("no `{prefix}` line within {within:?}"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chromium_runs_clients_js_against_the_gateway_push_ack_and_uplink() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = Proc::spawn(
        Command::new("python3")
            .arg(root.join("tests/py/browser_backend.py"))
            .arg(root.join("clients/js"))
            .arg(root.join("tests/browser")),
    );
    let port: u16 = web.line("port ", Duration::from_secs(10)).parse().unwrap();
    let gw = Gateway::start(
        2,
        &format!(
            "[listen]\nwebsocket = \"127.0.0.1:0\"\n[uplink]\ndefault_url = \"http://127.0.0.1:{port}/echo\"\n"
        ),
    );
    let ws = gw.websocket.unwrap();
    let page = format!(
        "http://127.0.0.1:{port}/gateway-e2e.html?ws=ws://{ws}/&token={}",
        token("browser-user")
    );
    let profile = TempDir::new("chromium");
    let _browser = Proc::spawn(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ])
            .args(["--no-first-run", "--disable-extensions"])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(&page),
    );
    let welcomed: Value =
        serde_json::from_str(&web.line("report ", Duration::from_secs(60))).unwrap();
    assert_eq!(welcomed["welcomed"], "browser-user", "{welcomed}");

    let (status, text) = http(
        gw.control,
        "POST",
        "/v1/push",
        &json!({"to": {"user": "browser-user"}, "app": "chat", "payload": "to the browser", "ack": true})
            .to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let verdict: Value =
        serde_json::from_str(&web.line("report ", Duration::from_secs(30))).unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}; gateway log:\n{}", gw.log());
    assert_eq!(verdict["push"], "to the browser");
    assert_eq!(verdict["durable"], true);
    assert_eq!(verdict["status"], 200, "{verdict}");
    assert_eq!(verdict["reply"], "from the browser", "the backend's echo");
    assert_eq!(
        gw.wait_total("acks", 1),
        1,
        "the page's automatic ack reached the gateway"
    );
    assert!(gw.wait_total_until("uplink_replies", Duration::from_secs(5), |v| v >= 1) >= 1);
}

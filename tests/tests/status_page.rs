//! The status page (`GET /` on the control listener): served under the
//! control API's bearer-token rule, and rendered by a real headless
//! Chromium against a live gateway with two clients: the connection count
//! the page shows is the gateway's, and a screenshot comes out.
//!
//! Needs Debian's `chromium` (`make deps` installs it); without it the
//! rendering test fails and says so rather than passing silently.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, TempDir, http};

/// The Chromium binary: `$CHROMIUM` or the first of Debian's names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("chromium is not installed: `make deps` installs Debian's chromium package");
}

/// Runs headless Chromium with `args` on `url`, killed after 60 s.
fn run_chromium(profile: &TempDir, args: &[&str], url: &str) -> Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            // Root (as in CI containers) cannot use Chromium's sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The text of the element with `id` in a dumped DOM (elements the page
/// fills hold plain text).
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim())
}

#[test]
fn the_page_is_self_contained_html() {
    let gw = Gateway::start(1, "");
    let mut s = TcpStream::connect(gw.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    let (_, body) = http(gw.control, "GET", "/", "").unwrap();
    assert!(body.contains("/v1/stats"));
    for external in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!body.contains(external), "external resource: {external}");
    }
    assert_eq!(http(gw.control, "POST", "/", "").unwrap().0, 405);
}

#[test]
fn the_page_off_loopback_wants_the_bearer_token() {
    let port = e2e_tests::free_port();
    let gw = Gateway::start_with_control(
        1,
        "[listen]\ncontrol_token = \"let-me-in\"\n",
        format!("0.0.0.0:{port}").parse().unwrap(),
    );
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let get = |auth: &str| {
        let mut s = TcpStream::connect(local).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET / HTTP/1.1\r\n{auth}connection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        e2e_tests::parse_response(&out).map(|(st, _)| st)
    };
    assert_eq!(get(""), Some(401));
    assert_eq!(get("authorization: Bearer let-me-in\r\n"), Some(200));
    drop(gw);
}

#[test]
fn chromium_renders_the_live_figures_and_a_screenshot() {
    let gw = Gateway::start(2, "");
    let _a = Client::established(gw.client, "page-a");
    let _b = Client::established(gw.client, "page-b");
    assert_eq!(gw.wait_total("connections", 2), 2);
    let url = format!("http://{}/", gw.control);

    let profile = TempDir::new("chromium");
    let out = run_chromium(&profile, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("gateway status"),
        "chromium failed ({}): {}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(element_text(&dom, "connections"), Some("2"), "{dom}");
    let per_shard: u64 = (0..2)
        .map(|i| {
            element_text(&dom, &format!("shard-{i}-connections"))
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no row for shard {i}: {dom}"))
        })
        .sum();
    assert_eq!(per_shard, 2, "shard rows add up to the total");
    assert_eq!(
        element_text(&dom, "health-slow_consumer_disconnects"),
        Some("0")
    );
    assert!(element_text(&dom, "accepts-rate").is_some_and(|t| t.parse::<f64>().is_ok()));
    assert!(dom.contains("<polyline"), "charts drawn");
    let status = element_text(&dom, "status").unwrap_or("");
    assert!(
        status.starts_with("updated"),
        "the page's status line: {status}"
    );

    let png = profile.0.join("status.png");
    let shot = format!("--screenshot={}", png.display());
    let out = run_chromium(&profile, &[&shot, "--window-size=1200,800"], &url);
    let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 10_000,
        "screenshot {} is {len} bytes; chromium: {}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read(&png).unwrap();
    assert!(head.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
}

//! `/metrics` read by a Prometheus text parser nobody here wrote
//! (`prometheus_client.parser` from PyPI, installed by `make deps` into
//! target/pyenv): every family has HELP and TYPE, the order is the same
//! across scrapes, and `gateway_build_info` names version and commit.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e_tests::{Client, Gateway, http, test_python};
use serde_json::Value;

/// What the parser makes of `text`: one entry per family.
fn parse(text: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
out = []
for f in text_string_to_metric_families(text):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = Command::new(test_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_parse_with_help_type_stable_order_and_build_info() {
    let gw = Gateway::start(2, "");
    let mut c = Client::established(gw.client, "metrics-user");
    assert!(c.ping_pong());
    let (status, _) = http(
        gw.control,
        "POST",
        "/v1/push",
        r#"{"to": {"user": "metrics-user"}, "payload": "m"}"#,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(c.next_push(Duration::from_secs(2)).is_some());
    gw.wait_total("deliveries", 1);
    let scrape = || {
        let (status, text) = http(gw.control, "GET", "/metrics", "").unwrap();
        assert_eq!(status, 200);
        text
    };
    let first = scrape();
    let families = parse(&first);
    assert!(families.len() > 40, "{first}");
    for f in &families {
        let name = f["name"].as_str().unwrap();
        assert!(
            !f["help"].as_str().unwrap_or("").is_empty(),
            "{name} has no HELP"
        );
        assert_ne!(f["type"], "unknown", "{name} has no TYPE");
        assert!(
            first.contains(&format!("# TYPE {name}")),
            "{name}: no TYPE line"
        );
    }
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    };
    assert_eq!(family("gateway_connections")["type"], "gauge");
    assert_eq!(family("gateway_accepts")["type"], "counter");
    assert_eq!(family("gateway_push_fanout_seconds")["type"], "histogram");
    let info = &family("gateway_build_info")["samples"][0];
    assert_eq!(info[1]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!info[1]["git"].as_str().unwrap().is_empty());
    assert_eq!(info[2], 1.0);
    // Same families and series, in the same order, scrape after scrape.
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect()
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(lines(&scrape()), lines(&first));
    }
}

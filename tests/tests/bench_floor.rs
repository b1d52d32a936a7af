//! `gateway-bench floor`: plain blocking loopback sends and reads, and the
//! HTML report it writes.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::time::Duration;

use bench_common::bench;
use e2e_tests::TempDir;

#[test]
fn floor_measures_sends_and_writes_html() {
    let dir = TempDir::new("floor");
    let html = dir.0.join("floor.html");
    let html_s = html.to_string_lossy().into_owned();
    let r = bench(
        &[
            "floor",
            "-n",
            "300",
            "-m",
            "5",
            "--payload",
            "256",
            "--threads",
            "2",
            "--html",
            &html_s,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.metric("pairs"), 300.0);
    assert!(r.metric("frame_bytes") > 256.0);
    assert!(r.metric("send_us") > 0.0 && r.metric("read_us") > 0.0);
    assert!(r.metric("deliveries_per_s") > 1000.0);
    assert_eq!(r.count("completion"), 5);
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<svg") && !page.contains("<script"));
}

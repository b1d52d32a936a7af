//! Shared by the `bench_*` end-to-end tests: runs the real `gateway-bench`
//! binary with a JSON report and returns it parsed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{TempDir, binary};
use serde_json::Value;

/// Schedule-lag budget (µs) for the functional runs: the test machine is
/// shared by parallel tests on 2 cores, so the harness may be scheduled out
/// for tens of ms. These tests check what is measured, not how fast; the
/// INVALID test keeps the default budget.
pub const LAG: &str = "200000";

/// What a harness run left behind.
pub struct BenchRun {
    /// Exit code.
    pub code: i32,
    /// Standard output (the human summary).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The first run of the JSON document.
    pub run: Value,
    /// The whole document.
    pub doc: Value,
}

impl BenchRun {
    /// A metric of the run.
    pub fn metric(&self, name: &str) -> f64 {
        self.run["metrics"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("no metric {name} in {}", self.run["metrics"]))
    }

    /// A histogram's count.
    pub fn count(&self, hist: &str) -> u64 {
        self.run["histograms"][hist]["count"].as_u64().unwrap_or(0)
    }

    /// Whether the run is VALID.
    pub fn valid(&self) -> bool {
        self.run["valid"].as_bool().unwrap_or(false)
    }
}

/// Runs `gateway-bench <args> --json <tmp>` with a time limit.
pub fn bench(args: &[&str], limit: Duration) -> BenchRun {
    bench_under(None, &[], args, limit)
}

/// Like [`bench`], with gateway-bench run by `launcher` (`launcher
/// gateway-bench <args>`, e.g. the seccomp launcher `e2e-no-io-uring`)
/// when given, and `env` set.
pub fn bench_under(
    launcher: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
    limit: Duration,
) -> BenchRun {
    let dir = TempDir::new("bench");
    let json = dir.0.join("report.json");
    let mut command = match launcher {
        Some(l) => {
            let mut c = Command::new(l);
            c.arg(binary("gateway-bench"));
            c
        }
        None => Command::new(binary("gateway-bench")),
    };
    // GATEWAY_BENCH_DRIVER passes through: `GATEWAY_BENCH_DRIVER=epoll`
    // runs every bench_* test on the harness's epoll driver.
    command.envs(env.iter().copied());
    let mut child = command
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("GATEWAY_JWT_SECRET", e2e_tests::SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway-bench");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "gateway-bench {args:?} ran over {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!("no JSON report from {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    let doc: Value = serde_json::from_str(&text).expect("report JSON");
    assert_eq!(doc["schema"], "gateway-bench/report/v1");
    BenchRun {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        run: doc["runs"][0].clone(),
        doc,
    }
}

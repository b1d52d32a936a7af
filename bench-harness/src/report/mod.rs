//! What a run reports: the versioned JSON document, the human summary, the
//! HDR interval log, the HTML report, and the live progress line.

pub mod hdrlog;
pub mod html;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::histo::{Latency, Summary, Wire};

/// Schema id of the JSON report; bumped on incompatible changes.
pub const SCHEMA: &str = "gateway-bench/report/v1";

/// One point of the per-second timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TimelinePoint {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Connections established.
    pub established: u64,
    /// Handshakes completed so far.
    pub handshakes: u64,
    /// Failures so far.
    pub failures: u64,
    /// Deliveries so far.
    pub deliveries: u64,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Uplink replies so far.
    pub replies: u64,
}

/// A histogram in the report: percentiles plus the exact HDR data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistReport {
    /// Percentiles, µs.
    #[serde(flatten)]
    pub summary: Summary,
    /// Base64 V2 HDR histogram (µs).
    pub hdr: Wire,
}

impl HistReport {
    /// From a histogram.
    #[must_use]
    pub fn of(h: &Latency) -> Self {
        Self {
            summary: h.summary(),
            hdr: Wire::from_latency(h).unwrap_or_default(),
        }
    }
}

/// One scenario run against one system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// System measured ("gateway", "mqtt-qos0", "nats", "floor").
    pub system: String,
    /// Parameters as given.
    pub params: serde_json::Value,
    /// Whether the harness kept its schedule (figures are trustworthy).
    pub valid: bool,
    /// Why not, when not.
    pub invalid_reasons: Vec<String>,
    /// Scalar results by name (units in the name).
    pub metrics: BTreeMap<String, f64>,
    /// Latency histograms by name.
    pub histograms: BTreeMap<String, HistReport>,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Per-second timeline.
    pub timeline: Vec<TimelinePoint>,
    /// The driver the harness's shards ran on (`io_uring`, `epoll`); absent
    /// for runs without them (`floor`) and in reports from before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The scheduling policy of the harness's load threads (`normal`,
    /// `batch`: `--sched`); absent where there were none and in reports
    /// from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<String>,
    /// Remarks for the reader that do not change the verdict (how a
    /// delivery phase ended, a cross-check against the target's own
    /// counters that did not match).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl RunReport {
    /// An empty report for `scenario` on `system`.
    #[must_use]
    pub fn new(scenario: &str, system: &str, params: serde_json::Value) -> Self {
        Self {
            schema: SCHEMA.into(),
            scenario: scenario.into(),
            system: system.into(),
            params,
            valid: true,
            invalid_reasons: Vec::new(),
            metrics: BTreeMap::new(),
            histograms: BTreeMap::new(),
            failures: BTreeMap::new(),
            timeline: Vec::new(),
            driver: None,
            sched: None,
            notes: Vec::new(),
        }
    }

    /// Adds a note (printed with the summary).
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Adds a metric.
    pub fn metric(&mut self, name: &str, v: f64) {
        self.metrics.insert(name.into(), v);
    }

    /// Adds a histogram if it holds values.
    pub fn histogram(&mut self, name: &str, h: &Latency) {
        if h.count() > 0 {
            self.histograms.insert(name.into(), HistReport::of(h));
        }
    }

    /// Marks the run INVALID for these reasons (no-op when empty).
    pub fn invalidate(&mut self, reasons: Vec<String>) {
        if !reasons.is_empty() {
            self.valid = false;
            self.invalid_reasons.extend(reasons);
        }
    }

    /// The human summary.
    #[must_use]
    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== {} on {} — {}",
            self.scenario,
            self.system,
            if self.valid { "VALID" } else { "INVALID" }
        );
        for r in &self.invalid_reasons {
            let _ = writeln!(s, "   INVALID: {r}");
        }
        if let Some(d) = &self.driver {
            let _ = writeln!(s, "   {:<34} {d}", "harness driver");
        }
        if let Some(p) = &self.sched {
            let _ = writeln!(s, "   {:<34} {p}", "harness sched");
        }
        for (k, v) in &self.metrics {
            let _ = writeln!(s, "   {k:<34} {}", fmt_num(*v));
        }
        if !self.histograms.is_empty() {
            let _ = writeln!(
                s,
                "   {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency (µs)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (k, h) in &self.histograms {
                let m = &h.summary;
                let _ = writeln!(
                    s,
                    "   {k:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    m.count, m.p50_us, m.p90_us, m.p99_us, m.p999_us, m.max_us
                );
            }
        }
        for (k, v) in &self.failures {
            let _ = writeln!(s, "   failure: {k}: {v}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "   note: {n}");
        }
        s
    }
}

/// A number for humans: integers without decimals, others with two.
#[must_use]
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A document holding several runs (what `--json` writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// [`SCHEMA`].
    pub schema: String,
    /// Host facts.
    pub host: BTreeMap<String, String>,
    /// The command line.
    pub command: String,
    /// The runs.
    pub runs: Vec<RunReport>,
}

impl Document {
    /// A document for `runs`.
    #[must_use]
    pub fn new(runs: Vec<RunReport>) -> Self {
        let mut host = BTreeMap::new();
        host.insert(
            "cpus".into(),
            std::thread::available_parallelism()
                .map_or(0, usize::from)
                .to_string(),
        );
        if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            host.insert("kernel".into(), k.trim().into());
        }
        host.insert(
            "nofile".into(),
            crate::preflight::host_limits().nofile.to_string(),
        );
        Self {
            schema: SCHEMA.into(),
            host,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            runs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_summary() {
        let mut r = RunReport::new("connect", "gateway", serde_json::json!({"n": 5}));
        r.metric("connections_per_s", 1234.5);
        let mut h = Latency::new();
        h.record_n_us(100, 10);
        r.histogram("handshake", &h);
        r.histogram("empty", &Latency::new());
        r.invalidate(vec!["lag".into()]);
        let doc = Document::new(vec![r.clone()]);
        let text = serde_json::to_string(&doc).unwrap();
        let back: Document = serde_json::from_str(&text).unwrap();
        assert_eq!(back.runs[0], r);
        assert_eq!(back.schema, SCHEMA);
        assert!(text.contains("\"p99_us\":100"));
        assert!(!text.contains("\"driver\""), "no driver, no key");
        let s = r.summary_text();
        assert!(!s.contains("harness driver"));
        r.driver = Some("epoll".into());
        r.sched = Some("batch".into());
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"driver\":\"epoll\""), "{text}");
        assert_eq!(serde_json::from_str::<RunReport>(&text).unwrap(), r);
        let s = r.summary_text();
        assert!(
            s.contains("harness driver                     epoll"),
            "{s}"
        );
        assert!(
            s.contains("harness sched                      batch"),
            "{s}"
        );
        assert!(text.contains("\"sched\":\"batch\""), "{text}");
        assert!(s.contains("INVALID: lag"));
        assert!(s.contains("1234.50"));
        assert!(!s.contains("empty"));
    }
}

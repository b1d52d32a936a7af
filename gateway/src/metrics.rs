//! Prometheus metrics: the `metrics` facade with
//! `metrics-exporter-prometheus`'s recorder and renderer.
//!
//! Shards never touch the recorder on the hot path: they count into their
//! own [`ShardStats`] and, at each publish tick, copy the totals into
//! per-shard handles registered once (labelled `shard`), plus the fan-out
//! latency samples gathered since the last tick. A scrape only renders.
//!
//! Every family has a `# HELP` (the counter's doc comment) and a `# TYPE`,
//! families come out sorted by name and samples by shard, so two scrapes
//! list the same lines in the same order; `gateway_build_info` says which
//! version and commit is running.

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::stats::ShardStats;

/// Counters that are levels, not running totals (their docs say "a gauge").
pub const GAUGES: &[&str] = &[
    "connections",
    "sessions",
    "outbound_queued_bytes",
    "subscriptions",
    "mailbox_depth",
    "directory_sessions",
    "paced_deliveries",
    "control_connections",
    "app_names",
    "device_labels",
    "backend_in_flight",
    "store_commit_ms_max",
    "parked_sessions",
    "store_pushes",
    "store_disk_bytes",
    "store_ram_bytes",
];

/// Name of the build information gauge (always 1, labelled `version`, `git`).
pub const BUILD_INFO: &str = "gateway_build_info";

/// The Prometheus name of shard counter `name`.
pub fn metric_name(name: &str) -> String {
    if GAUGES.contains(&name) {
        format!("gateway_{name}")
    } else {
        format!("gateway_{name}_total")
    }
}

/// Name of the push fan-out latency histogram (seconds).
pub const FANOUT_HISTOGRAM: &str = "gateway_push_fanout_seconds";

/// The process's renderer (the recorder is global: one per process).
pub struct MetricsHub {
    handle: Option<PrometheusHandle>,
}

impl std::fmt::Debug for MetricsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHub")
            .field("installed", &self.handle.is_some())
            .finish()
    }
}

impl MetricsHub {
    /// Installs the Prometheus recorder as the process's global recorder.
    /// A second gateway in the same process renders nothing (the first
    /// one's recorder stays in place).
    pub fn install() -> Self {
        let buckets = [
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(FANOUT_HISTOGRAM.into()), &buckets);
        let handle = builder.ok().and_then(|b| {
            let recorder = b.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        });
        if handle.is_some() {
            describe();
        }
        Self { handle }
    }

    /// Prometheus text of everything recorded, in a stable order.
    pub fn render(&self) -> String {
        match &self.handle {
            Some(h) => stable_order(&h.render()),
            None => "# metrics recorder not installed in this process\n".into(),
        }
    }
}

/// Gives every metric its `# HELP` text and sets the build info gauge.
fn describe() {
    for (name, doc) in ShardStats::NAMES.iter().zip(ShardStats::DOCS) {
        let doc = doc.trim().to_string();
        if GAUGES.contains(name) {
            metrics::describe_gauge!(metric_name(name), doc);
        } else {
            metrics::describe_counter!(metric_name(name), doc);
        }
    }
    metrics::describe_histogram!(
        FANOUT_HISTOGRAM,
        "Time from a push's acceptance to its delivery to a shard's recipients, seconds."
    );
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1: the version and git commit of the running gateway."
    );
    metrics::gauge!(
        BUILD_INFO,
        "version" => crate::build_info::VERSION,
        "git" => crate::build_info::GIT_COMMIT
    )
    .set(1.0);
}

/// The family a line of the text format belongs to: the name after
/// `# HELP`/`# TYPE`, or a sample's name less a histogram suffix.
fn family_of(line: &str) -> &str {
    if let Some(rest) = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
    {
        return rest.split(' ').next().unwrap_or(rest);
    }
    let name = line.split(['{', ' ']).next().unwrap_or(line);
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base;
        }
    }
    name
}

/// The `shard` label of a sample line as a number (samples without one first).
fn shard_of(line: &str) -> i64 {
    line.split_once("shard=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Reorders the exporter's text (which follows hash-map order) into
/// families sorted by name, each with its `# HELP` and `# TYPE` first and
/// its samples sorted by shard; a histogram keeps its buckets in order
/// (the sort is stable).
pub fn stable_order(text: &str) -> String {
    let mut families: std::collections::BTreeMap<String, (Vec<&str>, Vec<&str>)> =
        std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry = families.entry(family_of(line).to_string()).or_default();
        if line.starts_with('#') {
            entry.0.push(line);
        } else {
            entry.1.push(line);
        }
    }
    let mut out = String::with_capacity(text.len());
    for (_, (mut meta, mut samples)) in families {
        // HELP before TYPE.
        meta.sort_by_key(|l| !l.starts_with("# HELP"));
        samples.sort_by_key(|l| shard_of(l));
        for line in meta.into_iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

/// One shard's registered metric handles.
pub struct ShardMetrics {
    handles: Vec<Handle>,
    fanout: Histogram,
}

impl std::fmt::Debug for ShardMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMetrics")
            .field("metrics", &self.handles.len())
            .finish()
    }
}

impl ShardMetrics {
    /// Registers shard `index`'s metrics.
    pub fn new(index: usize) -> Self {
        let shard = index.to_string();
        let handles = ShardStats::NAMES
            .iter()
            .map(|name| {
                if GAUGES.contains(name) {
                    Handle::Gauge(metrics::gauge!(metric_name(name), "shard" => shard.clone()))
                } else {
                    Handle::Counter(metrics::counter!(metric_name(name), "shard" => shard.clone()))
                }
            })
            .collect();
        Self {
            handles,
            fanout: metrics::histogram!(FANOUT_HISTOGRAM, "shard" => shard),
        }
    }

    /// Copies the shard's counters and fan-out samples (µs) to the recorder.
    pub fn publish(&self, stats: &ShardStats, fanout_us: &mut Vec<u64>) {
        for (h, v) in self.handles.iter().zip(stats.values()) {
            match h {
                Handle::Counter(c) => c.absolute(v),
                Handle::Gauge(g) => g.set(v as f64),
            }
        }
        for us in fanout_us.drain(..) {
            self.fanout.record(us as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_the_counters_documented_as_gauges() {
        for (name, doc) in ShardStats::NAMES.iter().zip(ShardStats::DOCS) {
            assert_eq!(
                GAUGES.contains(name),
                doc.contains("(a gauge)"),
                "{name}: {doc}"
            );
        }
        assert!(GAUGES.iter().all(|g| ShardStats::NAMES.contains(g)));
    }

    #[test]
    fn families_and_samples_come_out_sorted() {
        let text = "# TYPE b_total counter\nb_total{shard=\"1\"} 1\nb_total{shard=\"0\"} 0\n\n\
                    # HELP h h\n# TYPE h histogram\nh_bucket{shard=\"1\",le=\"1\"} 0\nh_bucket{shard=\"1\",le=\"+Inf\"} 0\n\
                    h_sum{shard=\"1\"} 0\nh_count{shard=\"1\"} 0\nh_bucket{shard=\"0\",le=\"1\"} 2\nh_bucket{shard=\"0\",le=\"+Inf\"} 2\n\
                    h_sum{shard=\"0\"} 1\nh_count{shard=\"0\"} 2\n\n# HELP b_total b\n\n# HELP a a\n# TYPE a gauge\na 1\n";
        let sorted = stable_order(text);
        let want = "# HELP a a\n# TYPE a gauge\na 1\n\n\
                    # HELP b_total b\n# TYPE b_total counter\nb_total{shard=\"0\"} 0\nb_total{shard=\"1\"} 1\n\n\
                    # HELP h h\n# TYPE h histogram\nh_bucket{shard=\"0\",le=\"1\"} 2\nh_bucket{shard=\"0\",le=\"+Inf\"} 2\n\
                    h_sum{shard=\"0\"} 1\nh_count{shard=\"0\"} 2\nh_bucket{shard=\"1\",le=\"1\"} 0\nh_bucket{shard=\"1\",le=\"+Inf\"} 0\n\
                    h_sum{shard=\"1\"} 0\nh_count{shard=\"1\"} 0\n\n";
        assert_eq!(sorted, want);
        assert_eq!(stable_order(&sorted), sorted);
    }
}

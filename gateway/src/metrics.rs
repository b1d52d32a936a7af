//! Prometheus metrics: the `metrics` facade with
//! `metrics-exporter-prometheus`'s recorder and renderer.
//!
//! Shards never touch the recorder on the hot path: they count into their
//! own [`ShardStats`] and, at each publish tick, copy the totals into
//! per-shard handles registered once (labelled `shard`), plus the fan-out
//! latency samples gathered since the last tick. A scrape only renders.

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::stats::ShardStats;

/// Counters that are levels, not running totals.
pub const GAUGES: &[&str] = &[
    "connections",
    "outbound_queued_bytes",
    "subscriptions",
    "mailbox_depth",
    "directory_sessions",
    "paced_deliveries",
    "control_connections",
];

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
        Self { handle }
    }

    /// Prometheus text of everything recorded.
    pub fn render(&self) -> String {
        match &self.handle {
            Some(h) => h.render(),
            None => "# metrics recorder not installed in this process\n".into(),
        }
    }
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
                    Handle::Gauge(metrics::gauge!(format!("gateway_{name}"), "shard" => shard.clone()))
                } else {
                    Handle::Counter(metrics::counter!(format!("gateway_{name}_total"), "shard" => shard.clone()))
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

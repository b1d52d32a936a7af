//! Latency histograms: HDR histograms in microseconds, serialized for the
//! trip from a worker process to the coordinator and merged exactly
//! (bucket counts are added; percentiles are never averaged).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Largest value tracked: one hour in microseconds.
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// Significant decimal digits kept.
pub const SIGFIG: u8 = 3;

/// Errors moving histograms between processes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoError {
    /// The base64 text is invalid.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a V2 histogram.
    #[error("histogram does not deserialize: {0}")]
    Decode(String),
    /// Serialization failed.
    #[error("histogram does not serialize: {0}")]
    Encode(String),
    /// Two histograms cannot be added.
    #[error("histograms cannot be merged: {0}")]
    Merge(String),
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram tracking 1 µs ..= [`MAX_TRACKABLE_US`].
    #[must_use]
    pub fn new() -> Self {
        // The bounds are constants known to be valid; fall back to an
        // auto-resizing histogram should the crate ever disagree.
        let h = Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGFIG)
            .unwrap_or_else(|_| Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable_hist()));
        Self(h)
    }

    /// Records one value (clamped into the trackable range).
    pub fn record_us(&mut self, us: u64) {
        let v = us.clamp(1, MAX_TRACKABLE_US);
        // Cannot fail after the clamp.
        let _ = self.0.record(v);
    }

    /// Records `count` copies of a value.
    pub fn record_n_us(&mut self, us: u64, count: u64) {
        let v = us.clamp(1, MAX_TRACKABLE_US);
        let _ = self.0.record_n(v, count);
    }

    /// Adds every count of `other` (exact merge).
    pub fn merge(&mut self, other: &Latency) -> Result<(), HistoError> {
        self.0
            .add(&other.0)
            .map_err(|e| HistoError::Merge(format!("{e:?}")))
    }

    /// The value at quantile `q` in 0..=1, µs (0 when empty).
    #[must_use]
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// Number of values recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Largest value recorded, µs.
    #[must_use]
    pub fn max_us(&self) -> u64 {
        self.0.max()
    }

    /// Mean, µs.
    #[must_use]
    pub fn mean_us(&self) -> f64 {
        self.0.mean()
    }

    /// The underlying HDR histogram.
    #[must_use]
    pub fn inner(&self) -> &Histogram<u64> {
        &self.0
    }

    /// Clears all counts.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// V2-serialized, base64 text.
    pub fn to_base64(&self) -> Result<String, HistoError> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| HistoError::Encode(format!("{e:?}")))?;
        Ok(STANDARD.encode(buf))
    }

    /// Parses what [`Latency::to_base64`] wrote.
    pub fn from_base64(text: &str) -> Result<Self, HistoError> {
        let bytes = STANDARD.decode(text)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| HistoError::Decode(format!("{e:?}")))?;
        let mut out = Self::new();
        out.0
            .add(&h)
            .map_err(|e| HistoError::Merge(format!("{e:?}")))?;
        Ok(out)
    }

    /// The usual percentiles as a summary.
    #[must_use]
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            p50_us: self.quantile_us(0.5),
            p90_us: self.quantile_us(0.9),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: self.max_us(),
            mean_us: self.mean_us(),
        }
    }
}

fn unreachable_hist() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for sigfig > 5; this path is never taken.
    Histogram::new_with_max(MAX_TRACKABLE_US, 2).unwrap_or_else(|_| std::process::abort())
}

/// Percentiles of one histogram, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Maximum, µs.
    pub max_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
}

/// A histogram as it travels in JSON: base64 V2 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Wire(pub String);

impl Wire {
    /// Serializes `h`.
    pub fn from_latency(h: &Latency) -> Result<Self, HistoError> {
        h.to_base64().map(Wire)
    }

    /// Deserializes.
    pub fn to_latency(&self) -> Result<Latency, HistoError> {
        if self.0.is_empty() {
            return Ok(Latency::new());
        }
        Latency::from_base64(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        *seed >> 33
    }

    #[test]
    fn merge_of_serialized_parts_equals_the_whole() {
        // Three "workers" record disjoint shares of one value stream; the
        // coordinator's merge of their serialized histograms must equal the
        // histogram of the whole stream, count for count.
        let mut whole = Latency::new();
        let mut parts = [Latency::new(), Latency::new(), Latency::new()];
        let mut seed = 42;
        for i in 0..100_000u64 {
            // Heavy-tailed: mostly small, some large values.
            let v = if i % 97 == 0 {
                lcg(&mut seed) % 5_000_000
            } else {
                lcg(&mut seed) % 2_000
            };
            whole.record_us(v);
            parts[(i % 3) as usize].record_us(v);
        }
        let mut merged = Latency::new();
        for p in &parts {
            let wire = Wire::from_latency(p).unwrap();
            merged.merge(&wire.to_latency().unwrap()).unwrap();
        }
        assert_eq!(merged.count(), whole.count());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(merged.quantile_us(q), whole.quantile_us(q), "q={q}");
        }
        let a: Vec<_> = whole
            .inner()
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let b: Vec<_> = merged
            .inner()
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn averaging_percentiles_would_be_wrong() {
        // One worker fast, one slow: the merged p99 is the slow one's, while
        // the mean of the two p99s would be half of it.
        let mut fast = Latency::new();
        let mut slow = Latency::new();
        fast.record_n_us(100, 1000);
        slow.record_n_us(10_000, 1000);
        let mut m = fast.clone();
        m.merge(&slow).unwrap();
        assert!(m.quantile_us(0.99) >= 9_990);
        assert_eq!(m.count(), 2000);
    }

    #[test]
    fn empty_and_bad_input() {
        assert_eq!(Wire::default().to_latency().unwrap().count(), 0);
        assert!(Latency::from_base64("!!!").is_err());
        assert!(Latency::from_base64("AAAA").is_err());
        let mut h = Latency::new();
        h.record_us(0);
        h.record_us(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.summary().count, 2);
    }
}

//! HDR interval logs (the HdrHistogram log format, readable by
//! HistogramLogAnalyzer and `hdrhistogram`'s reader).

use std::io::Write;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::histo::Latency;

/// Writes `intervals` (end time in seconds since `start`, histogram) as an
/// interval log tagged `tag`.
pub fn write_log(
    out: &mut impl Write,
    start: SystemTime,
    tag: &str,
    intervals: &[(f64, Latency)],
) -> std::io::Result<()> {
    let mut ser = V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .with_base_time(start)
        .with_start_time(start)
        .with_max_value_divisor(1.0)
        .add_comment("gateway-bench delivery latency, microseconds")
        .begin_log_with(out, &mut ser)?;
    let mut prev: f64 = 0.0;
    for (end, h) in intervals {
        let tag = Tag::new(tag);
        w.write_histogram(
            h.inner(),
            Duration::from_secs_f64(prev.max(0.0)),
            Duration::from_secs_f64((end - prev).max(0.0)),
            tag,
        )
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        prev = *end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn log_reads_back() {
        let mut a = Latency::new();
        a.record_n_us(100, 5);
        let mut b = Latency::new();
        b.record_n_us(2000, 3);
        let mut out = Vec::new();
        write_log(
            &mut out,
            SystemTime::now(),
            "delivery",
            &[(1.0, a), (2.0, b)],
        )
        .unwrap();
        let n = IntervalLogIterator::new(&out)
            .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
            .count();
        assert_eq!(n, 2);
    }
}

//! The gateway's own count of what it delivered (`GET /v1/stats`), read
//! before and after a delivery phase and set beside what the harness
//! received, so that a disagreement is printed rather than hidden.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::report::RunReport;

/// The gateway counters the cross-check reads (totals over shards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounts {
    /// Frames handed to sessions' outbound queues (`deliveries`).
    pub deliveries: u64,
    /// Queued frames dropped by the drop-oldest policy (`slow_consumer_drops`).
    pub dropped: u64,
    /// Sessions closed as slow consumers (`slow_consumer_disconnects`).
    pub disconnects: u64,
}

/// Why the gateway's counters could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// The request failed.
    #[error("GET /v1/stats from {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The answer was not the JSON expected.
    #[error("GET /v1/stats from {0}: {1}")]
    Answer(SocketAddr, String),
}

/// Reads the gateway's totals from its control listener at `addr`.
///
/// # Errors
/// When the request fails or the answer is not `/v1/stats` JSON.
pub fn read(addr: SocketAddr) -> Result<GatewayCounts, StatsError> {
    let io = |e| StatsError::Io(addr, e);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| StatsError::Answer(addr, "no HTTP body".into()))?;
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| StatsError::Answer(addr, e.to_string()))?;
    let totals: BTreeMap<String, u64> = v["totals"]
        .as_object()
        .ok_or_else(|| StatsError::Answer(addr, "no totals".into()))?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .collect();
    let get = |k: &str| totals.get(k).copied().unwrap_or(0);
    Ok(GatewayCounts {
        deliveries: get("deliveries"),
        dropped: get("slow_consumer_drops"),
        disconnects: get("slow_consumer_disconnects"),
    })
}

/// Reads the totals once they have settled: shards publish their counters
/// every 250 ms, so the figures are read until two reads 300 ms apart
/// agree (at most 3 s).
///
/// # Errors
/// As [`read`].
pub fn read_settled(addr: SocketAddr) -> Result<GatewayCounts, StatsError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = read(addr)?;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = read(addr)?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Sets the gateway's counts of this phase beside the harness's: `want`
/// deliveries expected, `received` arrived (unique). Records the
/// gateway's figures as metrics and a note (also on stderr) for each
/// disagreement.
pub fn compare(
    rep: &mut RunReport,
    before: &GatewayCounts,
    after: &GatewayCounts,
    want: u64,
    received: u64,
) {
    let delivered = after.deliveries.saturating_sub(before.deliveries);
    let dropped = after.dropped.saturating_sub(before.dropped);
    let disconnects = after.disconnects.saturating_sub(before.disconnects);
    rep.metric("gateway_deliveries", delivered as f64);
    rep.metric("gateway_dropped", dropped as f64);
    rep.metric("gateway_slow_consumer_disconnects", disconnects as f64);
    let mut say = |text: String| {
        eprintln!("cross-check: {text}");
        rep.note(format!("cross-check: {text}"));
    };
    if delivered != want {
        say(format!(
            "the gateway counted {delivered} deliveries, the harness expected {want}"
        ));
    }
    if delivered.saturating_sub(dropped) != received {
        say(format!(
            "the gateway counted {delivered} deliveries and {dropped} dropped, \
             the harness received {received}"
        ));
    }
    if disconnects > 0 {
        say(format!(
            "the gateway closed {disconnects} sessions as slow consumers"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_silent_and_disagreement_is_noted() {
        let before = GatewayCounts {
            deliveries: 10,
            ..GatewayCounts::default()
        };
        let after = GatewayCounts {
            deliveries: 110,
            ..GatewayCounts::default()
        };
        let mut rep = RunReport::new("fanout", "gateway", serde_json::json!({}));
        compare(&mut rep, &before, &after, 100, 100);
        assert!(rep.notes.is_empty(), "{:?}", rep.notes);
        assert_eq!(rep.metrics["gateway_deliveries"], 100.0);
        let mut rep = RunReport::new("fanout", "gateway", serde_json::json!({}));
        compare(&mut rep, &before, &after, 100, 97);
        assert_eq!(rep.notes.len(), 1);
        assert!(rep.notes[0].contains("received 97"), "{:?}", rep.notes);
        assert!(rep.summary_text().contains("note: cross-check"));
    }
}

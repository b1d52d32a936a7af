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
    /// The durable store's counters and gauges.
    pub store: StoreCounts,
}

/// The durable store's figures in `/v1/stats` (docs/PUSH.md, "Durable
/// pushes"): counters and gauges summed over shards, except
/// `commit_ms_max`, the largest shard's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Durable pushes stored (`store_stored`).
    pub stored: u64,
    /// Deliveries of stored pushes (`store_delivered`).
    pub delivered: u64,
    /// Redeliveries (`store_redelivered`).
    pub redelivered: u64,
    /// Pushes removed by an Ack (`store_acked`).
    pub acked: u64,
    /// Pushes refused, inbox or store full (`store_rejected`).
    pub rejected: u64,
    /// Group commits (`store_commits`).
    pub commits: u64,
    /// The longest group commit, ms, over shards (`store_commit_ms_max`).
    pub commit_ms_max: u64,
    /// Pushes in the store now (`store_pushes`, a gauge).
    pub pushes: u64,
    /// Bytes of the store's files (`store_disk_bytes`, a gauge).
    pub disk_bytes: u64,
    /// Bytes of the store's RAM index (`store_ram_bytes`, a gauge).
    pub ram_bytes: u64,
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
    let commit_ms_max = v["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["store_commit_ms_max"].as_u64())
        .max()
        .unwrap_or(0);
    Ok(GatewayCounts {
        deliveries: get("deliveries"),
        dropped: get("slow_consumer_drops"),
        disconnects: get("slow_consumer_disconnects"),
        store: StoreCounts {
            stored: get("store_stored"),
            delivered: get("store_delivered"),
            redelivered: get("store_redelivered"),
            acked: get("store_acked"),
            rejected: get("store_rejected"),
            commits: get("store_commits"),
            commit_ms_max,
            pushes: get("store_pushes"),
            disk_bytes: get("store_disk_bytes"),
            ram_bytes: get("store_ram_bytes"),
        },
    })
}

/// Reads the totals until every durable push of the phase is acked
/// (`store_acked` grew by `want` and the store holds no more than before
/// it: the Acks are on their way while the last deliveries arrive), or
/// `limit` has passed; then as [`read_settled`].
///
/// # Errors
/// As [`read`].
pub fn read_acked(
    addr: SocketAddr,
    before: &GatewayCounts,
    want: u64,
    limit: Duration,
) -> Result<GatewayCounts, StatsError> {
    let deadline = Instant::now() + limit;
    loop {
        let now = read(addr)?;
        let acked = now.store.acked.saturating_sub(before.store.acked);
        if (acked >= want && now.store.pushes <= before.store.pushes) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    read_settled(addr)
}

/// Sets the store's counts of a durable phase beside the harness's: every
/// one of `sent` pushes (answered `"stored": true`) must have been
/// stored and acked once, and the store must be as empty at the end as at
/// the start (0 on a fresh gateway). Records the store's figures as
/// metrics; returns the INVALID reasons, each also a note and a line on
/// stderr.
pub fn compare_store(
    rep: &mut RunReport,
    before: &GatewayCounts,
    after: &GatewayCounts,
    sent: u64,
) -> Vec<String> {
    let (b, a) = (&before.store, &after.store);
    let stored = a.stored.saturating_sub(b.stored);
    let acked = a.acked.saturating_sub(b.acked);
    let figures = [
        ("gateway_store_stored", stored),
        ("gateway_store_acked", acked),
        (
            "gateway_store_delivered",
            a.delivered.saturating_sub(b.delivered),
        ),
        (
            "gateway_store_redelivered",
            a.redelivered.saturating_sub(b.redelivered),
        ),
        (
            "gateway_store_rejected",
            a.rejected.saturating_sub(b.rejected),
        ),
        ("gateway_store_commits", a.commits.saturating_sub(b.commits)),
        ("gateway_store_commit_ms_max", a.commit_ms_max),
        ("gateway_store_pushes_after", a.pushes),
        ("gateway_store_disk_bytes_after", a.disk_bytes),
        ("gateway_store_ram_bytes_after", a.ram_bytes),
    ];
    for (name, v) in figures {
        rep.metric(name, v as f64);
    }
    let mut reasons = Vec::new();
    if stored != sent {
        reasons.push(format!(
            "the gateway stored {stored} durable pushes, {sent} were answered stored"
        ));
    }
    if acked != sent {
        reasons.push(format!(
            "the gateway counted {acked} durable pushes acked of the {sent} sent"
        ));
    }
    if a.pushes > b.pushes {
        reasons.push(format!(
            "the gateway's store still holds {} durable pushes at the end ({} before the phase)",
            a.pushes, b.pushes
        ));
    }
    for r in &reasons {
        eprintln!("cross-check: {r}");
        rep.note(format!("cross-check: {r}"));
    }
    reasons
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

    fn store(stored: u64, acked: u64, pushes: u64) -> GatewayCounts {
        GatewayCounts {
            store: StoreCounts {
                stored,
                acked,
                pushes,
                commits: stored / 10,
                ..StoreCounts::default()
            },
            ..GatewayCounts::default()
        }
    }

    #[test]
    fn a_durable_phase_all_stored_and_acked_agrees() {
        let mut rep = RunReport::new("unicast", "gateway", serde_json::json!({}));
        let reasons = compare_store(&mut rep, &store(5, 5, 0), &store(105, 105, 0), 100);
        assert!(reasons.is_empty(), "{reasons:?}");
        assert!(rep.notes.is_empty(), "{:?}", rep.notes);
        assert_eq!(rep.metrics["gateway_store_stored"], 100.0);
        assert_eq!(rep.metrics["gateway_store_acked"], 100.0);
        assert_eq!(rep.metrics["gateway_store_commits"], 10.0);
        assert_eq!(rep.metrics["gateway_store_pushes_after"], 0.0);
    }

    #[test]
    fn unacked_or_unstored_pushes_are_each_a_reason() {
        let mut rep = RunReport::new("unicast", "gateway", serde_json::json!({}));
        let reasons = compare_store(&mut rep, &store(0, 0, 0), &store(99, 97, 2), 100);
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("stored 99"), "{reasons:?}");
        assert!(reasons[1].contains("97 durable pushes acked of the 100"));
        assert!(reasons[2].contains("still holds 2"));
        assert_eq!(rep.notes.len(), 3);
    }

    /// A `/v1/stats` answer from a one-shot server on a port the kernel
    /// picked.
    fn serve_once(body: &'static str) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        addr
    }

    #[test]
    fn store_figures_are_read_and_the_commit_max_is_the_largest_shard() {
        let addr = serve_once(
            r#"{"shards": [{"shard": 0, "store_commit_ms_max": 3}, {"shard": 1, "store_commit_ms_max": 7}],
               "totals": {"deliveries": 9, "store_stored": 4, "store_acked": 3, "store_pushes": 1,
                          "store_commits": 2, "store_commit_ms_max": 10, "store_ram_bytes": 32,
                          "store_disk_bytes": 300, "store_rejected": 1}}"#,
        );
        let c = read(addr).expect("read");
        assert_eq!(c.deliveries, 9);
        assert_eq!(
            c.store,
            StoreCounts {
                stored: 4,
                acked: 3,
                pushes: 1,
                commits: 2,
                commit_ms_max: 7,
                ram_bytes: 32,
                disk_bytes: 300,
                rejected: 1,
                ..StoreCounts::default()
            }
        );
    }
}

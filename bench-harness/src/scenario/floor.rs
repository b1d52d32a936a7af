//! `floor`: the physical floor of this box. The same frames a broadcast
//! sends, written with plain blocking `send` calls over loopback socket
//! pairs and read back, split over the same number of threads as the
//! target has shards. No gateway involved; every other figure is printed
//! as a ratio to this one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use protocol::codec;
use protocol::proto::{Push, frame::Kind};

use crate::histo::Latency;
use crate::preflight::{RESERVED_FDS, host_limits};
use crate::report::RunReport;
use crate::stamp::wall_us;

/// Options of `floor`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Socket pairs (capped by RLIMIT_NOFILE: two descriptors each).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: u32,
    /// Broadcast rounds.
    #[arg(long, short = 'm', default_value_t = 10)]
    pub messages: u32,
    /// Payload bytes (framed as the gateway frames a Push).
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Sender threads (match the target's shard count).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
}

/// What the floor measured.
#[derive(Debug, Clone, Default)]
pub struct FloorFigures {
    /// Pairs used.
    pub pairs: u32,
    /// Mean cost of one send, µs.
    pub send_us: f64,
    /// Mean cost of one read, µs.
    pub read_us: f64,
    /// Deliveries per second end to end.
    pub deliveries_per_s: f64,
    /// Per-round completion (first → last read), µs.
    pub completion: Latency,
    /// Loopback pairs set up per second (blocking connect + accept).
    pub connects_per_s: f64,
    /// Kernel Slab growth per pair while they were set up, bytes.
    pub slab_bytes_per_pair: f64,
}

/// The frame the gateway would send for a push of `payload` bytes.
#[must_use]
pub fn push_frame(payload: usize) -> Vec<u8> {
    let push = Push {
        id: 1,
        app: String::new(),
        topic: "bench".into(),
        payload: vec![b'.'; payload].into(),
        ack: false,
        ts_us: wall_us(),
        redelivery: false,
    };
    let mut out = Vec::new();
    codec::encode_frame(&codec::frame(Kind::Push(push)), &mut out);
    out
}

/// One sender/reader thread pair's figures: send µs, read µs, per round (first, last) arrival µs.
type ThreadFigures = (f64, f64, Vec<(u64, u64)>);

/// Runs the floor measurement.
pub fn measure(a: &FloorArgs) -> std::io::Result<FloorFigures> {
    let cap = host_limits().nofile.saturating_sub(RESERVED_FDS * 2) / 2;
    let pairs = a.connections.min(cap).max(1);
    let threads = a.threads.clamp(1, pairs);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let slab0 = crate::procfs::meminfo_kb("Slab");
    let setup = Instant::now();
    for _ in 0..pairs {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        senders.push(s);
        receivers.push(c);
    }
    drop(listener);
    let setup_s = setup.elapsed().as_secs_f64();
    let slab1 = crate::procfs::meminfo_kb("Slab");
    let frame = push_frame(a.payload);
    let rounds = a.messages.max(1);
    let per = pairs.div_ceil(threads) as usize;
    let t0 = Instant::now();
    // Each sender thread has a reader thread for the same sockets, so
    // every delivery is a separate send and a separate read.
    let results: Vec<ThreadFigures> = std::thread::scope(|sc| {
        let mut hs = Vec::new();
        for (tx, rx) in senders.chunks_mut(per).zip(receivers.chunks_mut(per)) {
            let frame = &frame;
            let hw = sc.spawn(move || -> std::io::Result<f64> {
                let start = Instant::now();
                for _ in 0..rounds {
                    for s in tx.iter_mut() {
                        s.write_all(frame)?;
                    }
                }
                Ok(start.elapsed().as_secs_f64() * 1e6)
            });
            let len = frame.len();
            let hr = sc.spawn(move || -> std::io::Result<(f64, Vec<(u64, u64)>)> {
                let mut buf = vec![0u8; len];
                let mut per_round = Vec::new();
                let mut busy = 0.0;
                for _ in 0..rounds {
                    let (mut first, mut last) = (0, 0);
                    for (i, r) in rx.iter_mut().enumerate() {
                        let t = Instant::now();
                        r.read_exact(&mut buf)?;
                        busy += t.elapsed().as_secs_f64();
                        let now = wall_us();
                        if i == 0 {
                            first = now;
                        }
                        last = now;
                    }
                    per_round.push((first, last));
                }
                Ok((busy * 1e6, per_round))
            });
            hs.push((hw, hr));
        }
        hs.into_iter()
            .filter_map(|(hw, hr)| {
                let w = hw.join().ok()?.ok()?;
                let (r, rounds) = hr.join().ok()?.ok()?;
                Some((w, r, rounds))
            })
            .collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let n = f64::from(pairs) * f64::from(rounds);
    let mut f = FloorFigures {
        pairs,
        ..FloorFigures::default()
    };
    f.connects_per_s = (f64::from(pairs) / setup_s.max(1e-6)).round();
    if let (Some(a), Some(b)) = (slab0, slab1) {
        f.slab_bytes_per_pair = (b.saturating_sub(a) * 1024) as f64 / f64::from(pairs);
    }
    // Per thread: its sends are sequential, so its wall time / its sends.
    let per_thread = n / results.len().max(1) as f64;
    f.send_us = results.iter().map(|r| r.0).sum::<f64>() / results.len().max(1) as f64 / per_thread;
    f.read_us = results.iter().map(|r| r.1).sum::<f64>() / n;
    f.deliveries_per_s = (n / elapsed).round();
    for round in 0..rounds as usize {
        let first = results
            .iter()
            .filter_map(|r| r.2.get(round))
            .map(|x| x.0)
            .min()
            .unwrap_or(0);
        let last = results
            .iter()
            .filter_map(|r| r.2.get(round))
            .map(|x| x.1)
            .max()
            .unwrap_or(0);
        f.completion.record_us(last.saturating_sub(first));
    }
    Ok(f)
}

/// Runs `floor` and reports.
pub fn run(a: &FloorArgs) -> std::io::Result<RunReport> {
    let f = measure(a)?;
    let mut rep = RunReport::new(
        "floor",
        "floor",
        serde_json::json!({"pairs": f.pairs, "requested": a.connections, "messages": a.messages,
            "payload": a.payload, "threads": a.threads}),
    );
    rep.metric("pairs", f64::from(f.pairs));
    rep.metric("frame_bytes", push_frame(a.payload).len() as f64);
    rep.metric("send_us", (f.send_us * 1000.0).round() / 1000.0);
    rep.metric("read_us", (f.read_us * 1000.0).round() / 1000.0);
    rep.metric("deliveries_per_s", f.deliveries_per_s);
    rep.metric("connections_per_s", f.connects_per_s);
    rep.metric("kernel_slab_bytes_per_pair", f.slab_bytes_per_pair.round());
    // One broadcast to N connections split over the threads, from the send cost.
    rep.metric(
        "broadcast_us_per_1k_conns",
        (f.send_us * 1000.0 / f64::from(a.threads.max(1)) * 100.0).round() / 100.0,
    );
    rep.metric("completion_p99_us", f.completion.quantile_us(0.99) as f64);
    rep.histogram("completion", &f.completion);
    if f.pairs < a.connections {
        rep.invalidate(Vec::new());
        rep.metric("pairs_capped_by_nofile", 1.0);
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_floor_measures_every_delivery() {
        let a = FloorArgs {
            connections: 20,
            messages: 5,
            payload: 64,
            threads: 2,
            json: None,
            html: None,
        };
        let f = measure(&a).unwrap();
        assert_eq!(f.pairs, 20);
        assert_eq!(f.completion.count(), 5);
        assert!(f.send_us > 0.0 && f.read_us > 0.0 && f.deliveries_per_s > 0.0);
        let frame = push_frame(256);
        assert!(frame.len() > 256 && frame.len() < 300);
    }
}

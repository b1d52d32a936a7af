//! Open-loop senders: publisher threads that send stamped messages at a
//! rate, each message carrying its intended send time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::histo::Latency;
use crate::publish::{Publisher, To};
use crate::schedule::Schedule;
use crate::stamp::{self, Stamp, wall_us};
use crate::wire::PeerKind;

/// What the senders did.
#[derive(Debug, Clone, Default)]
pub struct SendOutcome {
    /// Messages sent.
    pub sent: u64,
    /// Send errors by reason.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// How late each send started versus its schedule, µs.
    pub lag: Latency,
    /// Time the API took per call, µs.
    pub call: Latency,
    /// Wall-clock time of the first intended send, µs.
    pub first_intended_us: u64,
    /// Wall-clock time when the last send started, µs.
    pub last_sent_us: u64,
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct SendPlan {
    /// Protocol of the system under test.
    pub kind: PeerKind,
    /// Push API or broker address.
    pub addr: SocketAddr,
    /// Publisher connections (threads).
    pub threads: u32,
    /// Messages in total.
    pub total: u64,
    /// Messages per second (≤ 0: back to back).
    pub rate: f64,
    /// Payload bytes.
    pub payload: usize,
    /// Broadcast to every connection (the gateway's `{"all": true}`).
    pub broadcast_all: bool,
    /// Back to back only: messages sent per request (1 = one at a time).
    pub batch: u32,
}

/// Sends `plan.total` messages at `plan.rate`/s over `plan.threads`
/// publisher connections; message `i` goes to `to(i)` (`@user` for a
/// user, else a topic).
pub fn send_all(plan: &SendPlan, to: &(dyn Fn(u64) -> String + Sync)) -> SendOutcome {
    let SendPlan {
        kind,
        addr,
        threads,
        total,
        rate,
        payload,
        broadcast_all,
        batch,
    } = *plan;
    let batch = if rate > 0.0 { 1 } else { batch.max(1) as usize };
    let threads = threads.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let start_wall = wall_us() + 20_000;
    let results: Vec<SendOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut out = SendOutcome {
                        first_intended_us: start_wall,
                        ..SendOutcome::default()
                    };
                    let mut publisher = match Publisher::connect(kind, addr) {
                        Ok(p) => p,
                        Err(e) => {
                            out.errors
                                .insert(e.to_string(), total.div_ceil(u64::from(threads)));
                            return out;
                        }
                    };
                    let mut sched = Schedule::new(start, rate, total);
                    let mut pending: Vec<(String, String)> = Vec::with_capacity(batch);
                    while !sched.done() {
                        let now = Instant::now();
                        let Some((i, due)) = sched.pop_due(now) else {
                            if let Some(next) = sched.next_due() {
                                let wait = next.saturating_duration_since(now);
                                if wait > Duration::from_micros(200) {
                                    std::thread::sleep(wait - Duration::from_micros(100));
                                }
                            }
                            continue;
                        };
                        if i % u64::from(threads) != u64::from(t) {
                            continue;
                        }
                        // Back to back (no rate) has no schedule to be late on.
                        if rate > 0.0 {
                            out.lag.record_us(
                                u64::try_from(now.saturating_duration_since(due).as_micros())
                                    .unwrap_or(u64::MAX),
                            );
                        }
                        let intended_us = start_wall
                            + u64::try_from(due.saturating_duration_since(start).as_micros())
                                .unwrap_or(0);
                        let body = stamp::encode(
                            Stamp {
                                seq: i,
                                intended_us,
                            },
                            payload,
                        );
                        pending.push((to(i), body));
                        if pending.len() < batch && !sched.done() {
                            continue;
                        }
                        let items: Vec<(To<'_>, String)> = pending
                            .iter()
                            .map(|(dest, body)| {
                                let target = if broadcast_all {
                                    To::All
                                } else if let Some(user) = dest.strip_prefix('@') {
                                    To::User(user)
                                } else {
                                    To::Topic(dest)
                                };
                                (target, body.clone())
                            })
                            .collect();
                        let t0 = Instant::now();
                        out.last_sent_us = wall_us();
                        let result = if items.len() == 1 {
                            publisher.send(items[0].0, &items[0].1).map(|()| 1)
                        } else {
                            publisher.send_batch(&items)
                        };
                        match result {
                            Ok(n) => {
                                out.sent += n;
                                let refused = items.len() as u64 - n;
                                if refused > 0 {
                                    *out.errors.entry("refused in batch".into()).or_default() +=
                                        refused;
                                }
                            }
                            Err(e) => {
                                *out.errors.entry(e.to_string()).or_default() += items.len() as u64
                            }
                        }
                        pending.clear();
                        out.call
                            .record_us(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                    if let Err(e) = publisher.flush() {
                        *out.errors.entry(e.to_string()).or_default() += 1;
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut all = SendOutcome {
        first_intended_us: start_wall,
        ..SendOutcome::default()
    };
    for r in results {
        all.sent += r.sent;
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        let _ = all.lag.merge(&r.lag);
        let _ = all.call.merge(&r.call);
        all.last_sent_us = all.last_sent_us.max(r.last_sent_us);
    }
    all
}

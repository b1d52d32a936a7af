//! Open-loop senders: publisher threads that send stamped messages at a
//! rate, each message carrying its intended send time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::histo::Latency;
use crate::publish::pipelined::PipelinedPush;
use crate::publish::{PublishError, Publisher, To};
use crate::schedule::Schedule;
use crate::stamp::{self, Stamp, wall_us};
use crate::wire::tls::TlsClient;
use crate::wire::{PeerKind, Transport};

/// What the senders did.
#[derive(Debug, Clone, Default)]
pub struct SendOutcome {
    /// Messages sent.
    pub sent: u64,
    /// Send errors by reason.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Durable pushes answered `"stored": true` (`ack`).
    pub stored: u64,
    /// Pushes the push API refused, by HTTP status.
    pub refused: std::collections::BTreeMap<u16, u64>,
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
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Protocol of the system under test.
    pub kind: PeerKind,
    /// How a broker's publishers reach it (the subscribers' transport; the
    /// gateway's push API is plain HTTP whatever this says).
    pub transport: Transport,
    /// The TLS client of a broker's publishers over `tls` or `wss`.
    pub tls: Option<TlsClient>,
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
    /// Most messages per request (1 = one at a time). Back to back, every
    /// request is full; with a rate, a request carries the messages that
    /// fell due while the previous one was out, so batching adds no delay.
    pub batch: u32,
    /// Scheduling policy of the publisher threads (`--sched`).
    pub sched: crate::sched::Sched,
    /// Durable pushes (`"ack": true`, the gateway only): a push counts as
    /// sent once answered `"stored": true`.
    pub ack: bool,
}

/// Requests one push API connection may have unanswered.
const PUSH_WINDOW: usize = 256;

/// The same for durable pushes, whose answers wait for the group commit
/// (an fsync): at 50,000/s a 5 ms commit holds 250 answers back. The
/// gateway takes 1,024 pipelined requests of a connection at once.
const DURABLE_PUSH_WINDOW: usize = 1024;

/// Where one publisher thread's messages go.
enum Sink {
    /// A broker: publishes are written and not answered (MQTT QoS 1 waits
    /// for each PUBACK, as its flow requires).
    Broker(Publisher),
    /// The gateway's push API, pipelined: requests do not wait for the
    /// answers to earlier ones.
    PushApi(PipelinedPush),
}

impl Sink {
    fn connect(
        kind: PeerKind,
        addr: SocketAddr,
        ack: bool,
        transport: Transport,
        tls: Option<&TlsClient>,
    ) -> Result<Self, PublishError> {
        Ok(match kind {
            PeerKind::Gateway if ack => {
                Self::PushApi(PipelinedPush::connect(addr, DURABLE_PUSH_WINDOW, true)?)
            }
            PeerKind::Gateway => Self::PushApi(PipelinedPush::connect(addr, PUSH_WINDOW, false)?),
            _ => Self::Broker(Publisher::connect(kind, addr, transport, tls)?),
        })
    }

    /// Sends `items` in one request (or one write of pipelined publishes).
    fn send(&mut self, items: &[(To<'_>, &str)], out: &mut SendOutcome) {
        let t0 = Instant::now();
        match self {
            Self::Broker(publisher) => {
                let result = if let [(to, body)] = items {
                    publisher.send(*to, body).map(|()| 1)
                } else {
                    publisher.send_batch(items)
                };
                match result {
                    Ok(n) => out.sent += n,
                    Err(e) => *out.errors.entry(e.to_string()).or_default() += items.len() as u64,
                }
                out.call
                    .record_us(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            // Counted when the answers are in (`finish`).
            Self::PushApi(api) => {
                if let Err(e) = api.submit(items) {
                    *out.errors.entry(e.to_string()).or_default() += items.len() as u64;
                }
            }
        }
    }

    /// Waits until the target has taken everything sent.
    fn finish(self, out: &mut SendOutcome) {
        match self {
            Self::Broker(mut publisher) => {
                if let Err(e) = publisher.flush() {
                    *out.errors.entry(e.to_string()).or_default() += 1;
                }
            }
            Self::PushApi(api) => {
                let answers = api.finish();
                out.sent += answers.accepted;
                out.stored += answers.stored;
                for (k, v) in answers.refused {
                    *out.refused.entry(k).or_default() += v;
                }
                for (k, v) in answers.errors {
                    *out.errors.entry(k).or_default() += v;
                }
                let _ = out.call.merge(&answers.call);
            }
        }
    }
}

/// Makes this thread's sleeps end within microseconds of their deadline
/// (the default 50 µs timer slack would show up as schedule lag).
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only
    // changes this thread's timer slack; failure leaves the default.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
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
        sched,
        ack,
        transport,
        ref tls,
    } = *plan;
    let batch = batch.max(1) as usize;
    let threads = threads.max(1);
    // Every publisher connects before the schedule starts: a handshake
    // (TLS, a WebSocket upgrade, a broker's CONNECT) is not a late send.
    let sinks: Vec<Result<Sink, String>> = (0..threads)
        .map(|_| Sink::connect(kind, addr, ack, transport, tls.as_ref()).map_err(|e| e.to_string()))
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    let start_wall = wall_us() + 20_000;
    let results: Vec<SendOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0u32..)
            .zip(sinks)
            .map(|(t, sink)| {
                s.spawn(move || {
                    let mut out = SendOutcome {
                        first_intended_us: start_wall,
                        ..SendOutcome::default()
                    };
                    if let Err(e) = sched.apply_to_this_thread() {
                        out.errors
                            .insert(e.to_string(), total.div_ceil(u64::from(threads)));
                        return out;
                    }
                    let mut sink = match sink {
                        Ok(p) => p,
                        Err(e) => {
                            out.errors.insert(e, total.div_ceil(u64::from(threads)));
                            return out;
                        }
                    };
                    precise_sleeps();
                    let mut sched =
                        Schedule::share(start, rate, total, u64::from(t), u64::from(threads));
                    let mut pending: Vec<(String, String)> = Vec::with_capacity(batch);
                    while !sched.done() {
                        let now = Instant::now();
                        let Some((i, due)) = sched.pop_due(now) else {
                            if let Some(next) = sched.next_due() {
                                let wait = next.saturating_duration_since(now);
                                // Sleep rather than spin: spinning publishers
                                // would take the CPU the target needs.
                                if wait > Duration::from_micros(20) {
                                    std::thread::sleep(wait - Duration::from_micros(10));
                                } else {
                                    std::hint::spin_loop();
                                }
                            }
                            continue;
                        };
                        // Take every event already due, up to `batch`: back
                        // to back that fills the batch; with a rate it is
                        // whatever fell due while the last request was out.
                        let mut next = Some((i, due));
                        while let Some((i, due)) = next {
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
                            next = if pending.len() < batch {
                                sched.pop_due(now)
                            } else {
                                None
                            };
                        }
                        let items: Vec<(To<'_>, &str)> = pending
                            .iter()
                            .map(|(dest, body)| {
                                let target = if broadcast_all {
                                    To::All
                                } else if let Some(user) = dest.strip_prefix('@') {
                                    To::User(user)
                                } else {
                                    To::Topic(dest)
                                };
                                (target, body.as_str())
                            })
                            .collect();
                        out.last_sent_us = wall_us();
                        sink.send(&items, &mut out);
                        pending.clear();
                    }
                    sink.finish(&mut out);
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
        all.stored += r.stored;
        for (k, v) in r.refused {
            *all.refused.entry(k).or_default() += v;
        }
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        let _ = all.lag.merge(&r.lag);
        let _ = all.call.merge(&r.call);
        all.last_sent_us = all.last_sent_us.max(r.last_sent_us);
    }
    all
}

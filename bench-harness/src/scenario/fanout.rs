//! `fanout` (N subscribers, M broadcasts at a rate) and `unicast` (pushes
//! to random connected users at R/s): delivery latency from the intended
//! send time, per-message completion (first → last recipient),
//! deliveries/s, lost and duplicate counts.

use std::time::Duration;

use super::crosscheck::{self, GatewayCounts};
use super::drain::{self, DrainPhase};
use super::load::{Load, LoadError};
use super::sender::{SendPlan, send_all};
use super::{Common, Outcome};
use crate::histo::Latency;
use crate::report::RunReport;
use crate::schedule::judge;
use crate::wire::{AckError, PeerKind, Transport};

/// Options of `fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Subscribers.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: u32,
    /// Connections per second while connecting (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Broadcasts to send.
    #[arg(long, short = 'm', default_value_t = 10)]
    pub messages: u64,
    /// Broadcasts per second (0 = back to back).
    #[arg(long, default_value_t = 10.0)]
    pub msg_rate: f64,
    /// Topic subscribers join.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Broadcast to every connection instead of a topic (gateway only).
    #[arg(long)]
    pub all: bool,
    /// Payload bytes.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Nominal seconds to wait for the last deliveries after the last
    /// send: deliveries after it are reported as late (the phase itself
    /// ends on progress: --quiet-secs).
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Most broadcasts per publish request (the gateway's
    /// `/v1/push/batch`; pipelined publishes on the brokers). Back to back
    /// every request is full; with a rate, a request carries what fell due
    /// while the previous one was out.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Give up waiting for the connect phase after this many seconds.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 120.0)]
    pub timeout_secs: f64,
}

/// Options of `unicast`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnicastArgs {
    /// Connected users.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: u32,
    /// Connections per second while connecting (0 = as fast as possible;
    /// a storm past the target's handshake cap leaves users unconnected).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Pushes to send.
    #[arg(long, default_value_t = 10_000)]
    pub pushes: u64,
    /// Pushes per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Publisher connections (threads).
    #[arg(long, default_value_t = 2)]
    pub publishers: u32,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Nominal seconds to wait for the last deliveries: deliveries after
    /// it are reported as late (the phase itself ends on progress:
    /// --quiet-secs).
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Most pushes per publish request (the gateway's `/v1/push/batch`;
    /// pipelined publishes on the brokers): a request carries the pushes
    /// that fell due while the previous one was out, so batching adds no
    /// delay. 1 = one request per push.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Give up waiting for the connect phase after this many seconds.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 120.0)]
    pub timeout_secs: f64,
    /// Durable pushes (gateway only): every push is posted with
    /// `"ack": true` and counts as sent once answered `"stored": true`;
    /// every client acks each push on receipt. The run is also checked
    /// against the store's counters (every push stored and acked once, the
    /// store empty again at the end).
    #[arg(long)]
    pub ack: bool,
    /// With --ack: how long to wait after the delivery phase for the
    /// gateway to count the last Acks before the store cross-check.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 10.0)]
    pub ack_wait_secs: f64,
}

impl UnicastArgs {
    /// Whether these options suit `peer` over `transport`.
    ///
    /// # Errors
    /// `--ack` with a peer other than the gateway, or over MQTT.
    pub fn check(&self, peer: PeerKind, transport: Transport) -> Result<(), AckError> {
        if self.ack && peer != PeerKind::Gateway {
            return Err(AckError::NeedsGateway(peer.cli_name()));
        }
        if self.ack && transport == Transport::Mqtt {
            return Err(AckError::NotOverMqtt);
        }
        Ok(())
    }
}

fn subscription(peer: PeerKind, topic: &str, all: bool) -> Option<String> {
    match peer {
        PeerKind::Gateway if all => None,
        _ => Some(topic.to_string()),
    }
}

/// Runs `fanout`.
pub fn run_fanout(c: &Common, a: &FanoutArgs) -> Result<Outcome, LoadError> {
    let mut spec = c.spec(a.connections, a.connect_rate);
    let all = a.all && c.peer == PeerKind::Gateway;
    // Peers have no "all": every subscriber joins the same topic.
    let topic = if c.peer == PeerKind::Gateway {
        a.topic.clone()
    } else {
        "all".to_string()
    };
    spec.subscribe = subscription(c.peer, &topic, all);
    spec.payload_size = a.payload;
    spec.expected_msgs = a.messages;
    let mut load = Load::start(&spec)?;
    let needs_sub = spec.subscribe.is_some();
    let n = u64::from(a.connections);
    let ready = load.wait_until(Duration::from_secs_f64(a.timeout_secs), |t| {
        t.connect_done && (!needs_sub || t.subscribed >= t.established)
    })?;
    // Let cross-shard topic state settle.
    load.hold(Duration::from_millis(300))?;
    let receivers = load.totals().established;
    let topic_for = topic.clone();
    let to = move |_i: u64| topic_for.clone();
    let plan = SendPlan {
        kind: c.peer,
        transport: c.transport,
        tls: c.tls_client()?,
        addr: c.publish_addr(),
        threads: 1,
        total: a.messages,
        rate: a.msg_rate,
        payload: a.payload,
        broadcast_all: all,
        batch: a.batch,
        sched: c.sched,
        ack: false,
    };
    let before = gateway_counts(c);
    let sent = send_all(&plan, &to);
    let want = sent.sent * receivers;
    let phase = delivery_phase(c, &mut load, want, a.drain_secs)?;
    let res = load.finish()?;
    let mut rep = RunReport::new(
        "fanout",
        c.peer.label(),
        serde_json::json!({"connections": n, "messages": a.messages, "msg_rate": a.msg_rate, "payload": a.payload,
            "all": all, "topic": topic, "shards": c.shards, "workers": load.workers()}),
    );
    super::connect_figures(&mut rep, &res, a.connect_rate, c);
    rep.metric("receivers", receivers as f64);
    rep.metric("messages_sent", sent.sent as f64);
    let unique: u64 = res.seqs.iter().map(|s| s.count).sum();
    rep.metric("deliveries", unique as f64);
    report_phase(&mut rep, c, &phase, unique, before);
    rep.metric("duplicates", res.duplicates as f64);
    let first = res
        .seqs
        .iter()
        .filter(|s| s.count > 0)
        .map(|s| s.first_us)
        .min()
        .unwrap_or(0);
    let last = res.seqs.iter().map(|s| s.last_us).max().unwrap_or(0);
    let span = last.saturating_sub(sent.first_intended_us.min(first.max(1))) as f64 / 1e6;
    if span > 0.0 {
        rep.metric("deliveries_per_s", (unique as f64 / span).round());
    }
    // Per message: first → last recipient.
    let mut completion = Latency::new();
    for s in res.seqs.iter().filter(|s| s.count > 0) {
        completion.record_us(s.last_us - s.first_us);
    }
    if completion.count() > 0 {
        rep.metric("completion_p99_us", completion.quantile_us(0.99) as f64);
    }
    rep.histogram("delivery", &res.delivery);
    rep.histogram("completion", &completion);
    rep.histogram("publish_call", &sent.call);
    for (k, v) in &sent.errors {
        *rep.failures.entry(format!("publish: {k}")).or_default() += v;
    }
    rep.invalidate(publish_failures(&sent, plan.total));
    rep.invalidate(judge(
        &sent.lag,
        a.msg_rate,
        achieved(&sent, a.msg_rate),
        c.budget(),
        "publisher",
    ));
    if !ready {
        rep.invalidate(vec!["subscribers were not all ready in time".into()]);
    }
    Ok(Outcome::new(rep, load))
}

/// The gateway's counters before a delivery phase (`None` for the
/// brokers, or when they cannot be read: said on stderr).
fn gateway_counts(c: &Common) -> Option<GatewayCounts> {
    if c.peer != PeerKind::Gateway {
        return None;
    }
    match crosscheck::read_settled(c.control) {
        Ok(counts) => Some(counts),
        Err(e) => {
            eprintln!("cross-check: {e}; not cross-checking this run");
            None
        }
    }
}

/// Waits for the `want` deliveries of the phase that starts now, on
/// progress ([`DrainPhase`]): `drain_secs` is the nominal deadline.
fn delivery_phase(
    c: &Common,
    load: &mut Load,
    want: u64,
    drain_secs: f64,
) -> Result<DrainPhase, LoadError> {
    let mut phase = DrainPhase::new(
        want,
        Duration::from_secs_f64(drain_secs),
        Duration::from_secs_f64(c.quiet_secs),
        Duration::from_secs_f64(c.max_drain_secs),
    );
    load.drain(&mut phase)?;
    Ok(phase)
}

/// Reports a finished delivery phase: late and lost (`unique` expected
/// deliveries arrived), how it ended, the loss verdict, and the
/// cross-check against the gateway's counters.
fn report_phase(
    rep: &mut RunReport,
    c: &Common,
    phase: &DrainPhase,
    unique: u64,
    before: Option<GatewayCounts>,
) {
    let (late, lost) = phase.late_and_lost(unique);
    rep.metric("late", late as f64);
    rep.metric("lost", lost as f64);
    if let Some((end, at)) = phase.ended() {
        rep.metric(
            "delivery_phase_secs",
            (at.as_secs_f64() * 100.0).round() / 100.0,
        );
        rep.note(format!(
            "delivery phase ended: {} after {:.2} s ({} of {} in by the nominal deadline, \
             --drain-secs; --quiet-secs {})",
            end.label(),
            at.as_secs_f64(),
            phase.by_deadline().min(phase.want()),
            phase.want(),
            c.quiet_secs
        ));
    }
    rep.invalidate(drain::judge_loss(lost, phase.want(), None));
    if let Some(before) = before {
        match crosscheck::read_settled(c.control) {
            Ok(after) => crosscheck::compare(rep, &before, &after, phase.want(), unique),
            Err(e) => {
                eprintln!("cross-check: {e}");
                rep.note(format!("cross-check: {e}"));
            }
        }
    }
}

/// INVALID reasons when sends failed: the figures then describe fewer
/// messages than asked for.
fn publish_failures(s: &super::sender::SendOutcome, total: u64) -> Vec<String> {
    if s.sent >= total {
        return Vec::new();
    }
    let first = s.errors.keys().next().cloned().unwrap_or_default();
    vec![format!(
        "publisher: only {} of {total} sends succeeded ({first})",
        s.sent
    )]
}

/// Sends per second the publishers kept; schedules too short to time
/// (< 20 sends) count as kept, their lag is still judged.
fn achieved(s: &super::sender::SendOutcome, rate: f64) -> f64 {
    if rate <= 0.0 {
        return 0.0;
    }
    if s.sent < 20 {
        return rate;
    }
    let span = s.last_sent_us.saturating_sub(s.first_intended_us) as f64 / 1e6;
    // The first send is due at 0: n sends span (n-1)/rate.
    if span > 0.0 {
        (s.sent.saturating_sub(1)) as f64 / span
    } else {
        rate
    }
}

/// Runs `unicast`.
pub fn run_unicast(c: &Common, a: &UnicastArgs) -> Result<Outcome, LoadError> {
    a.check(c.peer, c.transport)?;
    let mut spec = c.spec(a.connections, a.connect_rate);
    spec.ack = a.ack;
    spec.subscribe = match c.peer {
        PeerKind::Gateway => None,
        PeerKind::Nats => Some("u.{user}".into()),
        PeerKind::Mqtt | PeerKind::MqttQos1 => Some("u/{user}".into()),
    };
    spec.payload_size = a.payload;
    spec.expected_msgs = a.pushes;
    let needs_sub = spec.subscribe.is_some();
    let mut load = Load::start(&spec)?;
    let ready = load.wait_until(Duration::from_secs_f64(a.timeout_secs), |t| {
        t.connect_done && (!needs_sub || t.subscribed >= t.established)
    })?;
    load.hold(Duration::from_millis(300))?;
    // Pushes go to every user id, so each user must be connected: a push to
    // an unconnected user would count as lost.
    let unconnected = u64::from(a.connections).saturating_sub(load.totals().established);
    let n = u64::from(a.connections.max(1));
    // Random users, deterministic per message index.
    let to = move |i: u64| {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
        x ^= x >> 31;
        format!("@u{}", x % n)
    };
    let plan = SendPlan {
        kind: c.peer,
        transport: c.transport,
        tls: c.tls_client()?,
        addr: c.publish_addr(),
        threads: a.publishers,
        total: a.pushes,
        rate: a.rate,
        payload: a.payload,
        broadcast_all: false,
        batch: a.batch,
        sched: c.sched,
        ack: a.ack,
    };
    let before = gateway_counts(c);
    let sent = send_all(&plan, &to);
    let want = sent.sent;
    let phase = delivery_phase(c, &mut load, want, a.drain_secs)?;
    let res = load.finish()?;
    let mut rep = RunReport::new(
        "unicast",
        c.peer.label(),
        serde_json::json!({"connections": a.connections, "connect_rate": a.connect_rate, "pushes": a.pushes, "rate": a.rate, "payload": a.payload,
            "publishers": a.publishers, "batch": a.batch, "shards": c.shards, "workers": load.workers(),
            "ack": a.ack}),
    );
    super::connect_figures(&mut rep, &res, a.connect_rate, c);
    let unique: u64 = res.seqs.iter().map(|s| s.count).sum();
    rep.metric("users_not_connected", unconnected as f64);
    if unconnected > 0 {
        rep.invalidate(vec![format!(
            "{unconnected} of {} users were not connected when pushing began, so pushes to them \
             count as lost; lower --connect-rate (see the failures above)",
            a.connections
        )]);
    }
    rep.metric("pushes_sent", sent.sent as f64);
    rep.metric("deliveries", unique as f64);
    report_phase(&mut rep, c, &phase, unique, before);
    rep.metric("duplicates", res.duplicates as f64);
    if a.ack {
        durable_figures(&mut rep, c, a, &sent, res.redeliveries, before.as_ref());
    }
    rep.metric("push_rate_achieved_per_s", achieved(&sent, a.rate).round());
    rep.histogram("delivery", &res.delivery);
    rep.histogram("publish_call", &sent.call);
    for (k, v) in &sent.errors {
        *rep.failures.entry(format!("publish: {k}")).or_default() += v;
    }
    rep.invalidate(publish_failures(&sent, plan.total));
    rep.invalidate(judge(
        &sent.lag,
        a.rate,
        achieved(&sent, a.rate),
        c.budget(),
        "publisher",
    ));
    if !ready {
        rep.invalidate(vec!["subscribers were not all ready in time".into()]);
    }
    Ok(Outcome::new(rep, load))
}

/// The figures of a `--ack` run: pushes answered stored and refused (by
/// status), redelivered copies on the wire, and the cross-check against
/// the store's counters once the last Acks are in (a mismatch is INVALID).
fn durable_figures(
    rep: &mut RunReport,
    c: &Common,
    a: &UnicastArgs,
    sent: &super::sender::SendOutcome,
    redeliveries: u64,
    before: Option<&GatewayCounts>,
) {
    rep.metric("pushes_stored", sent.stored as f64);
    rep.metric("pushes_refused", sent.refused.values().sum::<u64>() as f64);
    for (status, n) in &sent.refused {
        rep.metric(&format!("pushes_refused_{status}"), *n as f64);
    }
    rep.metric("wire_redeliveries", redeliveries as f64);
    let Some(before) = before else {
        rep.invalidate(vec![
            "--ack: the gateway's store counters could not be read (see stderr), so nothing \
             says every push was stored and acked"
                .into(),
        ]);
        return;
    };
    let limit = Duration::from_secs_f64(a.ack_wait_secs);
    match crosscheck::read_acked(c.control, before, sent.stored, limit) {
        Ok(after) => {
            let reasons = crosscheck::compare_store(rep, before, &after, sent.stored);
            rep.invalidate(reasons);
        }
        Err(e) => {
            eprintln!("cross-check: {e}");
            rep.invalidate(vec![format!("--ack: store cross-check: {e}")]);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        common: Common,
    }

    fn common() -> Common {
        // A peer without a control API: no cross-check.
        Cli::parse_from(["t", "--peer", "nats"]).common
    }

    /// A phase of 100 expected deliveries, 60 in by the 1 s nominal
    /// deadline, `unique` in at the end (simulated time).
    fn phase(last: u64) -> DrainPhase {
        let s = Duration::from_secs;
        let mut p = DrainPhase::new(100, s(1), s(5), s(60));
        for (t, n) in [(0, 0), (1, 60), (2, 80), (3, last), (9, last)] {
            if p.observe(s(t), n).is_some() {
                break;
            }
        }
        p
    }

    #[test]
    fn ack_is_for_the_gateways_v1_transports() {
        #[derive(Debug, clap::Parser)]
        struct Unicast {
            #[command(flatten)]
            args: UnicastArgs,
        }
        let ack = Unicast::parse_from(["t", "--ack"]).args;
        assert_eq!(ack.check(PeerKind::Gateway, Transport::Tcp), Ok(()));
        assert_eq!(ack.check(PeerKind::Gateway, Transport::Ws), Ok(()));
        assert_eq!(
            ack.check(PeerKind::Gateway, Transport::Mqtt),
            Err(AckError::NotOverMqtt)
        );
        assert_eq!(
            ack.check(PeerKind::Nats, Transport::Tcp),
            Err(AckError::NeedsGateway("nats".into()))
        );
        let plain = Unicast::parse_from(["t"]).args;
        assert_eq!(plain.check(PeerKind::Gateway, Transport::Mqtt), Ok(()));
    }

    #[test]
    fn a_run_with_a_lost_delivery_is_invalid() {
        let c = common();
        let mut rep = RunReport::new("fanout", "nats", serde_json::json!({}));
        report_phase(&mut rep, &c, &phase(99), 99, None);
        assert!(!rep.valid);
        assert_eq!(rep.metrics["lost"], 1.0);
        assert_eq!(rep.metrics["late"], 39.0);
        assert!(rep.invalid_reasons[0].contains("1 of 100 expected deliveries were lost"));
        assert!(rep.notes[0].contains("quiet"), "{:?}", rep.notes);
    }

    #[test]
    fn late_deliveries_are_late_not_lost_and_the_run_stays_valid() {
        let c = common();
        let mut rep = RunReport::new("fanout", "nats", serde_json::json!({}));
        report_phase(&mut rep, &c, &phase(100), 100, None);
        assert!(rep.valid, "{:?}", rep.invalid_reasons);
        assert_eq!(rep.metrics["lost"], 0.0);
        assert_eq!(rep.metrics["late"], 40.0);
        assert!(rep.notes[0].contains("complete"), "{:?}", rep.notes);
    }
}

//! Data on established connections, whatever the driver: sends, received
//! bytes through the session, session events (deliveries, replies,
//! closes), heartbeats, churn and uplink picks.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gateway::stream::Pending;

use super::{Sent, Shard, ShardError, ShardIo};
use crate::engine::conn::Phase;
use crate::stamp::wall_us;
use crate::wire::WireEvent;

impl<I: ShardIo> Shard<'_, I> {
    pub(super) fn arm_recv(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.life.start(Pending::Recv);
        let generation = conn.generation;
        self.io.arm_recv(slot, generation)
    }
    pub(super) fn send(&mut self, slot: u32, bytes: &[u8]) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if conn.enqueue(bytes) {
            self.submit_send(slot)?;
        }
        Ok(())
    }
    pub(super) fn submit_send(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        let generation = conn.generation;
        let Some(rest) = conn.send.to_send() else {
            return Ok(());
        };
        conn.life.start(Pending::Send);
        match self.io.send(slot, generation, rest)? {
            Sent::Later | Sent::Blocked => Ok(()),
            Sent::Now(res) => self.on_send(slot, res),
        }
    }
    pub(super) fn on_send(&mut self, slot: u32, res: i32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if res < 0 {
            conn.life.finish(Pending::Send);
            if matches!(conn.phase, Phase::Handshaking | Phase::Established) {
                self.note_failure(format!("send: {}", io::Error::from_raw_os_error(-res)));
                return self.lose(slot);
            }
            return self.maybe_reconnect(slot);
        }
        let n = usize::try_from(res).unwrap_or(0);
        if conn.sent_some(n) && matches!(conn.phase, Phase::Handshaking | Phase::Established) {
            return self.submit_send(slot);
        }
        self.maybe_reconnect(slot)
    }
    /// The receive side of a live connection ended: `res` 0 is the peer's
    /// close, a negative one `-errno`. Counted as a failure and closed.
    pub(super) fn recv_failed(&mut self, slot: u32, res: i32) -> Result<(), ShardError> {
        let live = self
            .conns
            .get(slot as usize)
            .is_some_and(|c| matches!(c.phase, Phase::Handshaking | Phase::Established));
        if !live {
            return Ok(());
        }
        let why = if res == 0 {
            "closed by peer".to_string()
        } else {
            format!("recv: {}", io::Error::from_raw_os_error(-res))
        };
        self.note_failure(why);
        self.lose(slot)
    }
    pub(super) fn feed(&mut self, slot: u32, data: &[u8]) -> Result<(), ShardError> {
        let now = self.now_ms();
        let mut events = std::mem::take(&mut self.events);
        let mut out = std::mem::take(&mut self.out);
        events.clear();
        out.clear();
        if let Some(wire) = self
            .conns
            .get_mut(slot as usize)
            .and_then(|c| c.wire.as_mut())
        {
            wire.input(now, data, &mut events, &mut out);
        }
        if !out.is_empty() {
            self.send(slot, &out)?;
        }
        for e in events.drain(..) {
            self.on_event(slot, e)?;
        }
        self.events = events;
        self.out = out;
        Ok(())
    }
    pub(super) fn on_event(&mut self, slot: u32, e: WireEvent) -> Result<(), ShardError> {
        match e {
            WireEvent::Established => {
                let us = self.elapsed_since_intended(slot);
                let Some(conn) = self.conns.get_mut(slot as usize) else {
                    return Ok(());
                };
                conn.phase = Phase::Established;
                let generation = conn.generation;
                if conn.is_reconnect {
                    self.res.reconnect.record_us(us);
                    self.res.reconnects += 1;
                    self.link
                        .counters
                        .reconnects
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    self.res.handshake.record_us(us);
                    self.resolve_attempt();
                }
                self.res.established += 1;
                self.res.last_established_us = wall_us();
                self.established_now += 1;
                self.link
                    .counters
                    .handshakes
                    .fetch_add(1, Ordering::Relaxed);
                self.link
                    .counters
                    .established
                    .store(self.established_now, Ordering::Relaxed);
                let now = self.now_ms();
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                let mut evs = Vec::new();
                let next = self.conns[slot as usize]
                    .wire
                    .as_mut()
                    .and_then(|w| w.tick(now, &mut evs, &mut out));
                if let Some(at) = next {
                    self.timers.push(at, slot, generation);
                }
                self.send(slot, &out)?;
                self.out = out;
            }
            WireEvent::Subscribed => {
                self.link
                    .counters
                    .subscribed
                    .fetch_add(1, Ordering::Relaxed);
            }
            WireEvent::Delivery(stamp) => {
                self.link
                    .counters
                    .deliveries
                    .fetch_add(1, Ordering::Relaxed);
                let Some(st) = stamp.filter(|s| s.seq < self.plan.expected_msgs) else {
                    self.res.unstamped += 1;
                    return Ok(());
                };
                let now_us = wall_us();
                let lat = now_us.saturating_sub(st.intended_us);
                self.res.delivery.record_us(lat);
                if let Ok(mut g) = self.link.interval.lock() {
                    g.record_us(lat);
                }
                let expected = self.plan.expected_msgs;
                let fresh = self
                    .conns
                    .get_mut(slot as usize)
                    .is_some_and(|c| c.mark_seen(st.seq, expected));
                if fresh {
                    if let Some(s) = usize::try_from(st.seq)
                        .ok()
                        .and_then(|i| self.res.seqs.get_mut(i))
                    {
                        s.arrive(now_us);
                    }
                } else {
                    self.res.duplicates += 1;
                }
            }
            WireEvent::Redelivery => self.res.redeliveries += 1,
            WireEvent::TlsHandshake(agreed) => *self.res.tls.entry(agreed).or_default() += 1,
            WireEvent::Reply { request_id, status } => {
                if let Some(intended) = self.pending_uplinks.remove(&(slot, request_id)) {
                    let us = self.ns_of(Instant::now()).saturating_sub(intended) / 1000;
                    self.res.uplink.record_us(us);
                }
                *self
                    .res
                    .reply_status
                    .entry(format!("{}xx", status / 100))
                    .or_default() += 1;
                self.link.counters.replies.fetch_add(1, Ordering::Relaxed);
            }
            WireEvent::Closed(why) => {
                let live = self
                    .conns
                    .get(slot as usize)
                    .is_some_and(|c| matches!(c.phase, Phase::Handshaking | Phase::Established));
                if live {
                    self.note_failure(why);
                    self.lose(slot)?;
                }
            }
        }
        Ok(())
    }
    pub(super) fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    pub(super) fn churn_one(&mut self, intended_ns: u64) -> Result<(), ShardError> {
        let n = self.conns.len();
        if n == 0 {
            return Ok(());
        }
        // A random established connection (bounded probe from a random start).
        let start = usize::try_from(self.next_rand() % n as u64).unwrap_or(0);
        self.churn_cursor = start;
        for k in 0..n.min(64) {
            let slot = (start + k) % n;
            if self.conns[slot].phase == Phase::Established {
                let conn = &mut self.conns[slot];
                conn.intended_ns = intended_ns;
                conn.phase = Phase::Closing;
                self.established_now = self.established_now.saturating_sub(1);
                self.link
                    .counters
                    .established
                    .store(self.established_now, Ordering::Relaxed);
                let slot = u32::try_from(slot).unwrap_or(u32::MAX);
                return self.close_slot(slot, true);
            }
        }
        Ok(())
    }
    pub(super) fn uplink_one(&mut self, due: Instant) -> Result<(), ShardError> {
        let n = self.conns.len();
        let payload = vec![b'u'; self.plan.payload_size];
        for k in 0..n {
            let slot = (self.uplink_cursor + k) % n;
            if self.conns[slot].phase != Phase::Established {
                continue;
            }
            self.uplink_cursor = slot + 1;
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            let id = self.conns[slot]
                .wire
                .as_mut()
                .and_then(|w| w.uplink(&self.plan.uplink_route, &payload, &mut out));
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            if let Some(id) = id {
                self.pending_uplinks.insert((slot, id), self.ns_of(due));
                self.res.uplinks_sent += 1;
            }
            self.send(slot, &out)?;
            self.out = out;
            return Ok(());
        }
        Ok(())
    }
    pub(super) fn run_timers(&mut self) -> Result<(), ShardError> {
        let now = self.now_ms();
        while let Some((slot, generation)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            if conn.generation != generation
                || !matches!(conn.phase, Phase::Handshaking | Phase::Established)
            {
                continue;
            }
            let mut out = std::mem::take(&mut self.out);
            let mut evs = std::mem::take(&mut self.events);
            out.clear();
            evs.clear();
            let next = conn
                .wire
                .as_mut()
                .and_then(|w| w.tick(now, &mut evs, &mut out));
            if let Some(at) = next {
                // Never re-arm in the past: a session that reports an
                // overdue deadline is looked at again next millisecond.
                self.timers
                    .push(at.max(now.saturating_add(1)), slot, generation);
            }
            self.send(slot, &out)?;
            for e in evs.drain(..) {
                self.on_event(slot, e)?;
            }
            self.out = out;
            self.events = evs;
        }
        Ok(())
    }
}

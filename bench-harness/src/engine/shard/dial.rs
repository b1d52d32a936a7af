//! Connection set-up and tear-down, whatever the driver: the identity and
//! token of a slot, the connect attempt and its outcome, the handshake
//! start, shutdown/close, churn reconnects. The driver does the socket
//! work ([`ShardIo::connect`], [`ShardIo::close`]).

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gateway::stream::StreamLife;
use protocol::auth::{Claims, mint_hs256};

use super::{Closed, Dial, Shard, ShardError, ShardIo, TOKEN_TTL_S};
use crate::engine::conn::Phase;
use crate::engine::seen::Seen;
use crate::stamp::wall_us;
use crate::wire::{ClientWire, Identity};

impl<I: ShardIo> Shard<'_, I> {
    pub(super) fn identity(&self, slot: u32) -> Result<Identity, ShardError> {
        let user = format!("u{}", self.plan.first_user + u64::from(slot));
        let token = if self.plan.peer == crate::wire::PeerKind::Gateway {
            let claims = Claims {
                sub: user.clone(),
                exp: Some(wall_us() / 1_000_000 + TOKEN_TTL_S),
                ..Claims::default()
            };
            mint_hs256(self.plan.jwt_secret.as_bytes(), &claims).map_err(|e| ShardError::Token {
                shard: self.plan.index,
                reason: e.to_string(),
            })?
        } else {
            String::new()
        };
        Ok(Identity {
            user,
            token,
            heartbeat_ms: self.plan.heartbeat_ms,
        })
    }
    pub(super) fn start_connect(
        &mut self,
        slot: u32,
        intended_ns: u64,
        is_reconnect: bool,
    ) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.generation = conn.generation.wrapping_add(1);
        conn.phase = Phase::Connecting;
        conn.intended_ns = intended_ns;
        conn.is_reconnect = is_reconnect;
        conn.reconnect_after_close = false;
        conn.wire = None;
        conn.seen = Seen::Nothing;
        let generation = conn.generation;
        self.link.counters.attempts.fetch_add(1, Ordering::Relaxed);
        self.res.attempts += 1;
        match self.io.connect(slot, generation)? {
            Dial::Pending => Ok(()),
            Dial::Connected => self.on_connect(slot, 0),
            Dial::Refused(errno) => self.on_connect(slot, -errno),
            Dial::SetupFailed(step, errno) => {
                self.setup_failed(slot, step, errno);
                self.on_connect(slot, -libc::ECANCELED)
            }
        }
    }
    /// A step of the connect chain before the connect failed: counted
    /// once, under the step's name; the connect that follows is cancelled
    /// and reports the end of the attempt.
    pub(super) fn setup_failed(&mut self, slot: u32, step: &str, errno: i32) {
        self.note_failure(format!("{step}: {}", io::Error::from_raw_os_error(errno)));
        if let Some(c) = self.conns.get_mut(slot as usize) {
            c.phase = Phase::Dead;
        }
    }
    pub(super) fn on_connect(&mut self, slot: u32, res: i32) -> Result<(), ShardError> {
        let elapsed = self.elapsed_since_intended(slot);
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if res < 0 {
            let was_dead = conn.phase == Phase::Dead;
            conn.phase = Phase::Dead;
            if !was_dead {
                self.note_failure(format!("connect: {}", io::Error::from_raw_os_error(-res)));
            }
            if !self.conns[slot as usize].is_reconnect {
                self.resolve_attempt();
            }
            return self.close_slot(slot, false);
        }
        self.res.connect.record_us(elapsed);
        conn.phase = Phase::Handshaking;
        let id = self.identity(slot)?;
        let now = self.now_ms();
        // Only WebSocket needs randomness: TCP runs keep the churn picks.
        let seed = if self.plan.transport.is_websocket() {
            self.next_rand()
        } else {
            0
        };
        let made = ClientWire::new(
            self.plan.peer,
            self.plan.transport,
            &id,
            now,
            seed,
            self.tls.as_ref(),
        );
        let mut wire = match made {
            Ok(w) => w,
            Err(e) => {
                self.note_failure(e.to_string());
                return self.lose(slot);
            }
        };
        if self.plan.ack {
            wire.set_auto_ack(true);
        }
        self.out.clear();
        wire.start(now, &self.host, &mut self.out);
        if let Some(topic) = &self.plan.subscribe {
            wire.subscribe(&topic.replace("{user}", &id.user), &mut self.out);
        }
        let conn = &mut self.conns[slot as usize];
        conn.wire = Some(wire);
        let generation = conn.generation;
        let out = std::mem::take(&mut self.out);
        self.send(slot, &out)?;
        self.out = out;
        self.arm_recv(slot)?;
        self.timers
            .push(now.saturating_add(10_000), slot, generation);
        Ok(())
    }
    pub(super) fn elapsed_since_intended(&self, slot: u32) -> u64 {
        let intended = self.conns.get(slot as usize).map_or(0, |c| c.intended_ns);
        let now = self.ns_of(Instant::now());
        now.saturating_sub(intended) / 1000
    }
    pub(super) fn lose(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        let was = conn.phase;
        conn.phase = Phase::Dead;
        if was == Phase::Established {
            self.established_now = self.established_now.saturating_sub(1);
            self.link
                .counters
                .established
                .store(self.established_now, Ordering::Relaxed);
        } else if was == Phase::Handshaking && !conn.is_reconnect {
            self.resolve_attempt();
        }
        self.close_slot(slot, false)
    }
    pub(super) fn close_slot(&mut self, slot: u32, reconnect: bool) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.reconnect_after_close = reconnect;
        if reconnect {
            conn.phase = Phase::Closing;
        }
        let generation = conn.generation;
        match self.io.close(slot, generation)? {
            Closed::Later => Ok(()),
            Closed::Now => {
                // Nothing of this connection is in flight any more.
                if let Some(c) = self.conns.get_mut(slot as usize) {
                    c.life = StreamLife::default();
                }
                self.on_close(slot)
            }
        }
    }
    pub(super) fn on_close(&mut self, slot: u32) -> Result<(), ShardError> {
        self.maybe_reconnect(slot)
    }
    pub(super) fn maybe_reconnect(&mut self, slot: u32) -> Result<(), ShardError> {
        let now = self.ns_of(Instant::now());
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if conn.phase == Phase::Closing
            && conn.reconnect_after_close
            && !conn.life.in_flight(gateway::stream::Pending::Send)
        {
            conn.reconnect_after_close = false;
            conn.phase = Phase::Idle;
            // The reconnect was meant to start when the churn event was due.
            let intended = conn.intended_ns.min(now);
            return self.start_connect(slot, intended, true);
        }
        Ok(())
    }
    pub(super) fn resolve_attempt(&mut self) {
        self.resolved += 1;
    }
    pub(super) fn note_failure(&mut self, why: String) {
        *self.res.failures.entry(why).or_default() += 1;
        self.link.counters.failures.fetch_add(1, Ordering::Relaxed);
    }
}

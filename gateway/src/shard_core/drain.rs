//! Draining a shard: stop accepting, Kick every session with reconnect
//! hints at a bounded rate. Two kinds share the mechanism:
//! - shutdown (SIGTERM/SIGINT): Kick going-away, then exit once every
//!   session is gone or the deadline passes;
//! - operator drain (`POST /v1/drain`): Kick drain, keep serving the
//!   control API. A shutdown during an operator drain turns it into a
//!   shutdown.

use std::sync::Arc;

use protocol::proto::KickCode;
use protocol::time::Millis;

use super::conn::flags;
use super::{Action, ShardCore, Time};

/// Drain progress of one shard.
#[derive(Debug)]
pub(super) struct Drain {
    started: Millis,
    /// Exit by then (shutdown only).
    deadline: Option<Millis>,
    queue: Vec<u32>,
    kicked: u64,
    /// Kicks per second on this shard.
    rate: u32,
    code: KickCode,
    reason: &'static str,
    reconnect: Arc<[String]>,
    retry_after_ms: u32,
}

/// How often a draining shard wakes up to send its next batch of Kicks.
const PACE_MS: u64 = 10;

impl ShardCore {
    /// The gateway is shutting down (SIGTERM/SIGINT): drain, then exit by
    /// `shutdown.deadline_ms`. Repeated calls change nothing.
    pub fn on_shutdown_requested(&mut self, t: Time) {
        let now = self.at(t);
        let deadline = now.saturating_add(u64::from(self.settings.config.shutdown.deadline_ms));
        match &mut self.drain {
            None => {
                let cfg = &self.settings.config.shutdown;
                let (rate, reconnect, retry) = (
                    cfg.kick_rate,
                    cfg.reconnect.clone().into(),
                    cfg.retry_after_ms,
                );
                self.start_drain(
                    now,
                    rate,
                    reconnect,
                    retry,
                    KickCode::GoingAway,
                    "server shutting down",
                );
                if let Some(d) = &mut self.drain {
                    d.deadline = Some(deadline);
                }
            }
            Some(d) if d.deadline.is_none() => {
                tracing::info!(
                    shard = self.index,
                    "shutdown during an operator drain: exiting when done"
                );
                d.deadline = Some(deadline);
            }
            Some(_) => {}
        }
    }

    /// `POST /v1/drain` reached this shard.
    pub(super) fn start_admin_drain(
        &mut self,
        now: Millis,
        rate: u32,
        reconnect: &Arc<[String]>,
        retry_after_ms: u32,
    ) {
        if self.drain.is_some() {
            return;
        }
        self.start_drain(
            now,
            rate,
            reconnect.clone(),
            retry_after_ms,
            KickCode::Drain,
            "node draining",
        );
    }

    fn start_drain(
        &mut self,
        now: Millis,
        rate: u32,
        reconnect: Arc<[String]>,
        retry_after_ms: u32,
        code: KickCode,
        reason: &'static str,
    ) {
        let queue: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.has(flags::CLOSING))
            .map(|(k, _)| k as u32)
            .collect();
        tracing::info!(
            shard = self.index,
            sessions = queue.len(),
            rate,
            ?code,
            "draining: no more accepts, kicking sessions"
        );
        self.drain = Some(Drain {
            started: now,
            deadline: None,
            queue,
            kicked: 0,
            rate: rate.max(1),
            code,
            reason,
            reconnect,
            retry_after_ms,
        });
        self.actions.push(Action::StopAccepting);
    }

    /// Whether a drain (operator's or shutdown) is under way: no more
    /// accepts.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// When a draining shard must wake up next.
    pub(super) fn drain_wakeup(&self, now: Millis) -> Option<Millis> {
        let d = self.drain.as_ref()?;
        if d.queue.is_empty() {
            d.deadline
        } else {
            Some(now.saturating_add(PACE_MS))
        }
    }

    /// Sends the Kicks the rate allows by `t`; `Some(true)` once a
    /// shutting-down shard is done (no connection left, or the deadline
    /// passed), `None` when no drain is under way.
    pub fn drain_step(&mut self, t: Time) -> Option<bool> {
        let now = self.at(t);
        let d = self.drain.as_mut()?;
        if let Some(deadline) = d.deadline {
            let done = if self.conns.is_empty() {
                true
            } else if now >= deadline {
                tracing::warn!(
                    shard = self.index,
                    left = self.conns.len(),
                    "drain deadline passed; exiting with sessions open"
                );
                true
            } else {
                false
            };
            if done {
                // Nothing parked outlives the process: its `offline` now.
                self.release_parked(now);
                return Some(true);
            }
        }
        let allowed = u64::from(d.rate) * now.since(d.started) / 1000 + 1;
        let budget = allowed.saturating_sub(d.kicked);
        let take = (budget as usize).min(d.queue.len());
        let batch = d.queue.split_off(d.queue.len() - take);
        d.kicked += batch.len() as u64;
        let (code, reason, reconnect, retry) =
            (d.code, d.reason, d.reconnect.clone(), d.retry_after_ms);
        for key in batch {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                continue;
            };
            if conn.has(flags::CLOSING) {
                continue;
            }
            conn.session
                .kick(code, reason, &reconnect, retry, &mut self.out);
            self.handle_output(now, key);
        }
        Some(false)
    }
}

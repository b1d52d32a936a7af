//! Graceful shutdown of a shard: stop accepting, Kick every session with
//! reconnect hints at a bounded rate, and stop once all are gone or the
//! deadline passes.

use std::sync::atomic::Ordering;

use io_uring::opcode;
use protocol::proto::KickCode;
use protocol::time::Millis;

use super::Shard;
use super::conn::flags;
use crate::uring::op::{OpKind, OpTag};

/// Drain progress of one shard.
#[derive(Debug)]
pub(super) struct Drain {
    started: Millis,
    deadline: Millis,
    queue: Vec<u32>,
    kicked: u64,
}

/// How often a draining shard wakes up to send its next batch of Kicks.
const PACE_MS: u64 = 10;

impl Shard {
    pub(super) fn on_doorbell(&mut self, now: Millis) {
        if self.shared.draining.load(Ordering::Acquire) && self.drain.is_none() {
            self.start_drain(now);
        }
    }

    fn start_drain(&mut self, now: Millis) {
        let cfg = &self.settings.config.shutdown;
        let queue: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.has(flags::CLOSING))
            .map(|(k, _)| k as u32)
            .collect();
        tracing::info!(
            shard = self.index,
            sessions = queue.len(),
            "draining: no more accepts, kicking sessions"
        );
        self.drain = Some(Drain {
            started: now,
            deadline: now.saturating_add(u64::from(cfg.deadline_ms)),
            queue,
            kicked: 0,
        });
        let tags: Vec<OpTag> = if self.multishot_accept {
            vec![OpTag::new(OpKind::AcceptMulti, 0)]
        } else {
            (0..self.accept_addrs.len())
                .map(|i| OpTag::new(OpKind::AcceptOne, i as u32))
                .collect()
        };
        for tag in tags {
            let cancel = opcode::AsyncCancel::new(tag.encode())
                .build()
                .user_data(OpTag::new(OpKind::Cancel, 0).encode());
            self.push(cancel);
        }
        // The in-flight accepts hold their own reference to the socket.
        self.listener = None;
    }

    /// When a draining shard must wake up next.
    pub(super) fn drain_wakeup(&self, now: Millis) -> Option<Millis> {
        let d = self.drain.as_ref()?;
        if d.queue.is_empty() {
            Some(d.deadline)
        } else {
            Some(now.saturating_add(PACE_MS))
        }
    }

    /// Sends the Kicks the rate allows by `now`; `Some(true)` once the
    /// shard is done (no connection left, or the deadline passed).
    pub(super) fn drain_step(&mut self, now: Millis) -> Option<bool> {
        let d = self.drain.as_mut()?;
        if self.conns.is_empty() {
            return Some(true);
        }
        if now >= d.deadline {
            tracing::warn!(
                shard = self.index,
                left = self.conns.len(),
                "drain deadline passed; exiting with sessions open"
            );
            return Some(true);
        }
        let cfg = &self.settings.config.shutdown;
        let allowed = u64::from(cfg.kick_rate) * now.since(d.started) / 1000 + 1;
        let budget = allowed.saturating_sub(d.kicked);
        let mut batch = Vec::new();
        while (batch.len() as u64) < budget {
            let Some(key) = d.queue.pop() else {
                break;
            };
            batch.push(key);
        }
        d.kicked += batch.len() as u64;
        let reconnect = cfg.reconnect.clone();
        let retry_after = cfg.retry_after_ms;
        for key in batch {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                continue;
            };
            if conn.has(flags::CLOSING) {
                continue;
            }
            conn.session.kick(
                KickCode::GoingAway,
                "server shutting down",
                &reconnect,
                retry_after,
                &mut self.out,
            );
            self.handle_output(now, key);
        }
        Some(false)
    }
}

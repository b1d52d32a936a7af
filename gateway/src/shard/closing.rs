//! The close sequence of a client connection:
//!
//! 1. [`Shard::begin_close`]: no more input is processed; the frames still
//!    queued (a final Error or Kick) are flushed, for at most
//!    `protocol.close_linger_ms`.
//! 2. Shutdown(SHUT_WR): our FIN; then wait for the peer's, again for at
//!    most `protocol.close_linger_ms`, so it reads the last frame before
//!    the socket goes (a close with unread input would reset it).
//! 3. Close of the direct descriptor, then the slot is freed once every
//!    operation of the connection has completed.
//!
//! The close is the last operation on a direct-descriptor slot: the kernel
//! hands the slot to the next accepted connection as soon as it completes.
//! So it is submitted only when no send and no shutdown of the connection
//! is in flight (io_uring runs a shutdown in a worker thread that looks the
//! slot up only when it runs). Every operation carries the connection's
//! generation in its tag, and a completion or a cancellation is matched on
//! it, so nothing of one connection ever acts on the next in its slot.

use io_uring::{opcode, types};
use protocol::time::Millis;
use slab::Slab;

use super::Shard;
use super::conn::{Conn, flags};
use crate::uring::op::{OpKind, OpTag};

/// The connection `tag` was submitted for, if it is still in its slot
/// (not a later connection that reuses the slot).
pub(super) fn live(conns: &mut Slab<Conn>, tag: OpTag) -> Option<&mut Conn> {
    conns
        .get_mut(tag.index as usize)
        .filter(|c| tag.is_for(c.generation))
}

impl Shard {
    /// How long each closing step may take.
    fn close_linger_ms(&self) -> u32 {
        self.settings.config.protocol.close_linger_ms
    }

    /// Starts closing `key`: no more input is processed; queued output is
    /// flushed, then the socket is shut down and closed.
    pub(super) fn begin_close(&mut self, now: Millis, key: u32) {
        let linger = self.close_linger_ms();
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.has(flags::CLOSING) {
            return;
        }
        conn.set(flags::CLOSING);
        conn.set_close_timeout(now, linger);
        if conn.has(flags::IN_HANDSHAKE) {
            conn.clear(flags::IN_HANDSHAKE);
            self.handshakes -= 1;
        }
        if !conn.outbound.in_flight() && conn.outbound.is_empty() {
            self.shutdown_or_close(now, key);
        } else {
            self.flush(key);
        }
        self.arm_timer(now, key);
    }

    /// After the last byte left: FIN and linger for the peer's EOF (so it
    /// reads a final Error or Kick), or close at once if the peer is gone.
    pub(super) fn shutdown_or_close(&mut self, now: Millis, key: u32) {
        let linger = self.close_linger_ms();
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.has(flags::SHUTDOWN_SENT) || conn.has(flags::CLOSE_WANTED) {
            return;
        }
        if conn.has(flags::PEER_EOF) || !conn.has(flags::RECV_ARMED) || linger == 0 {
            self.submit_close(key);
            return;
        }
        conn.set(flags::SHUTDOWN_SENT | flags::SHUTDOWN_IN_FLIGHT);
        conn.set_close_timeout(now, linger);
        let entry = opcode::Shutdown::new(types::Fixed(conn.fd), libc::SHUT_WR)
            .build()
            .user_data(OpTag::of(OpKind::Shutdown, key, conn.generation).encode());
        self.push(entry);
        self.arm_timer(now, key);
    }

    /// The shutdown of `tag`'s connection completed: the close may follow.
    pub(super) fn on_shutdown(&mut self, tag: OpTag) {
        let key = tag.index;
        let Some(conn) = live(&mut self.conns, tag) else {
            return;
        };
        conn.clear(flags::SHUTDOWN_IN_FLIGHT);
        self.submit_close_if_clear(key);
        self.try_finish(key);
    }

    /// Decides to close `key` now: nothing more is sent, the receive and
    /// any send in flight are cancelled, and the close of the descriptor
    /// follows once they can no longer look up its slot.
    pub(super) fn submit_close(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.has(flags::CLOSE_WANTED) {
            return;
        }
        conn.set(flags::CLOSE_WANTED | flags::CLOSING);
        let generation = conn.generation;
        let recv_armed = conn.has(flags::RECV_ARMED);
        let send_in_flight = conn.outbound.in_flight();
        for (armed, kind) in [(recv_armed, OpKind::Recv), (send_in_flight, OpKind::Send)] {
            if armed {
                let cancel = opcode::AsyncCancel::new(OpTag::of(kind, key, generation).encode())
                    .build()
                    .user_data(OpTag::of(OpKind::Cancel, key, generation).encode());
                self.push(cancel);
            }
        }
        self.submit_close_if_clear(key);
    }

    /// Submits the close of `key`'s descriptor once it is wanted and no
    /// send or shutdown of it is in flight.
    pub(super) fn submit_close_if_clear(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if !conn.may_submit_close() {
            return;
        }
        conn.set(flags::CLOSE_SENT);
        let close = opcode::Close::new(types::Fixed(conn.fd))
            .build()
            .user_data(OpTag::of(OpKind::Close, key, conn.generation).encode());
        self.push(close);
    }

    /// The close of `tag`'s descriptor completed.
    pub(super) fn on_close(&mut self, tag: OpTag) {
        let Some(conn) = live(&mut self.conns, tag) else {
            return;
        };
        conn.set(flags::CLOSE_DONE);
        self.try_finish(tag.index);
    }

    /// Frees `key`'s slot once nothing of it is in flight any more.
    pub(super) fn try_finish(&mut self, key: u32) {
        if !self.conns.get(key as usize).is_some_and(Conn::is_finished) {
            return;
        }
        let mut conn = self.conns.remove(key as usize);
        self.wheel.cancel(key);
        let now = self.clock.now();
        self.session_finished(now, key, &conn);
        let left = conn.outbound.queued_bytes();
        conn.outbound.clear(&mut self.queues);
        self.account_queued(left, conn.outbound.queued_bytes());
        self.admission.release(key);
        self.presence_gone(now, key, conn.generation);
    }

    /// Keeps the queued-bytes gauge equal to the bytes in the queues: every
    /// change to a connection's queue goes through here with its size
    /// before and after.
    pub(super) fn account_queued(&mut self, before: u32, after: u32) {
        let gauge = &mut self.stats.outbound_queued_bytes;
        *gauge = (*gauge + u64::from(after)).saturating_sub(u64::from(before));
    }
}

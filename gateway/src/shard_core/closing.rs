//! The close sequence of a client connection:
//!
//! 1. [`ShardCore::begin_close`]: no more input is processed; the frames still
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

use protocol::time::Millis;
use slab::Slab;

use super::conn::{Conn, flags};
use super::{ShardCore, StreamOpKind, Time};
use crate::stream::{Pending, same_generation};

/// Connection (key, generation), if it is still in its slot (not a later
/// connection that reuses the slot). Generations are compared in the 24
/// bits a driver's operation tag carries.
pub(super) fn live(conns: &mut Slab<Conn>, key: u32, generation: u32) -> Option<&mut Conn> {
    conns
        .get_mut(key as usize)
        .filter(|c| same_generation(c.generation, generation))
}

impl ShardCore {
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
        if conn.has(flags::TLS) {
            // A close_notify goes after the last frame, before our FIN.
            self.tls_close_notify(now, key);
        }
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
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
        if conn.has(flags::SHUTDOWN_SENT) || conn.life.close_wanted() {
            return;
        }
        if conn.life.is_peer_closed() || !conn.life.in_flight(Pending::Recv) || linger == 0 {
            self.submit_close(key);
            return;
        }
        conn.set(flags::SHUTDOWN_SENT);
        conn.life.start(Pending::Shutdown);
        conn.set_close_timeout(now, linger);
        self.stream_op(key, StreamOpKind::Shutdown);
        self.arm_timer(now, key);
    }

    /// The shutdown of (key, generation) completed: the close may follow.
    pub fn on_shutdown_done(&mut self, t: Time, key: u32, generation: u32) {
        self.at(t);
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        conn.life.finish(Pending::Shutdown);
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
        if !conn.life.want_close() {
            return;
        }
        conn.set(flags::CLOSING);
        let recv_armed = conn.life.in_flight(Pending::Recv);
        let send_in_flight = conn.life.in_flight(Pending::Send);
        if recv_armed {
            self.stream_op(key, StreamOpKind::CancelRecv);
        }
        if send_in_flight {
            self.stream_op(key, StreamOpKind::CancelSend);
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
        conn.life.close_sent();
        self.stream_op(key, StreamOpKind::Close);
    }

    /// The close of (key, generation)'s stream completed.
    pub fn on_close_done(&mut self, t: Time, key: u32, generation: u32) {
        self.at(t);
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        conn.life.close_done();
        self.try_finish(key);
    }

    /// Frees `key`'s slot once nothing of it is in flight any more.
    pub(super) fn try_finish(&mut self, key: u32) {
        if !self.conns.get(key as usize).is_some_and(Conn::is_finished) {
            return;
        }
        let parked = self.park_if_resumable(self.now, key);
        let mut conn = self.conns.remove(key as usize);
        self.wheel.cancel(key);
        self.ws.forget(key);
        self.tls.forget(key);
        self.parked.forget(key);
        self.mqtt_sessions.forget(key);
        self.session_finished(key, &conn);
        let left = conn.outbound.queued_bytes();
        conn.outbound.clear(&mut self.queues);
        self.account_queued(left, conn.outbound.queued_bytes());
        self.admission.release(key);
        if !parked {
            self.presence_gone(key, conn.generation);
        }
    }

    /// Keeps the queued-bytes gauge equal to the bytes in the queues: every
    /// change to a connection's queue goes through here with its size
    /// before and after.
    pub(super) fn account_queued(&mut self, before: u32, after: u32) {
        let gauge = &mut self.stats.outbound_queued_bytes;
        *gauge = (*gauge + u64::from(after)).saturating_sub(u64::from(before));
    }
}

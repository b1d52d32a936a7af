//! One connection slot of a shard.

use gateway::stream::{Pending, SendBuf, StreamLife};

use super::seen::Seen;
use crate::wire::ClientWire;

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet used.
    Idle,
    /// Socket/bind/connect chain submitted.
    Connecting,
    /// Connected, handshake sent.
    Handshaking,
    /// Session established.
    Established,
    /// Shutdown/close submitted.
    Closing,
    /// Closed for good.
    Dead,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// Life-cycle phase.
    pub phase: Phase,
    /// Incarnation of the slot (bumped on each new connection).
    pub generation: u16,
    /// Protocol state.
    pub wire: Option<ClientWire>,
    /// When the current connection was meant to start, ns on the shard clock.
    pub intended_ns: u64,
    /// Whether this incarnation is a churn reconnect.
    pub is_reconnect: bool,
    /// Reconnect once the close completes.
    pub reconnect_after_close: bool,
    /// Bytes being sent (stable until the Send completes) and those
    /// written meanwhile (the gateway's write side, `gateway::stream`).
    pub send: SendBuf,
    /// The receive and the send in flight (the gateway's stream
    /// lifecycle; the slot's phase is [`Conn::phase`]).
    pub life: StreamLife,
    /// Stamped sequences received, for duplicate detection.
    pub seen: Seen,
}

impl Conn {
    /// An unused slot.
    #[must_use]
    pub fn idle() -> Self {
        Self {
            phase: Phase::Idle,
            generation: 0,
            wire: None,
            intended_ns: 0,
            is_reconnect: false,
            reconnect_after_close: false,
            send: SendBuf::default(),
            life: StreamLife::default(),
            seen: Seen::Nothing,
        }
    }

    /// Marks sequence `seq` seen; `false` if it was already (a duplicate).
    pub fn mark_seen(&mut self, seq: u64, expected: u64) -> bool {
        self.seen.mark(seq, expected)
    }

    /// Appends bytes to send; returns whether a Send must be submitted now.
    pub fn enqueue(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        self.send.writer().extend_from_slice(bytes);
        !self.life.in_flight(Pending::Send)
    }

    /// After a send of `n` bytes completed: whether more must be sent now
    /// (the rest of the bytes, or what was queued meanwhile).
    pub fn sent_some(&mut self, n: usize) -> bool {
        self.life.finish(Pending::Send);
        if self.send.sent(n) {
            // Idle connections keep no send buffer.
            self.send.shrink(0);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_queue_partial_and_queued() {
        let mut c = Conn::idle();
        assert!(c.enqueue(b"hello"));
        assert_eq!(c.send.to_send(), Some(&b"hello"[..]));
        c.life.start(Pending::Send);
        assert!(!c.enqueue(b"world"));
        assert!(c.sent_some(2)); // partial: "llo" left
        assert_eq!(c.send.to_send(), Some(&b"llo"[..]));
        c.life.start(Pending::Send);
        assert!(c.sent_some(3)); // queued "world" moves up
        assert_eq!(c.send.to_send(), Some(&b"world"[..]));
        c.life.start(Pending::Send);
        assert!(!c.sent_some(5));
        assert!(c.send.is_empty());
    }

    #[test]
    fn duplicates_detected() {
        let mut c = Conn::idle();
        assert!(c.mark_seen(3, 100));
        assert!(!c.mark_seen(3, 100));
        assert!(c.mark_seen(99, 100));
        assert!(c.mark_seen(500, 100)); // beyond expected: not tracked
    }
}

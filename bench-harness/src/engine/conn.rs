//! One connection slot of a shard.

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
    /// Bytes being sent (stable until the Send completes).
    pub sending: Vec<u8>,
    /// Bytes of `sending` already sent.
    pub sent: usize,
    /// Bytes waiting for the current send to finish.
    pub queued: Vec<u8>,
    /// Whether a Send is in flight.
    pub send_in_flight: bool,
    /// Whether the multishot receive is armed.
    pub recv_armed: bool,
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
            sending: Vec::new(),
            sent: 0,
            queued: Vec::new(),
            send_in_flight: false,
            recv_armed: false,
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
        if self.send_in_flight {
            self.queued.extend_from_slice(bytes);
            false
        } else {
            self.sending.clear();
            self.sending.extend_from_slice(bytes);
            self.sent = 0;
            true
        }
    }

    /// After a send of `n` bytes completed: whether more must be sent now
    /// (the rest of `sending`, or what was queued meanwhile).
    pub fn sent_some(&mut self, n: usize) -> bool {
        self.sent += n;
        if self.sent < self.sending.len() {
            return true;
        }
        if self.queued.is_empty() {
            // Idle connections keep no send buffer.
            self.sending = Vec::new();
            self.sent = 0;
            return false;
        }
        std::mem::swap(&mut self.sending, &mut self.queued);
        self.queued.clear();
        self.sent = 0;
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
        c.send_in_flight = true;
        assert!(!c.enqueue(b"world"));
        assert!(c.sent_some(2)); // partial: "llo" left
        assert_eq!(&c.sending[c.sent..], b"llo");
        assert!(c.sent_some(3)); // queued "world" moves up
        assert_eq!(c.sending, b"world");
        assert!(!c.sent_some(5));
        assert!(c.sending.is_empty() && c.queued.is_empty());
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

//! The life of one stream's operations, shared by every kind of
//! connection: client connections (decided in the shard core), control and
//! backend connections (in the driver), and the load harness's.
//!
//! Two rules hold for all of them:
//! - an operation is started only when none of its kind is in flight, and
//!   never once the close is wanted;
//! - the close is the stream's last operation: it is submitted only when
//!   the operations that could still use the descriptor have completed,
//!   and the slot is freed only when the close and every operation have
//!   completed ([`StreamLife::is_finished`]).
//!
//! [`SendBuf`] is the matching write side: the bytes of the send in flight
//! stay put until it completes, partial sends resume where they stopped,
//! and bytes written meanwhile wait behind it.

/// Bits of a connection's generation that name it in an operation: a
/// driver may keep only these (an io_uring tag packs the op kind, the
/// key and 24 bits of generation into 64 bits of user data).
pub const GENERATION_BITS: u32 = 24;

/// Whether generations `a` and `b` are the same on the bits an operation
/// carries ([`GENERATION_BITS`]).
pub fn same_generation(a: u32, b: u32) -> bool {
    let mask = (1u32 << GENERATION_BITS) - 1;
    a & mask == b & mask
}

/// An operation a stream can have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Pending {
    /// A receive (single-shot or multishot).
    Recv = 1,
    /// A send.
    Send = 2,
    /// A shutdown of the write side.
    Shutdown = 4,
    /// A connect.
    Connect = 8,
}

const CLOSE_WANTED: u8 = 16;
const CLOSE_SENT: u8 = 32;
const CLOSE_DONE: u8 = 64;
const PEER_EOF: u8 = 128;

/// Which operations are in flight, and where the close is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamLife {
    bits: u8,
}

impl StreamLife {
    /// Marks `op` started; false (and nothing marked) when one is already
    /// in flight or the close is wanted.
    pub fn start(&mut self, op: Pending) -> bool {
        if self.bits & (op as u8 | CLOSE_WANTED) != 0 {
            return false;
        }
        self.bits |= op as u8;
        true
    }

    /// Marks `op` completed; false when none was in flight (a completion
    /// that is not this stream's).
    pub fn finish(&mut self, op: Pending) -> bool {
        let was = self.bits & op as u8 != 0;
        self.bits &= !(op as u8);
        was
    }

    /// Whether `op` is in flight.
    pub fn in_flight(&self, op: Pending) -> bool {
        self.bits & op as u8 != 0
    }

    /// Whether any operation is in flight.
    pub fn busy(&self) -> bool {
        self.bits & 0x0f != 0
    }

    /// Asks for the close; false if it was asked for already.
    pub fn want_close(&mut self) -> bool {
        let first = self.bits & CLOSE_WANTED == 0;
        self.bits |= CLOSE_WANTED;
        first
    }

    /// Whether the close is wanted (no operation may start).
    pub fn close_wanted(&self) -> bool {
        self.bits & CLOSE_WANTED != 0
    }

    /// Whether the close may be submitted now: wanted, not submitted yet,
    /// and nothing in flight but the operations in `ignoring` (ones that
    /// hold their own reference to the file, such as a cancelled receive).
    pub fn may_close(&self, ignoring: &[Pending]) -> bool {
        let ignored = ignoring.iter().fold(0, |m, op| m | *op as u8);
        self.bits & CLOSE_WANTED != 0
            && self.bits & CLOSE_SENT == 0
            && self.bits & 0x0f & !ignored == 0
    }

    /// Marks the close submitted.
    pub fn close_sent(&mut self) {
        self.bits |= CLOSE_WANTED | CLOSE_SENT;
    }

    /// Whether the close was submitted.
    pub fn is_close_sent(&self) -> bool {
        self.bits & CLOSE_SENT != 0
    }

    /// Marks the close completed.
    pub fn close_done(&mut self) {
        self.bits |= CLOSE_DONE;
    }

    /// Whether the slot can be freed: closed, and nothing in flight.
    pub fn is_finished(&self) -> bool {
        self.bits & CLOSE_DONE != 0 && !self.busy()
    }

    /// Notes that the peer closed its side (EOF seen).
    pub fn peer_closed(&mut self) {
        self.bits |= PEER_EOF;
    }

    /// Whether the peer closed its side.
    pub fn is_peer_closed(&self) -> bool {
        self.bits & PEER_EOF != 0
    }
}

/// The write side of a stream: the bytes being sent, how far, and what
/// waits behind them.
#[derive(Debug, Default)]
pub struct SendBuf {
    sending: Vec<u8>,
    sent: usize,
    queued: Vec<u8>,
}

impl SendBuf {
    /// Where bytes to send are written: behind the bytes being sent.
    pub fn writer(&mut self) -> &mut Vec<u8> {
        if self.sending.is_empty() {
            &mut self.sending
        } else {
            &mut self.queued
        }
    }

    /// The bytes the next send carries (the rest of the current bytes, or
    /// what waited), `None` when nothing is to be sent. Only one send may
    /// be in flight: the caller marks it ([`Pending::Send`]) and the bytes
    /// stay put until [`SendBuf::sent`].
    pub fn to_send(&mut self) -> Option<&[u8]> {
        if self.sent >= self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.queued);
        }
        (!self.sending.is_empty()).then(|| &self.sending[self.sent..])
    }

    /// The bytes of the send in flight, as [`SendBuf::to_send`] gave them
    /// (empty when none is): what a driver hands the kernel.
    pub fn in_flight(&self) -> &[u8] {
        self.sending.get(self.sent..).unwrap_or_default()
    }

    /// A send of `n` bytes completed; true when nothing is left to send.
    pub fn sent(&mut self, n: usize) -> bool {
        self.sent = (self.sent + n).min(self.sending.len());
        if self.sent >= self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.queued);
        }
        self.sending.is_empty()
    }

    /// Bytes not sent yet.
    pub fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.queued.len()
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.unsent() == 0
    }

    /// Frees buffers grown past `keep` bytes once they are empty.
    pub fn shrink(&mut self, keep: usize) {
        for buf in [&mut self.sending, &mut self.queued] {
            if buf.is_empty() && buf.capacity() > keep {
                *buf = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_starts_once_and_never_after_the_close_is_wanted() {
        let mut s = StreamLife::default();
        assert!(s.start(Pending::Recv));
        assert!(!s.start(Pending::Recv), "one receive at a time");
        assert!(s.start(Pending::Send));
        assert!(s.want_close());
        assert!(!s.want_close());
        assert!(!s.start(Pending::Shutdown), "nothing starts once closing");
        assert!(s.finish(Pending::Send));
        assert!(!s.finish(Pending::Send), "not in flight any more");
    }

    #[test]
    fn the_close_waits_for_what_could_still_use_the_descriptor() {
        let mut s = StreamLife::default();
        s.start(Pending::Recv);
        s.start(Pending::Shutdown);
        s.want_close();
        assert!(!s.may_close(&[Pending::Recv]), "the shutdown is in flight");
        s.finish(Pending::Shutdown);
        assert!(s.may_close(&[Pending::Recv]));
        assert!(!s.may_close(&[]), "the receive too, when it counts");
        s.close_sent();
        assert!(!s.may_close(&[Pending::Recv]), "submitted once");
        s.close_done();
        assert!(!s.is_finished(), "the receive has not completed");
        s.finish(Pending::Recv);
        assert!(s.is_finished());
    }

    #[test]
    fn partial_sends_resume_and_later_bytes_wait_behind() {
        let mut b = SendBuf::default();
        b.writer().extend_from_slice(b"hello");
        assert_eq!(b.to_send(), Some(&b"hello"[..]));
        b.writer().extend_from_slice(b" world");
        assert!(!b.sent(2));
        assert_eq!(b.to_send(), Some(&b"llo"[..]));
        assert!(!b.sent(3), "the queued bytes are next");
        assert_eq!(b.to_send(), Some(&b" world"[..]));
        assert_eq!(b.unsent(), 6);
        assert!(b.sent(6));
        assert!(b.is_empty());
        assert_eq!(b.to_send(), None);
    }
}

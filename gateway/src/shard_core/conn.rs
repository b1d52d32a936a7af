//! One client connection as its shard holds it: the protocol session, the
//! direct descriptor, the outbound queue and the bookkeeping the close
//! sequence needs. Kept small: a shard holds hundreds of thousands.

use protocol::time::Millis;

use super::outbound::Outbound;
use super::session::Session;
use super::transport::Transport;
use crate::stream::{Pending, StreamLife};

/// The core's own flags of a connection (bit set). What is in flight on
/// the stream, and where its close is, is [`Conn::life`].
pub mod flags {
    /// The handshake is still counted against `max_handshakes`.
    pub const IN_HANDSHAKE: u8 = 1;
    /// Closing: no more input is processed; flush, then shut down.
    pub const CLOSING: u8 = 2;
    /// Shutdown(SHUT_WR) submitted; lingering for the peer's EOF.
    pub const SHUTDOWN_SENT: u8 = 4;
    /// The receive must be re-armed (it stopped for lack of buffers).
    pub const NEEDS_REARM: u8 = 8;
    /// Pushes were queued this loop iteration; a send starts at its end,
    /// so frames delivered together leave in one send.
    pub const FLUSH_PENDING: u8 = 16;
    /// The stream is TLS: bytes pass through the connection's record
    /// layer in the shard's TLS table, and queued frames are sealed when
    /// their send starts.
    pub const TLS: u8 = 32;
    /// The session was ended on purpose (Bye, kick, refusal, protocol
    /// error): its connection's end parks nothing for a resume.
    pub const NO_RESUME: u8 = 64;
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The sans-IO protocol session.
    pub session: Session,
    /// Frames waiting to be written.
    pub outbound: Outbound,
    /// The authenticated user, once the handshake succeeded.
    pub user: Option<Box<str>>,
    /// Local ids of the topics the session subscribes to (boxed: one
    /// pointer for the many sessions that subscribe to nothing).
    #[allow(clippy::box_collection)]
    pub topics: Option<Box<Vec<shard_router::topics::TopicId>>>,
    /// Apps declared in the Hello, as bits of the shard's app interner.
    pub apps: u64,
    /// Direct-descriptor slot of the socket.
    pub fd: u32,
    /// Generation: tells this connection from an earlier one in its slot.
    pub generation: u32,
    /// For a connection being closed: when its current closing step (the
    /// flush of its last frames, then the wait for the peer's FIN) times
    /// out, as the low 32 bits of the shard clock's milliseconds (see
    /// [`Conn::deadline`]).
    pub close_by: u32,
    /// Connected since (Unix seconds), once established.
    pub since_s: u32,
    /// Device label (shard's device interner id).
    pub device: u16,
    /// The core's flags (see [`flags`]).
    pub flags: u8,
    /// The stream's operations in flight and its close. The close is the
    /// last operation on a direct-descriptor slot (the kernel may hand the
    /// slot to the next accepted connection as soon as it completes), so it
    /// waits for the send and the shutdown: io_uring runs a shutdown in a
    /// worker thread that looks the slot up only then. A cancelled
    /// receive holds its own reference to the file and does not hold the
    /// close back.
    pub life: StreamLife,
    /// How the stream carries the session (chosen by the listener).
    pub transport: Transport,
}

impl Conn {
    /// A new connection on direct slot `fd`, carried by `transport`.
    pub fn new(session: Session, transport: Transport, fd: u32, generation: u32) -> Self {
        Self {
            session,
            outbound: Outbound::default(),
            user: None,
            topics: None,
            apps: 0,
            since_s: 0,
            device: 0,
            fd,
            generation,
            close_by: 0,
            flags: flags::IN_HANDSHAKE,
            life: StreamLife::default(),
            transport,
        }
    }

    /// Whether flag `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Sets flag `f`.
    pub fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    /// Clears flag `f`.
    pub fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }

    /// Whether the slot can be freed: closed, and no operation in flight.
    pub fn is_finished(&self) -> bool {
        self.life.is_finished()
    }

    /// Whether nothing but the close itself is left to submit: no send and
    /// no shutdown in flight that could still look up the slot.
    pub fn may_submit_close(&self) -> bool {
        self.life.may_close(&[Pending::Recv])
    }

    /// Starts a closing step at `now` that may last `ms` milliseconds.
    pub fn set_close_timeout(&mut self, now: Millis, ms: u32) {
        self.close_by = (now.0 as u32).wrapping_add(ms);
    }

    /// The next time this connection needs the timer: its session deadline,
    /// or, while closing, when the current closing step times out. `now`
    /// places `close_by` (kept in 32 bits) in time: a closing step is
    /// never longer than about 24 days.
    pub fn deadline(&self, settings: &crate::settings::Settings, now: Millis) -> Option<Millis> {
        if self.has(flags::CLOSING) {
            // Once the close is decided, only completions move it on.
            if self.life.close_wanted() {
                return None;
            }
            let left = self.close_by.wrapping_sub(now.0 as u32) as i32;
            return Some(now.saturating_add(u64::try_from(left).unwrap_or(0)));
        }
        self.session.deadline(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn settings() -> Settings {
        Settings::new(tuning::config::GatewayConfig::default(), 2).expect("defaults are valid")
    }

    /// A shard holds hundreds of thousands of these: 104 bytes, as before
    /// the transport and the stream lifecycle were added (they took
    /// padding, not a word).
    #[test]
    fn a_connection_stays_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 104,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    fn closing(now: Millis, ms: u32) -> Conn {
        let mut c = Conn::new(Session::v1(now, &settings()), Transport::RawV1, 0, 0);
        c.set(flags::CLOSING);
        c.set_close_timeout(now, ms);
        c
    }

    #[test]
    fn a_closing_step_times_out_when_set_even_across_the_32_bit_wrap() {
        let cfg = settings();
        for start in [0u64, 5_000, u64::from(u32::MAX) - 50, 1 << 40] {
            let c = closing(Millis(start), 200);
            assert_eq!(c.deadline(&cfg, Millis(start)), Some(Millis(start + 200)));
            assert_eq!(
                c.deadline(&cfg, Millis(start + 150)),
                Some(Millis(start + 200))
            );
            // Past it: due now.
            assert_eq!(
                c.deadline(&cfg, Millis(start + 300)),
                Some(Millis(start + 300))
            );
        }
    }

    #[test]
    fn the_close_waits_for_sends_and_the_shutdown() {
        let mut c = closing(Millis(0), 200);
        assert!(!c.may_submit_close(), "not wanted yet");
        c.life.start(Pending::Recv);
        c.life.start(Pending::Shutdown);
        c.life.want_close();
        assert!(
            !c.may_submit_close(),
            "the shutdown may still look the slot up"
        );
        c.life.finish(Pending::Shutdown);
        assert!(c.may_submit_close(), "a cancelled receive does not hold it");
        c.life.close_sent();
        c.life.close_done();
        assert!(!c.may_submit_close(), "submitted once");
        assert!(!c.is_finished(), "the receive has not completed");
        c.life.finish(Pending::Recv);
        assert!(c.is_finished());
    }
}

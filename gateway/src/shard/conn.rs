//! One client connection as its shard holds it: the protocol session, the
//! direct descriptor, the outbound queue and the bookkeeping the close
//! sequence needs. Kept small: a shard holds hundreds of thousands.

use protocol::server::ServerSession;
use protocol::time::Millis;

use super::outbound::Outbound;

/// Lifecycle flags of a connection (bit set).
pub mod flags {
    /// A multishot receive is armed.
    pub const RECV_ARMED: u16 = 1;
    /// The handshake is still counted against `max_handshakes`.
    pub const IN_HANDSHAKE: u16 = 2;
    /// Closing: no more input is processed; flush, then shut down.
    pub const CLOSING: u16 = 4;
    /// Shutdown(SHUT_WR) submitted; lingering for the peer's EOF.
    pub const SHUTDOWN_SENT: u16 = 8;
    /// Close of the descriptor submitted.
    pub const CLOSE_SENT: u16 = 16;
    /// Close of the descriptor completed.
    pub const CLOSE_DONE: u16 = 32;
    /// The peer closed its side (EOF seen).
    pub const PEER_EOF: u16 = 64;
    /// The receive must be re-armed (it stopped for lack of buffers).
    pub const NEEDS_REARM: u16 = 128;
    /// Pushes were queued this loop iteration; a send starts at its end,
    /// so frames delivered together leave in one send.
    pub const FLUSH_PENDING: u16 = 256;
}

/// How long a closing connection waits for the peer's EOF after our FIN,
/// so an Error frame is read before the socket is torn down.
pub const LINGER_S: u32 = 2;

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The sans-IO protocol session.
    pub session: ServerSession,
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
    /// When lingering ends (whole seconds of the shard clock), for a
    /// connection being closed.
    pub linger_until_s: u32,
    /// Connected since (Unix seconds), once established.
    pub since_s: u32,
    /// Device label (shard's device interner id).
    pub device: u16,
    /// Lifecycle flags (see [`flags`]).
    pub flags: u16,
}

impl Conn {
    /// A new connection on direct slot `fd`.
    pub fn new(session: ServerSession, fd: u32, generation: u32) -> Self {
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
            linger_until_s: 0,
            flags: flags::IN_HANDSHAKE,
        }
    }

    /// Whether flag `f` is set.
    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    /// Sets flag `f`.
    pub fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    /// Clears flag `f`.
    pub fn clear(&mut self, f: u16) {
        self.flags &= !f;
    }

    /// Whether the slot can be freed: closed, and no operation in flight.
    pub fn is_finished(&self) -> bool {
        self.has(flags::CLOSE_DONE) && !self.has(flags::RECV_ARMED) && !self.outbound.in_flight()
    }

    /// The next time this connection needs the timer: its session deadline,
    /// or the end of lingering while closing.
    pub fn deadline(&self, cfg: &protocol::server::ServerConfig) -> Option<Millis> {
        if self.has(flags::CLOSING) {
            return self
                .has(flags::SHUTDOWN_SENT)
                .then_some(Millis(u64::from(self.linger_until_s) * 1000));
        }
        self.session.deadline(cfg)
    }
}

//! The epoll driver of one shard, for hosts where io_uring is not allowed
//! (container seccomp profiles, `kernel.io_uring_disabled`, old kernels).
//! It drives the same [`Shell`] as the io_uring driver: its own epoll
//! instance and SO_REUSEPORT listeners, edge-triggered non-blocking
//! sockets, `accept4` in batches, reads into one shard-owned scratch
//! buffer (an idle connection holds no receive buffer; a partial frame is
//! kept by the core's session, as on io_uring), and sends of the bytes the
//! core lends (already coalesced into one buffer per connection). The
//! mailbox doorbell is an eventfd in the epoll set, and the wait's timeout
//! is the shell's next deadline. A quiet shard batches its wake-ups as on
//! io_uring ([`waiting`]).
//!
//! Readiness is latched per descriptor ([`fds::FdSlot`]): an edge is used
//! up only once a read or write has found the socket empty or full, so a
//! connection whose receive is armed later still gets read.

mod fd_io;
mod fds;
mod poller;
mod streams;
mod waiting;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use protocol::auth::TokenVerifier;
use protocol::time::Millis;
use socket2::Socket;
use tuning::config::ResolvedShard;

use super::ShardError;
use super::shell::{Shell, StreamDone};
use super::sockets::ClientListener;
use super::wake::WakeBatching;
use crate::settings::Settings;
use crate::shard_core::{ListenerKind, Time};
use crate::shared::Shared;
use fds::{FdTable, Token};
use poller::{Poller, READ_EVENTS};

/// Bytes of the shard's scratch buffer, which every client read goes into.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads of one connection per visit before others get their turn.
const READS_PER_VISIT: usize = 8;
/// Connections accepted per listener per loop before other work.
const ACCEPTS_PER_TURN: usize = 256;
/// Events taken per wait.
const EVENTS_PER_WAIT: usize = 1024;
/// Events taken from the urgent set per wait (it only wakes the shard).
const URGENT_EVENTS_PER_WAIT: usize = 16;
/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_PAUSE_MS: u64 = 100;

/// The epoll instance and what the shard watches with it.
pub struct EpollIo {
    poller: Poller,
    /// The client listeners, by the index their token carries.
    listeners: Vec<Listening>,
    control_listener: Socket,
    doorbell: Arc<OwnedFd>,
    fds: FdTable,
    /// Descriptors to visit: readiness came in, or an operation waits on
    /// readiness already latched.
    ready: VecDeque<RawFd>,
    /// Client stream operations that ended at once.
    stream_done: Vec<StreamDone>,
    /// Backend connects in progress: descriptor, its `seq`, deadline.
    connects: Vec<(RawFd, u32, Millis)>,
    /// Every client read lands here first.
    scratch: Box<[u8]>,
    /// `now` of the current loop (operations that start a timeout read it).
    now: Millis,
    /// The control listener's accepts.
    control_accepts: Accepts,
    events: Vec<libc::epoll_event>,
    /// The descriptors whose input ends a batched wait (see [`waiting`]).
    urgent: Poller,
    /// What the urgent set reported (only that it woke matters).
    urgent_events: Vec<libc::epoll_event>,
}

/// A client listener of the shard and its accepting.
struct Listening {
    /// The socket (taken by a drain).
    socket: Option<Socket>,
    /// What it speaks.
    kind: ListenerKind,
    accepts: Accepts,
}

/// One listener's accepting: whether connections may be waiting, and a
/// pause after the process ran out of descriptors (the listener stays
/// readable, so accepting at once again would spin).
#[derive(Debug, Clone, Copy)]
struct Accepts {
    ready: bool,
    paused_until: Option<Millis>,
}

impl Accepts {
    /// Whether accepting should be tried at `now`.
    fn due(&self, now: Millis) -> bool {
        self.ready && self.paused_until.is_none_or(|at| now >= at)
    }

    /// Whether accepting is to be tried without waiting for an event.
    fn busy(&self) -> bool {
        self.ready && self.paused_until.is_none()
    }

    /// After an accept failed with `errno`: pause on exhaustion, else stop
    /// until the next event.
    fn failed(&mut self, now: Millis, errno: i32) {
        if matches!(
            errno,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            self.paused_until = Some(now.saturating_add(ACCEPT_PAUSE_MS));
        } else {
            self.ready = false;
        }
    }
}

/// One shard on epoll.
pub struct Shard {
    io: EpollIo,
    shell: Shell,
    shard_cfg: ResolvedShard,
    wake: WakeBatching,
}

impl Shard {
    /// Builds shard `index` on its own epoll instance; the listeners are
    /// made by the caller (bound and listening).
    pub fn new(
        index: usize,
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        verifier: Arc<dyn TokenVerifier + Send + Sync>,
        listeners: Vec<ClientListener>,
        control_listener: Socket,
    ) -> Result<Self, ShardError> {
        let poll_err = |source| ShardError::Poller {
            shard: index,
            source,
        };
        let shard_cfg = settings.shards[index].clone();
        let poller = Poller::new().map_err(poll_err)?;
        control_listener.set_nonblocking(true).map_err(poll_err)?;
        let doorbell = shared.doorbells[index].clone();
        let mut urgent_fds = vec![doorbell.as_raw_fd(), control_listener.as_raw_fd()];
        for (n, l) in listeners.iter().enumerate() {
            l.socket.set_nonblocking(true).map_err(poll_err)?;
            let n = u8::try_from(n)
                .map_err(|_| poll_err(std::io::Error::other("too many listeners")))?;
            poller
                .add(
                    l.socket.as_raw_fd(),
                    READ_EVENTS,
                    Token::Listener(n).encode(),
                )
                .map_err(poll_err)?;
            urgent_fds.push(l.socket.as_raw_fd());
        }
        poller
            .add(
                control_listener.as_raw_fd(),
                READ_EVENTS,
                Token::ControlListener.encode(),
            )
            .map_err(poll_err)?;
        poller
            .add(doorbell.as_raw_fd(), READ_EVENTS, Token::Doorbell.encode())
            .map_err(poll_err)?;
        let urgent = waiting::urgent_set(&urgent_fds).map_err(|source| ShardError::Urgent {
            shard: index,
            source,
        })?;
        let shell = Shell::build(index, &settings, shared, verifier)?;
        let wake = WakeBatching::new(
            shard_cfg.settings.idle_batch_ms,
            shard_cfg.settings.idle_batch_after_ms,
            true,
            EVENTS_PER_WAIT as u32,
            shell.clock.now(),
        );
        let io = EpollIo {
            poller,
            listeners: listeners
                .into_iter()
                .map(|l| Listening {
                    socket: Some(l.socket),
                    kind: l.kind,
                    accepts: Accepts {
                        ready: true,
                        paused_until: None,
                    },
                })
                .collect(),
            control_listener,
            doorbell,
            fds: FdTable::default(),
            ready: VecDeque::new(),
            stream_done: Vec::new(),
            connects: Vec::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            now: shell.clock.now(),
            control_accepts: Accepts {
                ready: true,
                paused_until: None,
            },
            events: Vec::with_capacity(EVENTS_PER_WAIT),
            urgent,
            urgent_events: Vec::with_capacity(URGENT_EVENTS_PER_WAIT),
        };
        Ok(Self {
            io,
            shell,
            shard_cfg,
            wake,
        })
    }

    /// Runs the shard until it has drained after a shutdown request.
    pub fn run(mut self) -> Result<(), ShardError> {
        self.shell.publish();
        tracing::info!(
            shard = self.shell.index,
            cpu = ?self.shard_cfg.cpu,
            driver = "epoll",
            idle_wake_batching = self.wake.is_enabled(),
            max_connections = self.shard_cfg.settings.max_connections,
            "shard running"
        );
        loop {
            self.wait()?;
            let t = self.shell.clock.time();
            self.io.now = t.now;
            self.take_events(t);
            for l in 0..self.io.listeners.len() {
                self.accept_clients(t, l);
            }
            self.accept_control(t);
            self.visit_ready(t);
            self.expire_connects(t);
            self.shell.settle(&mut self.io, t);
            self.shell.turn(&mut self.io, t);
            if self.shell.end_turn(&mut self.io, t) {
                break;
            }
        }
        self.shell.publish();
        tracing::info!(shard = self.shell.index, "shard stopped");
        Ok(())
    }

    /// Latches the readiness the wait reported and lists what to visit.
    fn take_events(&mut self, t: Time) {
        let events = std::mem::take(&mut self.io.events);
        for ev in &events {
            let flags = ev.events;
            match Token::decode(ev.u64) {
                Some(Token::Listener(n)) => {
                    self.wake.note_busy(t.now);
                    if let Some(l) = self.io.listeners.get_mut(usize::from(n)) {
                        l.accepts.ready = true;
                    }
                }
                Some(Token::ControlListener) => {
                    self.wake.note_busy(t.now);
                    self.io.control_accepts.ready = true;
                }
                Some(Token::Doorbell) => {
                    self.wake.note_busy(t.now);
                    self.ring_doorbell(t);
                }
                Some(Token::Fd(fd, seq)) => {
                    let Some(slot) = self.io.fds.current(fd, seq) else {
                        continue;
                    };
                    if slot.owner != fds::Owner::Client {
                        self.wake.note_busy(t.now);
                    }
                    let hup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
                    if flags & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | hup) != 0 {
                        slot.readable = true;
                    }
                    if flags & (libc::EPOLLRDHUP as u32 | hup) != 0 {
                        slot.peer_closed = true;
                    }
                    if flags & (libc::EPOLLOUT as u32 | hup) != 0 {
                        slot.writable = true;
                    }
                    if !slot.queued {
                        slot.queued = true;
                        self.io.ready.push_back(fd);
                    }
                }
                None => {}
            }
        }
        self.io.events = events;
    }

    /// The doorbell rang: mail (read every turn anyway) or a shutdown.
    fn ring_doorbell(&mut self, t: Time) {
        let mut buf = 0u64;
        // SAFETY: reading 8 bytes into a live u64 from our eventfd; it is
        // readable (its event came in), so this does not block.
        unsafe {
            libc::read(
                self.io.doorbell.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                8,
            )
        };
        if self.shell.shared.draining.load(Ordering::Acquire) {
            self.shell.core.on_shutdown_requested(t);
        }
    }

    /// Accepts client connections on listener `l`, a batch per turn.
    fn accept_clients(&mut self, t: Time, l: usize) {
        let Some(listening) = self.io.listeners.get_mut(l) else {
            return;
        };
        if !listening.accepts.due(t.now) {
            return;
        }
        listening.accepts.paused_until = None;
        let Some(listener) = &listening.socket else {
            listening.accepts.ready = false;
            return;
        };
        let (lfd, kind) = (listener.as_raw_fd(), listening.kind);
        for _ in 0..ACCEPTS_PER_TURN {
            match accept(lfd) {
                Ok((fd, peer)) => {
                    if let Err(e) = self.io.watch_new(fd, fds::Owner::Client) {
                        tracing::warn!(shard = self.shell.index, "cannot watch a connection: {e}");
                        continue;
                    }
                    let stream = u32::try_from(fd).unwrap_or(u32::MAX);
                    self.shell.core.on_accepted(t, stream, kind, peer);
                }
                Err(libc::EAGAIN) => {
                    if let Some(l) = self.io.listeners.get_mut(l) {
                        l.accepts.ready = false;
                    }
                    return;
                }
                Err(libc::ECONNABORTED | libc::EINTR) => {}
                Err(e) => {
                    self.shell.core.stats_mut().accept_errors += 1;
                    tracing::debug!(
                        shard = self.shell.index,
                        "accept failed: {}",
                        std::io::Error::from_raw_os_error(e)
                    );
                    if let Some(l) = self.io.listeners.get_mut(l) {
                        l.accepts.failed(t.now, e);
                    }
                    return;
                }
            }
        }
    }

    /// Accepts control connections, a batch per turn.
    fn accept_control(&mut self, t: Time) {
        if !self.io.control_accepts.due(t.now) {
            return;
        }
        self.io.control_accepts.paused_until = None;
        let lfd = self.io.control_listener.as_raw_fd();
        for _ in 0..ACCEPTS_PER_TURN {
            match accept(lfd) {
                Ok((fd, _)) => {
                    if self.io.watch_new(fd, fds::Owner::Control).is_err() {
                        continue;
                    }
                    self.shell.control.on_accepted(t.now, fd);
                    self.shell.perform_fd_ops(&mut self.io, t);
                }
                Err(libc::EAGAIN) => {
                    self.io.control_accepts.ready = false;
                    return;
                }
                Err(libc::ECONNABORTED | libc::EINTR) => {}
                Err(e) => {
                    self.io.control_accepts.failed(t.now, e);
                    return;
                }
            }
        }
    }

    /// Visits the descriptors with readiness to use: the reads and writes
    /// waiting on them go on, and what they find becomes inputs.
    fn visit_ready(&mut self, t: Time) {
        for _ in 0..self.io.ready.len() {
            let Some(fd) = self.io.ready.pop_front() else {
                break;
            };
            let Some(slot) = self.io.fds.get_mut(fd) else {
                continue;
            };
            slot.queued = false;
            match slot.owner {
                fds::Owner::Client => self.visit_client(t, fd),
                fds::Owner::Control | fds::Owner::Backend => self.visit_side(t, fd),
                fds::Owner::Free => {}
            }
        }
    }
}

/// One `accept4` (non-blocking, close-on-exec): the descriptor and the
/// peer's IP, or the errno.
fn accept(listener: RawFd) -> Result<(RawFd, Option<std::net::IpAddr>), i32> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: accept4 writes at most `len` bytes of address into `addr`.
    let fd = unsafe {
        libc::accept4(
            listener,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    Ok((fd, crate::driver::sockets::sockaddr_ip(&addr)))
}

/// The calling thread's errno.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_pauses_accepting_instead_of_spinning() {
        let mut a = Accepts {
            ready: true,
            paused_until: None,
        };
        assert!(a.due(Millis(0)) && a.busy());
        a.failed(Millis(10), libc::EMFILE);
        assert!(!a.busy(), "the wait may sleep");
        assert!(!a.due(Millis(10 + ACCEPT_PAUSE_MS - 1)));
        assert!(a.due(Millis(10 + ACCEPT_PAUSE_MS)));
        // Another error: wait for the listener's next event.
        a.paused_until = None;
        a.failed(Millis(20), libc::EINVAL);
        assert!(!a.due(Millis(u64::MAX)) && !a.busy());
    }
}

//! What the shell asks of the epoll driver ([`ShardIo`]), and the control
//! server's and backend client's connections on epoll: their receives read
//! into the buffers they lend, their sends write the bytes they lend, and
//! a backend connect is non-blocking, finished when the socket becomes
//! writable or failed at its deadline. An operation that can end at once
//! does; one that would block waits for readiness.

use std::os::fd::{AsRawFd, RawFd};

use super::fds::{FdSlot, Owner, Token};
use super::streams::{read_raw, try_send};
use super::{EpollIo, Shard, errno, poller};
use crate::backend::Backend;
use crate::control::ControlServer;
use crate::driver::shell::{ShardIo, Side, StreamDone};
use crate::driver::sockets::open_tcp_socket;
use crate::fd_ops::{FdDone, FdOp, FdOpKind};
use crate::shard_core::{ShardCore, StreamOp, Time};

impl ShardIo for EpollIo {
    fn stream_op(&mut self, core: &ShardCore, op: StreamOp) {
        self.client_op(core, op);
    }

    fn take_stream_done(&mut self, into: &mut Vec<StreamDone>) {
        into.append(&mut self.stream_done);
    }

    fn fd_op(
        &mut self,
        side: Side,
        op: FdOp,
        control: &mut ControlServer,
        backend: &mut Backend,
    ) -> Option<FdDone> {
        let FdOp {
            key,
            generation,
            fd,
            kind,
        } = op;
        match kind {
            FdOpKind::Open => return Some(FdDone::Opened(self.open_backend(backend, op))),
            FdOpKind::Discard => {
                // A descriptor no operation used; it was watched since its
                // accept, so its slot is freed (and its number's next use
                // gets a new sequence) with it.
                self.close_fd(fd);
                return None;
            }
            _ => {}
        }
        let slot = self.fds.get_mut(fd)?;
        slot.key = key;
        slot.generation = generation;
        match kind {
            FdOpKind::Connect { timeout_ms } => {
                let addr = backend.connect_addr(key, generation)?;
                // SAFETY: connect with the pool's live address.
                let r = unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) };
                if r == 0 {
                    return Some(FdDone::Connected(Ok(())));
                }
                match errno() {
                    libc::EINPROGRESS => {
                        // Only an edge after this counts as connected (a
                        // fresh socket reports itself writable).
                        slot.writable = false;
                        slot.connecting = true;
                        let deadline = self.now.saturating_add(u64::from(timeout_ms));
                        let seq = slot.seq;
                        self.connects.push((fd, seq, deadline));
                        None
                    }
                    e => Some(FdDone::Connected(Err(e))),
                }
            }
            FdOpKind::Recv { max } => {
                let buf = match side {
                    Side::Control => control.recv_buffer(key, generation),
                    Side::Backend => backend.recv_buffer(key, generation),
                }?;
                // Known empty: wait for the next edge instead of a read
                // that finds nothing.
                let res = if slot.readable {
                    read_into(fd, buf, max)
                } else {
                    None
                };
                match res {
                    Some(res) => {
                        drained_by_short_read(slot, &res, max);
                        Some(FdDone::Received(res))
                    }
                    None => {
                        slot.readable = false;
                        slot.reading = true;
                        slot.recv_max = u16::try_from(max).unwrap_or(u16::MAX);
                        None
                    }
                }
            }
            FdOpKind::Send => {
                let bytes = match side {
                    Side::Control => control.sending(key, generation),
                    Side::Backend => backend.sending(key, generation),
                }?;
                match try_send(fd, bytes) {
                    Some(res) => Some(FdDone::Sent(res)),
                    None => {
                        slot.writable = false;
                        slot.send_pending = true;
                        None
                    }
                }
            }
            FdOpKind::Shutdown => {
                // SAFETY: shutting down a socket its state machine owns.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                // What waits on it ends now: a read finds the end, a write
                // fails.
                slot.readable = true;
                slot.writable = true;
                self.visit_soon(fd);
                None
            }
            FdOpKind::Close => {
                self.close_fd(fd);
                Some(FdDone::Closed)
            }
            FdOpKind::Open | FdOpKind::Discard => None,
        }
    }

    fn stop_accepting(&mut self) {
        for l in &mut self.listeners {
            if let Some(socket) = l.socket.take() {
                self.poller.delete(socket.as_raw_fd());
            }
            l.accepts.ready = false;
        }
    }

    fn submit_now(&mut self) {
        // Sends go out as they are performed.
    }
}

impl EpollIo {
    /// Watches new descriptor `fd` of `owner` (edge-triggered reads,
    /// writes and hang-ups); one that cannot be watched is closed.
    pub(super) fn watch_new(&mut self, fd: RawFd, owner: Owner) -> std::io::Result<()> {
        let seq = self.fds.open(fd, owner);
        let watched = self
            .poller
            .add(fd, poller::STREAM_EVENTS, Token::Fd(fd, seq).encode());
        if watched.is_err() {
            self.close_fd(fd);
        } else if owner != Owner::Client {
            self.watch_urgent(fd);
        }
        watched
    }

    /// A non-blocking socket for backend connection `op`, watched.
    fn open_backend(&mut self, backend: &Backend, op: FdOp) -> std::io::Result<RawFd> {
        let fd = open_tcp_socket(backend.connect_addr(op.key, op.generation), true)?;
        self.watch_new(fd, Owner::Backend)?;
        if let Some(slot) = self.fds.get_mut(fd) {
            slot.key = op.key;
            slot.generation = op.generation;
        }
        Ok(fd)
    }
}

/// Whether `fd` has a peer (its non-blocking connect finished).
fn is_connected(fd: RawFd) -> bool {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `addr`.
    unsafe {
        libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
    }
}

/// One read of at most `max` bytes onto the end of `buf`, into its spare
/// capacity (reserved, not zero-filled: a receive's `max` is large and most
/// reads are short).
fn read_into(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> Option<Result<usize, i32>> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let room = spare.len().min(max);
    // SAFETY: the spare capacity is allocated, ours, and `room` long.
    let res = unsafe { read_raw(fd, spare.as_mut_ptr().cast(), room) };
    if let Some(Ok(n)) = res {
        // SAFETY: the read initialised the first `n` (≤ `room`) spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
    }
    res
}

/// A read of fewer than `max` bytes emptied a stream socket, so the next
/// data is a new edge and the next receive need not try a read that finds
/// nothing (epoll(7)); unless the peer's end was reported, which only a
/// further read finds. Saves a `read` per control request.
fn drained_by_short_read(slot: &mut FdSlot, res: &Result<usize, i32>, max: usize) {
    if matches!(res, Ok(n) if *n > 0 && *n < max) && !slot.peer_closed {
        slot.readable = false;
    }
}

impl Shard {
    /// A control or backend connection with readiness: a connect in
    /// progress finishes, a waiting send goes on, a waiting receive reads.
    pub(super) fn visit_side(&mut self, t: Time, fd: RawFd) {
        let Some(FdSlot {
            owner,
            key,
            generation,
            readable,
            writable,
            reading,
            recv_max,
            send_pending,
            connecting,
            ..
        }) = self.io.fds.get_mut(fd).map(|s| *s)
        else {
            return;
        };
        let side = if owner == Owner::Control {
            Side::Control
        } else {
            Side::Backend
        };
        let mut done = Vec::new();
        if connecting && writable {
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: SO_ERROR into a live int of its size.
            unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if err == 0 && !is_connected(fd) {
                // Not yet: a readiness report from before the connect.
                if let Some(slot) = self.io.fds.get_mut(fd) {
                    slot.writable = false;
                }
            } else {
                self.io.connects.retain(|c| c.0 != fd);
                if let Some(slot) = self.io.fds.get_mut(fd) {
                    slot.connecting = false;
                }
                done.push(FdDone::Connected(if err == 0 { Ok(()) } else { Err(err) }));
            }
        } else if writable && send_pending {
            let bytes = match side {
                Side::Control => self.shell.control.sending(key, generation),
                Side::Backend => self.shell.backend.sending(key, generation),
            };
            let res = bytes.map_or(Some(Err(libc::ECANCELED)), |b| try_send(fd, b));
            if let Some(slot) = self.io.fds.get_mut(fd) {
                match res {
                    Some(res) => {
                        slot.send_pending = false;
                        done.push(FdDone::Sent(res));
                    }
                    None => slot.writable = false,
                }
            }
        }
        if readable && reading {
            let buf = match side {
                Side::Control => self.shell.control.recv_buffer(key, generation),
                Side::Backend => self.shell.backend.recv_buffer(key, generation),
            };
            let res = buf.map_or(Some(Err(libc::ECANCELED)), |b| {
                read_into(fd, b, recv_max as usize)
            });
            if let Some(slot) = self.io.fds.get_mut(fd) {
                match res {
                    Some(res) => {
                        slot.reading = false;
                        drained_by_short_read(slot, &res, recv_max as usize);
                        done.push(FdDone::Received(res));
                    }
                    None => slot.readable = false,
                }
            }
        }
        for d in done {
            self.shell.fd_done(t.now, side, key, generation, d);
        }
        self.shell.perform_fd_ops(&mut self.io, t);
    }

    /// Backend connects past their deadline fail as timed out.
    pub(super) fn expire_connects(&mut self, t: Time) {
        if self.io.connects.iter().all(|c| c.2 > t.now) {
            return;
        }
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.io.connects.drain(..).partition(|c| c.2 <= t.now);
        self.io.connects = waiting;
        for (fd, seq, _) in due {
            let Some(slot) = self.io.fds.current(fd, seq) else {
                continue;
            };
            if !std::mem::take(&mut slot.connecting) {
                continue;
            }
            let (key, generation) = (slot.key, slot.generation);
            let timed_out = FdDone::Connected(Err(libc::ECANCELED));
            self.shell
                .fd_done(t.now, Side::Backend, key, generation, timed_out);
        }
        self.shell.perform_fd_ops(&mut self.io, t);
    }
}

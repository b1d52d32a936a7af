//! Client streams on epoll: the core's stream operations performed on
//! non-blocking sockets, and the reads and writes that readiness lets go
//! on. A write that goes through (or fails) ends at once; one that finds
//! the socket full waits for it to become writable. A receive stays armed
//! until cancelled: each visit reads into the scratch buffer until the
//! socket is empty, at most [`READS_PER_VISIT`] times.

use std::os::fd::RawFd;

use super::fds::FdSlot;
use super::{EpollIo, READS_PER_VISIT, Shard, errno};
use crate::driver::shell::{StreamDone, StreamDoneKind};
use crate::shard_core::{ShardCore, StreamOp, StreamOpKind, Time};

/// One `send` of `bytes` on `fd`: `Some(Ok(n))`, `Some(Err(errno))`, or
/// `None` when the socket is full.
pub(super) fn try_send(fd: RawFd, bytes: &[u8]) -> Option<Result<usize, i32>> {
    loop {
        // SAFETY: sends from a live slice; MSG_NOSIGNAL: no SIGPIPE.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return None,
            e => return Some(Err(e)),
        }
    }
}

/// One `read` into `buf` on `fd`: `Some(Ok(n))` (0: the end),
/// `Some(Err(errno))`, or `None` when nothing is there.
pub(super) fn try_read(fd: RawFd, buf: &mut [u8]) -> Option<Result<usize, i32>> {
    // SAFETY: a live, writable slice of its length.
    unsafe { read_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// [`try_read`] of at most `len` bytes at `at` (memory that need not be
/// initialised); `n` is at most `len`.
///
/// # Safety
/// `at` must be valid for writes of `len` bytes.
pub(super) unsafe fn read_raw(fd: RawFd, at: *mut u8, len: usize) -> Option<Result<usize, i32>> {
    loop {
        // SAFETY: the caller vouches for `len` writable bytes at `at`.
        let n = unsafe { libc::read(fd, at.cast(), len) };
        if n >= 0 {
            return Some(Ok((n as usize).min(len)));
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return None,
            e => return Some(Err(e)),
        }
    }
}

impl EpollIo {
    /// Performs a client stream operation (see the module doc).
    pub(super) fn client_op(&mut self, core: &ShardCore, op: StreamOp) {
        let StreamOp {
            key,
            generation,
            stream,
            kind,
        } = op;
        let fd = RawFd::try_from(stream).unwrap_or(-1);
        let Some(slot) = self.fds.get_mut(fd) else {
            return;
        };
        slot.key = key;
        slot.generation = generation;
        let done = |kind| StreamDone {
            key,
            generation,
            kind,
        };
        match kind {
            StreamOpKind::Recv => {
                slot.reading = true;
                self.visit_soon(fd);
            }
            StreamOpKind::Send => {
                let Some(bytes) = core.sending(key, generation) else {
                    return;
                };
                match try_send(fd, bytes) {
                    Some(res) => {
                        // A short write leaves the rest for the next send;
                        // the core resumes it.
                        let res = res.map_err(|e| -e);
                        self.stream_done.push(done(StreamDoneKind::Sent(res)));
                    }
                    None => {
                        slot.writable = false;
                        slot.send_pending = true;
                    }
                }
            }
            StreamOpKind::Shutdown => {
                // SAFETY: shutting down the write side of a socket we own.
                unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                self.stream_done.push(done(StreamDoneKind::Shutdown));
            }
            StreamOpKind::CancelRecv => {
                if std::mem::take(&mut slot.reading) {
                    self.stream_done.push(done(StreamDoneKind::RecvEnded));
                }
            }
            StreamOpKind::CancelSend => {
                if std::mem::take(&mut slot.send_pending) {
                    let cancelled = StreamDoneKind::Sent(Err(-libc::ECANCELED));
                    self.stream_done.push(done(cancelled));
                }
            }
            StreamOpKind::Close => {
                let reading = slot.reading;
                self.close_fd(fd);
                if reading {
                    self.stream_done.push(done(StreamDoneKind::RecvEnded));
                }
                self.stream_done.push(done(StreamDoneKind::Closed));
            }
        }
    }

    /// Lists `fd` for the next visit (its latched readiness is used then).
    pub(super) fn visit_soon(&mut self, fd: RawFd) {
        if let Some(slot) = self.fds.get_mut(fd)
            && !slot.queued
        {
            slot.queued = true;
            self.ready.push_back(fd);
        }
    }

    /// Stops watching `fd` and closes it.
    pub(super) fn close_fd(&mut self, fd: RawFd) {
        self.poller.delete(fd);
        self.fds.close(fd);
        // SAFETY: closing a descriptor this shard owns; its slot is free,
        // so nothing uses the number until it is handed out again.
        unsafe { libc::close(fd) };
    }
}

impl Shard {
    /// A client stream with readiness: a waiting send goes on, then the
    /// armed receive reads what is there.
    pub(super) fn visit_client(&mut self, t: Time, fd: RawFd) {
        let Some(FdSlot {
            key,
            generation,
            writable,
            send_pending,
            ..
        }) = self.io.fds.get_mut(fd).map(|s| *s)
        else {
            return;
        };
        if writable && send_pending {
            let res = match self.shell.core.sending(key, generation) {
                Some(bytes) => try_send(fd, bytes),
                None => Some(Err(libc::ECANCELED)),
            };
            if let Some(slot) = self.io.fds.get_mut(fd) {
                match res {
                    Some(res) => {
                        slot.send_pending = false;
                        let res = res.map_err(|e| -e);
                        self.shell.core.on_send_done(t, key, generation, res);
                    }
                    None => slot.writable = false,
                }
            }
        }
        for _ in 0..READS_PER_VISIT {
            let Some(slot) = self.io.fds.get_mut(fd) else {
                return;
            };
            if !slot.reading || !slot.readable {
                return;
            }
            match try_read(fd, &mut self.io.scratch) {
                Some(Ok(0)) | Some(Err(_)) => {
                    slot.reading = false;
                    slot.readable = false;
                    self.shell.core.on_recv_ended(t, key, generation);
                    return;
                }
                Some(Ok(n)) => {
                    // A short read emptied the socket: the next data is a
                    // new edge (epoll(7)). Not so once the peer's end was
                    // reported: it may have come with this data, and only a
                    // further read finds it.
                    if n < self.io.scratch.len() && !slot.peer_closed {
                        slot.readable = false;
                    }
                    let data = &self.io.scratch[..n];
                    self.shell.core.on_received(t, key, generation, data, true);
                }
                None => {
                    slot.readable = false;
                    return;
                }
            }
        }
        // Still readable after its share: the rest on the next visit.
        self.io.visit_soon(fd);
    }
}

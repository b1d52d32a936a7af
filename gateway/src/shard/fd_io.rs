//! The control server's and the backend client's operations on ordinary
//! descriptors, performed on the ring, and their completions turned back
//! into those state machines' inputs. The control listener's accept is
//! armed here too: the listener belongs to the driver.

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::Shard;
use crate::fd_ops::{FdDone, FdOp, FdOpKind};
use crate::shard_core::Time;
use crate::uring::entries;
use crate::uring::op::{OpKind, OpTag};

/// Which state machine an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Control,
    Backend,
}

impl Side {
    fn kinds(self) -> [OpKind; 3] {
        match self {
            Side::Control => [
                OpKind::ControlRecv,
                OpKind::ControlSend,
                OpKind::ControlClose,
            ],
            Side::Backend => [
                OpKind::BackendRecv,
                OpKind::BackendSend,
                OpKind::BackendClose,
            ],
        }
    }
}

impl Shard {
    /// Arms one accept on the control listener.
    pub(super) fn arm_control_accept(&mut self) {
        let entry = opcode::Accept::new(
            types::Fd(self.control_listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(OpTag::new(OpKind::ControlAccept, 0).encode());
        self.push(entry);
    }

    /// Performs what the control server and the backend client have
    /// queued, including what performing it leads to.
    pub(super) fn perform_fd_ops(&mut self, t: Time) {
        while self.control.has_ops() || self.backend.has_ops() {
            let mut ops = std::mem::take(&mut self.fd_ops);
            self.control.take_ops(&mut ops);
            let control = ops.len();
            self.backend.take_ops(&mut ops);
            for (i, op) in ops.drain(..).enumerate() {
                let side = if i < control {
                    Side::Control
                } else {
                    Side::Backend
                };
                self.perform_fd_op(t, side, op);
            }
            self.fd_ops = ops;
        }
    }

    fn perform_fd_op(&mut self, t: Time, side: Side, op: FdOp) {
        let FdOp {
            key,
            generation,
            fd,
            kind,
        } = op;
        let [recv, send, close] = side.kinds();
        let entry = match kind {
            FdOpKind::Open => {
                let opened = open_tcp_socket(self.backend.connect_addr(key, generation));
                let stats = self.core.stats_mut();
                let done = FdDone::Opened(opened);
                self.backend.on_done(t.now, stats, key, generation, done);
                return;
            }
            FdOpKind::Connect { timeout_ms } => {
                self.submit_connect(key, generation, fd, timeout_ms);
                return;
            }
            FdOpKind::Recv { max } => {
                let buf = match side {
                    Side::Control => self.control.recv_buffer(key, generation),
                    Side::Backend => self.backend.recv_buffer(key, generation),
                };
                let Some(buf) = buf else {
                    return;
                };
                entries::recv_into_spare(fd, buf, max, OpTag::of(recv, key, generation).encode())
            }
            FdOpKind::Send => {
                let bytes = match side {
                    Side::Control => self.control.sending(key, generation),
                    Side::Backend => self.backend.sending(key, generation),
                };
                let Some(bytes) = bytes else {
                    return;
                };
                entries::send(fd, bytes, OpTag::of(send, key, generation).encode())
            }
            FdOpKind::Shutdown => {
                // SAFETY: shutting down a socket its state machine owns;
                // the operations in flight on it then complete.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                return;
            }
            FdOpKind::Close => opcode::Close::new(types::Fd(fd))
                .build()
                .user_data(OpTag::of(close, key, generation).encode()),
            FdOpKind::Discard => {
                // SAFETY: closing a descriptor no operation ever used.
                unsafe { libc::close(fd) };
                return;
            }
        };
        // SAFETY: receive buffers and sent bytes stay in their
        // connection's slot, unmoved, until the operation completes (the
        // state machines free a slot only after its close completed, and
        // neither grows nor shrinks a buffer while an operation on it is
        // in flight).
        unsafe { self.push_unchecked(std::slice::from_ref(&entry)) };
    }

    /// A backend connect with its timeout, linked, in one piece; submitted
    /// at once so the connect starts without waiting for the loop's wait.
    fn submit_connect(&mut self, key: u32, generation: u32, fd: RawFd, timeout_ms: u32) {
        let Some(addr) = self.backend.connect_addr(key, generation) else {
            return;
        };
        let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(OpTag::of(OpKind::BackendConnect, key, generation).encode());
        let ms = u64::from(timeout_ms);
        // The kernel copies the timespec when the entry is submitted; the
        // box lives in the driver until the next connect's submission.
        *self.connect_timeout = types::Timespec::new()
            .sec(ms / 1000)
            .nsec(((ms % 1000) * 1_000_000) as u32);
        let timeout = opcode::LinkTimeout::new(&*self.connect_timeout)
            .build()
            .user_data(OpTag::of(OpKind::BackendLinkTimeout, key, generation).encode());
        // SAFETY: the address is the pool's boxed endpoint, which lives as
        // long as the client; the timespec is read at submission, below.
        unsafe { self.push_unchecked(&[connect, timeout]) };
        if let Err(e) = self.ring.submit() {
            tracing::warn!(
                shard = self.index,
                "submitting a backend connect failed: {e}"
            );
        }
    }

    /// A completion of a control or backend operation, as an input to its
    /// state machine.
    pub(super) fn on_fd_completion(&mut self, t: Time, tag: OpTag, res: i32) {
        let (now, key, generation) = (t.now, tag.index, tag.generation);
        let len = usize::try_from(res).map_err(|_| -res);
        let (side, done) = match tag.kind {
            OpKind::ControlAccept => {
                self.arm_control_accept();
                if res >= 0 {
                    self.watch_control_conn(res);
                    self.control.on_accepted(now, res);
                }
                self.perform_fd_ops(t);
                return;
            }
            OpKind::ControlRecv => (Side::Control, FdDone::Received(len)),
            OpKind::ControlSend => (Side::Control, FdDone::Sent(len)),
            OpKind::ControlClose => (Side::Control, FdDone::Closed),
            OpKind::BackendConnect => {
                let res = if res < 0 { Err(-res) } else { Ok(()) };
                (Side::Backend, FdDone::Connected(res))
            }
            OpKind::BackendSend => (Side::Backend, FdDone::Sent(len)),
            OpKind::BackendRecv => (Side::Backend, FdDone::Received(len)),
            OpKind::BackendClose => (Side::Backend, FdDone::Closed),
            _ => return,
        };
        if let FdDone::Received(Ok(n)) = done {
            let buf = match side {
                Side::Control => self.control.recv_buffer(key, generation),
                Side::Backend => self.backend.recv_buffer(key, generation),
            };
            filled(buf, n);
        }
        match side {
            Side::Control => self.control.on_done(now, key, generation, done),
            Side::Backend => {
                let stats = self.core.stats_mut();
                self.backend.on_done(now, stats, key, generation, done);
            }
        }
        self.perform_fd_ops(t);
    }
}

/// Takes the `n` bytes a receive wrote into `buf`'s spare capacity into
/// its length.
fn filled(buf: Option<&mut Vec<u8>>, n: usize) {
    if let Some(buf) = buf {
        let n = n.min(buf.capacity() - buf.len());
        // SAFETY: the receive was given `buf`'s spare capacity (see
        // `entries::recv_into_spare`) and the kernel wrote `n` bytes there.
        unsafe { buf.set_len(buf.len() + n) };
    }
}

/// A TCP socket for a backend connection, with TCP_NODELAY.
fn open_tcp_socket(addr: Option<&socket2::SockAddr>) -> std::io::Result<RawFd> {
    let Some(addr) = addr else {
        return Err(std::io::Error::other("no such backend connection"));
    };
    let socket = socket2::Socket::new(addr.domain(), socket2::Type::STREAM, None)?;
    socket.set_tcp_nodelay(true)?;
    Ok(std::os::fd::IntoRawFd::into_raw_fd(socket))
}

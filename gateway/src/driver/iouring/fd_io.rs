//! The control server's and the backend client's operations on ordinary
//! descriptors, performed on the ring, and their completions turned back
//! into those state machines' inputs. The control listener's accept is
//! armed here too: the listener belongs to the driver.

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{RingIo, Shard};
use crate::backend::Backend;
use crate::control::ControlServer;
use crate::driver::shell::Side;
use crate::driver::sockets::open_tcp_socket;
use crate::fd_ops::{FdDone, FdOp, FdOpKind};
use crate::shard_core::Time;
use crate::uring::entries;
use crate::uring::op::{OpKind, OpTag};

/// The op kinds of a side's receives, sends and closes.
fn kinds(side: Side) -> [OpKind; 3] {
    match side {
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

impl RingIo {
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

    /// Performs `op`; an Open ends at once and gives back its socket.
    pub(super) fn perform_fd_op(
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
        let [recv, send, close] = kinds(side);
        let entry = match kind {
            FdOpKind::Open => {
                let opened = open_tcp_socket(backend.connect_addr(key, generation), false);
                return Some(FdDone::Opened(opened));
            }
            FdOpKind::Connect { timeout_ms } => {
                self.submit_connect(backend, key, generation, fd, timeout_ms);
                return None;
            }
            FdOpKind::Recv { max } => {
                let buf = match side {
                    Side::Control => control.recv_buffer(key, generation),
                    Side::Backend => backend.recv_buffer(key, generation),
                }?;
                entries::recv_into_spare(fd, buf, max, OpTag::of(recv, key, generation).encode())
            }
            FdOpKind::Send => {
                let bytes = match side {
                    Side::Control => control.sending(key, generation),
                    Side::Backend => backend.sending(key, generation),
                }?;
                entries::send(fd, bytes, OpTag::of(send, key, generation).encode())
            }
            FdOpKind::Shutdown => {
                // SAFETY: shutting down a socket its state machine owns;
                // the operations in flight on it then complete.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                return None;
            }
            FdOpKind::Close => opcode::Close::new(types::Fd(fd))
                .build()
                .user_data(OpTag::of(close, key, generation).encode()),
            FdOpKind::Discard => {
                // SAFETY: closing a descriptor no operation ever used.
                unsafe { libc::close(fd) };
                return None;
            }
        };
        // SAFETY: receive buffers and sent bytes stay in their
        // connection's slot, unmoved, until the operation completes (the
        // state machines free a slot only after its close completed, and
        // neither grows nor shrinks a buffer while an operation on it is
        // in flight).
        unsafe { self.push_unchecked(std::slice::from_ref(&entry)) };
        None
    }

    /// A backend connect with its timeout, linked, in one piece; submitted
    /// at once so the connect starts without waiting for the loop's wait.
    fn submit_connect(
        &mut self,
        backend: &Backend,
        key: u32,
        generation: u32,
        fd: RawFd,
        timeout_ms: u32,
    ) {
        let Some(addr) = backend.connect_addr(key, generation) else {
            return;
        };
        let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(OpTag::of(OpKind::BackendConnect, key, generation).encode());
        let ms = u64::from(timeout_ms);
        // The kernel copies the timespec when the entry is submitted, at
        // once below. Should that submission fail, the entry waits in the
        // queue and reads the box later: still valid memory, at worst with
        // a later connect's timeout.
        *self.connect_timeout = types::Timespec::new()
            .sec(ms / 1000)
            .nsec(((ms % 1000) * 1_000_000) as u32);
        let timeout = opcode::LinkTimeout::new(&*self.connect_timeout)
            .build()
            .user_data(OpTag::of(OpKind::BackendLinkTimeout, key, generation).encode());
        // SAFETY: the address is the pool's boxed endpoint, which lives as
        // long as the client; the timespec is boxed in the driver.
        unsafe { self.push_unchecked(&[connect, timeout]) };
        if let Err(e) = self.ring.submit() {
            tracing::warn!(
                shard = self.index,
                "submitting a backend connect failed: {e}"
            );
        }
    }
}

impl Shard {
    /// A completion of a control or backend operation, as an input to its
    /// state machine.
    pub(super) fn on_fd_completion(&mut self, t: Time, tag: OpTag, res: i32) {
        let (now, key, generation) = (t.now, tag.index, tag.generation);
        let len = usize::try_from(res).map_err(|_| -res);
        let (side, done) = match tag.kind {
            OpKind::ControlAccept => {
                self.io.arm_control_accept();
                if res >= 0 {
                    self.watch_control_conn(res);
                    self.shell.control.on_accepted(now, res);
                }
                self.shell.perform_fd_ops(&mut self.io, t);
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
                Side::Control => self.shell.control.recv_buffer(key, generation),
                Side::Backend => self.shell.backend.recv_buffer(key, generation),
            };
            filled(buf, n);
        }
        self.shell.fd_done(now, side, key, generation, done);
        self.shell.perform_fd_ops(&mut self.io, t);
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

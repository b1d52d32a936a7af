//! What the shell asks of the ring ([`ShardIo`]): the core's stream
//! operations become SQEs (the only place client SQEs are built), the
//! control server's and backend client's operations too (`fd_io.rs`), a
//! drain cancels the accepts, and answers are submitted at once when asked.

use io_uring::{opcode, types};

use super::{BUF_GROUP, RingIo};
use crate::backend::Backend;
use crate::control::ControlServer;
use crate::driver::shell::{ShardIo, Side, StreamDone};
use crate::fd_ops::{FdDone, FdOp};
use crate::shard_core::{ShardCore, StreamOp, StreamOpKind};
use crate::uring::op::{OpKind, OpTag};

impl ShardIo for RingIo {
    /// The SQE of a client stream operation. Its tag names the connection
    /// and its generation, so the completion is matched to exactly it.
    fn stream_op(&mut self, core: &ShardCore, op: StreamOp) {
        let StreamOp {
            key,
            generation,
            stream,
            kind,
        } = op;
        let fd = types::Fixed(stream);
        let entry = match kind {
            StreamOpKind::Recv => opcode::RecvMulti::new(fd, BUF_GROUP)
                .build()
                .user_data(OpTag::of(OpKind::Recv, key, generation).encode()),
            StreamOpKind::Send => {
                // The bytes stay in the connection's queue, unmoved, until
                // the send's completion (see `outbound`).
                let Some(buf) = core.sending(key, generation) else {
                    return;
                };
                opcode::Send::new(fd, buf.as_ptr(), buf.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(OpTag::of(OpKind::Send, key, generation).encode())
            }
            StreamOpKind::Shutdown => opcode::Shutdown::new(fd, libc::SHUT_WR)
                .build()
                .user_data(OpTag::of(OpKind::Shutdown, key, generation).encode()),
            StreamOpKind::CancelRecv | StreamOpKind::CancelSend => {
                let target = if kind == StreamOpKind::CancelRecv {
                    OpKind::Recv
                } else {
                    OpKind::Send
                };
                opcode::AsyncCancel::new(OpTag::of(target, key, generation).encode())
                    .build()
                    .user_data(OpTag::of(OpKind::Cancel, key, generation).encode())
            }
            StreamOpKind::Close => opcode::Close::new(fd)
                .build()
                .user_data(OpTag::of(OpKind::Close, key, generation).encode()),
        };
        self.push(entry);
    }

    fn take_stream_done(&mut self, _into: &mut Vec<StreamDone>) {
        // Every operation completes on the ring.
    }

    fn fd_op(
        &mut self,
        side: Side,
        op: FdOp,
        control: &mut ControlServer,
        backend: &mut Backend,
    ) -> Option<FdDone> {
        self.perform_fd_op(side, op, control, backend)
    }

    /// A drain began: cancel the accepts and let the listeners go.
    fn stop_accepting(&mut self) {
        let tags: Vec<OpTag> = if self.multishot_accept {
            (0..self.listeners.len())
                .map(|l| OpTag::new(OpKind::AcceptMulti, l as u32))
                .collect()
        } else {
            (0..self.accept_addrs.len())
                .map(|i| OpTag::new(OpKind::AcceptOne, i as u32))
                .collect()
        };
        for tag in tags {
            let cancel = opcode::AsyncCancel::new(tag.encode())
                .build()
                .user_data(OpTag::new(OpKind::Cancel, 0).encode());
            self.push(cancel);
        }
        // The in-flight accepts hold their own reference to each socket.
        self.listeners.clear();
    }

    fn submit_now(&mut self) {
        if let Err(e) = self.ring.submit() {
            tracing::warn!(shard = self.index, "submitting control answers failed: {e}");
        }
    }
}

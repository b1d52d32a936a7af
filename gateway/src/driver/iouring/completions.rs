//! Completions of the ring, turned into the core's inputs (client
//! streams), or handed to the control server and the backend client; and
//! the accepts and the doorbell read the driver keeps armed.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use io_uring::{cqueue, opcode, types};

use super::{ACCEPT_POOL, RingIo, Shard};
use crate::shard_core::Time;
use crate::uring::op::{OpKind, OpTag};

impl Shard {
    pub(super) fn process_completions(&mut self, t: Time) {
        // Completions are copied out first: handling them queues new SQEs.
        loop {
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.io
                    .ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if cqes.is_empty() {
                self.cqes = cqes;
                return;
            }
            for &(user_data, res, flags) in &cqes {
                let Some(tag) = OpTag::decode(user_data) else {
                    continue;
                };
                self.dispatch(t, tag, res, flags);
            }
            // The core's actions of the whole batch, in order: nothing they
            // submit can complete before the next wait.
            self.shell.settle(&mut self.io, t);
            cqes.clear();
            self.cqes = cqes;
        }
    }

    fn dispatch(&mut self, t: Time, tag: OpTag, res: i32, flags: u32) {
        let now = t.now;
        if !tag.kind.is_client_traffic() {
            self.wake.note_busy(now);
        }
        let (key, generation) = (tag.index, tag.generation);
        match tag.kind {
            OpKind::AcceptMulti => {
                let l = tag.index as usize;
                if !cqueue::more(flags) {
                    self.arm_listener(l);
                }
                self.on_accept(t, l, res, None);
            }
            OpKind::AcceptOne => {
                let i = tag.index as usize;
                let peer = (res >= 0)
                    .then(|| {
                        self.io
                            .accept_addrs
                            .get(i)
                            .and_then(|a| crate::driver::sockets::sockaddr_ip(&a.0))
                    })
                    .flatten();
                self.arm_accept_slot(i);
                self.on_accept(t, i / ACCEPT_POOL, res, peer);
            }
            OpKind::Recv => self.on_recv(t, tag, res, flags),
            OpKind::Send => {
                let res = usize::try_from(res).map_err(|_| res);
                self.shell.core.on_send_done(t, key, generation, res);
            }
            OpKind::Shutdown => self.shell.core.on_shutdown_done(t, key, generation),
            OpKind::Close => self.shell.core.on_close_done(t, key, generation),
            OpKind::Cancel => {}
            OpKind::BackendConnect
            | OpKind::BackendLinkTimeout
            | OpKind::BackendSend
            | OpKind::BackendRecv
            | OpKind::BackendClose => {
                self.on_fd_completion(t, tag, res);
                self.shell.apply_backend_outcomes(t);
            }
            OpKind::Doorbell => {
                self.io.arm_doorbell();
                if self.shell.shared.draining.load(Ordering::Acquire) {
                    self.shell.core.on_shutdown_requested(t);
                }
            }
            OpKind::UrgentPoll => self.io.urgent.on_poll_done(),
            OpKind::UrgentTimeout => {}
            OpKind::ControlAccept
            | OpKind::ControlRecv
            | OpKind::ControlSend
            | OpKind::ControlClose => self.on_fd_completion(t, tag, res),
        }
    }

    /// An accept on client listener `l` completed with `res`.
    fn on_accept(&mut self, t: Time, l: usize, res: i32, peer: Option<std::net::IpAddr>) {
        if res < 0 {
            if res != -libc::ECANCELED {
                self.shell.core.stats_mut().accept_errors += 1;
                tracing::debug!(
                    shard = self.shell.index,
                    "accept failed: {}",
                    std::io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        let Some(kind) = self.io.listener_kinds.get(l).copied() else {
            return;
        };
        self.shell.core.on_accepted(t, res as u32, kind, peer);
    }

    /// A completion of a client connection's multishot receive: the bytes
    /// go to the core, the buffer back to the pool.
    fn on_recv(&mut self, t: Time, tag: OpTag, res: i32, flags: u32) {
        let (key, generation) = (tag.index, tag.generation);
        let more = cqueue::more(flags);
        let buffer = cqueue::buffer_select(flags);
        if res == -libc::ENOBUFS {
            self.io.bufs.grow();
            self.shell.core.on_recv_no_buffers(key, generation, more);
            return;
        }
        let len = usize::try_from(res).unwrap_or(0);
        let Some(bid) = buffer else {
            if res > 0 {
                self.shell.core.on_received(t, key, generation, &[], more);
            } else {
                self.shell.core.on_recv_ended(t, key, generation);
            }
            return;
        };
        let (data, done) = self.io.bufs.take(bid, len, cqueue::buffer_more(flags));
        if res > 0 {
            self.shell.core.on_received(t, key, generation, data, more);
        } else {
            self.shell.core.on_recv_ended(t, key, generation);
        }
        if done {
            self.io.bufs.recycle(bid);
        }
    }

    /// Arms the accepts of every client listener.
    pub(super) fn arm_accepts(&mut self) {
        for l in 0..self.io.listeners.len() {
            self.arm_listener(l);
        }
    }

    /// Arms client listener `l`'s accepts: one multishot accept, or its
    /// pool of single-shot accepts when peer addresses are needed.
    fn arm_listener(&mut self, l: usize) {
        if self.shell.core.is_draining() {
            return;
        }
        let Some(listener) = self.io.listeners.get(l) else {
            return;
        };
        let fd = types::Fd(listener.socket.as_raw_fd());
        if self.io.multishot_accept {
            let entry = opcode::AcceptMulti::new(fd)
                .allocate_file_index(true)
                .build()
                .user_data(OpTag::new(OpKind::AcceptMulti, l as u32).encode());
            self.io.push(entry);
        } else {
            for i in l * ACCEPT_POOL..(l + 1) * ACCEPT_POOL {
                self.arm_accept_slot(i);
            }
        }
    }

    /// Arms single-shot accept `i` of the pool (listener `i / ACCEPT_POOL`).
    pub(super) fn arm_accept_slot(&mut self, i: usize) {
        if self.shell.core.is_draining() {
            return;
        }
        let (Some(listener), Some(slot)) = (
            self.io.listeners.get(i / ACCEPT_POOL),
            self.io.accept_addrs.get_mut(i),
        ) else {
            return;
        };
        slot.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let entry = opcode::Accept::new(
            types::Fd(listener.socket.as_raw_fd()),
            (&mut slot.0 as *mut libc::sockaddr_storage).cast(),
            &mut slot.1,
        )
        .file_index(Some(types::DestinationSlot::auto_target()))
        .build()
        .user_data(OpTag::new(OpKind::AcceptOne, i as u32).encode());
        self.io.push(entry);
    }
}

impl RingIo {
    pub(super) fn arm_doorbell(&mut self) {
        let buf: *mut u64 = &mut *self.doorbell_buf;
        let entry = opcode::Read::new(types::Fd(self.doorbell.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(OpTag::new(OpKind::Doorbell, 0).encode());
        self.push(entry);
    }
}

//! The io_uring I/O of a shard: its own ring (single issuer), sockets
//! opened into direct-descriptor slots by a linked socket → setsockopt →
//! bind → connect chain, multishot receives into a provided-buffer ring
//! (the gateway's own ring set-up, `gateway::uring`), and completion
//! routing back to the shared session logic.

use std::time::Duration;

use gateway::stream::Pending;
use gateway::uring::bufring::BufRing;
use gateway::uring::ring::{self, BUF_GROUP, RingSpec};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Closed, Dial, ONE, Sent, Shard, ShardError, ShardIo, sockaddr, source_addrs};
use crate::engine::ShardPlan;
use crate::engine::conn::Phase;
use crate::engine::ops::{Op, Tag};

/// Receive buffers per shard (the provided-buffer ring).
const RECV_BUFFERS: u32 = 4096;
/// Size of each receive buffer.
const RECV_BUFFER_SIZE: u32 = 4096;

/// A shard's ring and what its operations point to.
pub(super) struct UringIo {
    // Field order: the ring drops before the buffer memory it points into.
    ring: IoUring,
    bufs: BufRing,
    shard: u32,
    target: Box<libc::sockaddr_in>,
    sources: Box<[libc::sockaddr_in]>,
    cqes: Vec<(u64, i32, u32)>,
}

impl UringIo {
    /// Sets up the ring, a direct-descriptor table of the plan's count and
    /// the receive pool.
    pub(super) fn new(plan: &ShardPlan) -> Result<Self, ShardError> {
        let shard = plan.index;
        let spec = RingSpec {
            sq_entries: 4096,
            cq_entries: 16_384,
            defer_taskrun: false,
            files: plan.count.max(1),
            buffers: RECV_BUFFERS,
            buffer_size: RECV_BUFFER_SIZE,
        };
        let (ring, bufs) =
            ring::build(&spec).map_err(|source| ShardError::Ring { shard, source })?;
        Ok(Self {
            ring,
            bufs,
            shard,
            target: Box::new(sockaddr(plan.target)),
            sources: source_addrs(plan),
            cqes: Vec::new(),
        })
    }

    fn push(&mut self, sqe: squeue::Entry) -> Result<(), ShardError> {
        // SAFETY: every buffer and address an SQE points to lives in `self`
        // (boxed) or in a connection slot not touched until its completion.
        unsafe { gateway::uring::sq::push(&mut self.ring, std::slice::from_ref(&sqe)) }.map_err(
            |e| ShardError::Enter {
                shard: self.shard,
                source: std::io::Error::other(e),
            },
        )
    }
}

impl ShardIo for UringIo {
    fn connect(&mut self, slot: u32, generation: u16) -> Result<Dial, ShardError> {
        let tag = |op| Tag::of(op, slot, u32::from(generation)).encode();
        let fixed = types::Fixed(slot);
        let quiet = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            return Ok(Dial::SetupFailed("socket", libc::EBADF));
        };
        let sock = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
            .file_index(Some(dest))
            .build()
            .flags(quiet)
            .user_data(tag(Op::Socket));
        self.push(sock)?;
        let optval = (&raw const ONE).cast::<libc::c_void>();
        let optlen = std::mem::size_of::<libc::c_int>() as u32;
        let nodelay = opcode::SetSockOpt::new(
            fixed,
            libc::IPPROTO_TCP as u32,
            libc::TCP_NODELAY as u32,
            optval,
            optlen,
        )
        .build()
        .flags(quiet)
        .user_data(tag(Op::SockOpt));
        self.push(nodelay)?;
        if !self.sources.is_empty() {
            let src: *const libc::sockaddr_in =
                &raw const self.sources[slot as usize % self.sources.len()];
            let noport = opcode::SetSockOpt::new(
                fixed,
                libc::IPPROTO_IP as u32,
                libc::IP_BIND_ADDRESS_NO_PORT as u32,
                optval,
                optlen,
            )
            .build()
            .flags(quiet)
            .user_data(tag(Op::SockOpt));
            self.push(noport)?;
            let bind = opcode::Bind::new(
                fixed,
                src.cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
            .build()
            .flags(quiet)
            .user_data(tag(Op::Bind));
            self.push(bind)?;
        }
        let connect = opcode::Connect::new(
            fixed,
            (&raw const *self.target).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
        .build()
        .user_data(tag(Op::Connect));
        self.push(connect)?;
        Ok(Dial::Pending)
    }

    fn arm_recv(&mut self, slot: u32, generation: u16) -> Result<(), ShardError> {
        let sqe = opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP)
            .build()
            .user_data(Tag::of(Op::Recv, slot, u32::from(generation)).encode());
        self.push(sqe)
    }

    fn send(&mut self, slot: u32, generation: u16, bytes: &[u8]) -> Result<Sent, ShardError> {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let sqe = opcode::Send::new(types::Fixed(slot), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Tag::of(Op::Send, slot, u32::from(generation)).encode());
        self.push(sqe)?;
        Ok(Sent::Later)
    }

    fn close(&mut self, slot: u32, generation: u16) -> Result<Closed, ShardError> {
        let tag = |op| Tag::of(op, slot, u32::from(generation)).encode();
        let shut = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(tag(Op::Shutdown));
        self.push(shut)?;
        let close = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(tag(Op::Close));
        self.push(close)?;
        Ok(Closed::Later)
    }

    fn poll(shard: &mut Shard<'_, Self>, wait: Duration) -> Result<(), ShardError> {
        let ts = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        match shard.io.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(source) => {
                return Err(ShardError::Enter {
                    shard: shard.plan.index,
                    source,
                });
            }
        }
        let mut cqes = std::mem::take(&mut shard.io.cqes);
        cqes.clear();
        cqes.extend(
            shard
                .io
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut result = Ok(());
        for &(ud, res, flags) in &cqes {
            result = shard.complete(ud, res, flags);
            if result.is_err() {
                break;
            }
        }
        shard.io.cqes = cqes;
        shard.io.bufs.commit();
        result
    }
}

impl Shard<'_, UringIo> {
    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> Result<(), ShardError> {
        let Some(tag) = Tag::decode(ud) else {
            return Ok(());
        };
        let bid = cqueue::buffer_select(flags);
        let current = self
            .conns
            .get(tag.index as usize)
            .is_some_and(|c| tag.is_for(u32::from(c.generation)));
        if !current {
            if let Some(bid) = bid {
                self.release_buffer(bid, res, flags);
            }
            if tag.kind == Op::Send
                && let Some(c) = self.conns.get_mut(tag.index as usize)
            {
                // A send of an earlier incarnation finished: its buffer is free.
                c.life.finish(Pending::Send);
            }
            return Ok(());
        }
        match tag.kind {
            Op::Socket | Op::SockOpt | Op::Bind if res == -libc::ECANCELED => {}
            Op::Socket | Op::SockOpt | Op::Bind => {
                // Only failures are posted (SKIP_SUCCESS); the Connect that
                // follows is cancelled and reports the end of the chain.
                self.setup_failed(tag.index, tag.kind.name(), -res);
            }
            Op::Connect => self.on_connect(tag.index, res)?,
            Op::Send => self.on_send(tag.index, res)?,
            Op::Recv => self.on_recv(tag.index, res, flags, bid)?,
            Op::Shutdown => {}
            Op::Close => self.on_close(tag.index)?,
        }
        Ok(())
    }
    /// Hands back a buffer whose bytes nobody will read.
    fn release_buffer(&mut self, bid: u16, res: i32, flags: u32) {
        let len = usize::try_from(res).unwrap_or(0);
        let (_, done) = self.io.bufs.take(bid, len, cqueue::buffer_more(flags));
        if done {
            self.io.bufs.recycle(bid);
        }
    }

    fn on_recv(
        &mut self,
        slot: u32,
        res: i32,
        flags: u32,
        bid: Option<u16>,
    ) -> Result<(), ShardError> {
        if res > 0
            && let Some(bid) = bid
        {
            let len = usize::try_from(res).unwrap_or(0);
            let (data, done) = self.io.bufs.take(bid, len, cqueue::buffer_more(flags));
            let data = data.to_vec();
            if done {
                self.io.bufs.recycle(bid);
            }
            self.feed(slot, &data)?;
        } else if let Some(bid) = bid {
            self.release_buffer(bid, res, flags);
        }
        if res == -libc::ENOBUFS {
            // The pool's window was too small for this burst: widen it.
            self.io.bufs.grow();
        }
        if cqueue::more(flags) {
            return Ok(());
        }
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.life.finish(Pending::Recv);
        let live = matches!(conn.phase, Phase::Handshaking | Phase::Established);
        // The kernel ends a multishot receive when the buffer ring runs dry
        // (ENOBUFS) or the completion queue overflows; the last completion
        // may still carry data. Either way the connection is fine: re-arm.
        if live && (res > 0 || res == -libc::ENOBUFS) {
            return self.arm_recv(slot);
        }
        self.recv_failed(slot, res)
    }
}

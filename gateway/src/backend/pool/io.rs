//! The submissions of a backend connection: its Connect with the linked
//! timeout, its sends (one in flight, partial sends resumed) and its
//! receives. Each is tagged with the connection's key and generation.

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;

use super::{Conn, READ_CHUNK};
use crate::backend::push;
use crate::stream::Pending;
use crate::uring::op::{OpKind, OpTag};

/// Queues a Connect and its LinkTimeout in one piece. The connect address
/// lives in the pool's boxed endpoint and the timespec in the pool's box;
/// pools are never removed while the client lives.
pub(super) fn push_pair(ring: &mut IoUring, a: squeue::Entry, b: squeue::Entry) {
    push(ring, &[a, b]);
    // Submit now: the connect starts without waiting for the loop's wait.
    if let Err(e) = ring.submit() {
        tracing::warn!("submitting a backend connect failed: {e}");
    }
}

pub(super) fn flush(ring: &mut IoUring, conns: &mut Slab<Conn>, c: usize) {
    let Some(conn) = conns.get_mut(c) else {
        return;
    };
    if conn.life.in_flight(Pending::Send) || conn.life.close_wanted() || !conn.ready {
        return;
    }
    let Some(rest) = conn.send.to_send() else {
        return;
    };
    let entry = opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(OpTag::of(OpKind::BackendSend, c as u32, conn.generation).encode());
    conn.life.start(Pending::Send);
    push(ring, std::slice::from_ref(&entry));
}

pub(super) fn arm_recv(ring: &mut IoUring, conns: &mut Slab<Conn>, c: usize) {
    let Some(conn) = conns.get_mut(c) else {
        return;
    };
    if !conn.life.start(Pending::Recv) {
        return;
    }
    conn.inbuf.reserve(READ_CHUNK);
    let spare = conn.inbuf.spare_capacity_mut();
    let entry = opcode::Recv::new(
        types::Fd(conn.fd),
        spare.as_mut_ptr().cast(),
        spare.len() as u32,
    )
    .build()
    .user_data(OpTag::of(OpKind::BackendRecv, c as u32, conn.generation).encode());
    push(ring, std::slice::from_ref(&entry));
}

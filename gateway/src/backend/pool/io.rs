//! The submissions of a backend connection: its Connect with the linked
//! timeout, its sends (one in flight, partial sends resumed) and its
//! receives. Each is tagged with the connection's key and generation.

use io_uring::{IoUring, squeue};
use slab::Slab;

use super::{Conn, READ_CHUNK};
use crate::backend::push;
use crate::stream::Pending;
use crate::uring::entries;
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
    let tag = OpTag::of(OpKind::BackendSend, c as u32, conn.generation);
    let entry = entries::send(conn.fd, rest, tag.encode());
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
    let tag = OpTag::of(OpKind::BackendRecv, c as u32, conn.generation);
    let entry = entries::recv_into_spare(conn.fd, &mut conn.inbuf, READ_CHUNK, tag.encode());
    push(ring, std::slice::from_ref(&entry));
}

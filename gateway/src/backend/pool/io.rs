//! The client's side facing its driver: the operations it queues (sends,
//! one in flight with partial sends resumed, and receives, each with the
//! connection's key and generation) and the buffers and addresses it
//! lends while they are in flight.

use slab::Slab;
use socket2::SockAddr;

use super::{Conn, HttpClient, READ_CHUNK};
use crate::fd_ops::{FdOp, FdOpKind, FdOps};
use crate::stream::{Pending, same_generation};

impl<O> HttpClient<O> {
    /// Whether operations wait for [`HttpClient::take_ops`].
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Moves the operations queued since the last call to `into`, in order.
    pub fn take_ops(&mut self, into: &mut Vec<FdOp>) {
        self.ops.take(into);
    }

    /// The connection of `key` and `generation`, if it is that one.
    pub(super) fn conn(&self, key: u32, generation: u32) -> Option<&Conn> {
        self.conns
            .get(key as usize)
            .filter(|c| same_generation(c.generation, generation))
    }

    pub(super) fn conn_mut(&mut self, key: u32, generation: u32) -> Option<&mut Conn> {
        self.conns
            .get_mut(key as usize)
            .filter(|c| same_generation(c.generation, generation))
    }

    /// Where connection `key` connects to: its pool's address, which
    /// stays put while the client lives (pools are never removed).
    pub fn connect_addr(&self, key: u32, generation: u32) -> Option<&SockAddr> {
        let conn = self.conn(key, generation)?;
        self.pools.get(conn.pool).map(|p| &*p.endpoint.addr)
    }

    /// The receive buffer of connection `key` while its receive is in
    /// flight: the driver adds what it received at the end before
    /// [`HttpClient::on_done`].
    pub fn recv_buffer(&mut self, key: u32, generation: u32) -> Option<&mut Vec<u8>> {
        self.conn_mut(key, generation)
            .filter(|c| c.life.in_flight(Pending::Recv))
            .map(|c| &mut c.inbuf)
    }

    /// The bytes of connection `key`'s send in flight; they stay put until
    /// [`HttpClient::on_done`].
    pub fn sending(&self, key: u32, generation: u32) -> Option<&[u8]> {
        self.conn(key, generation)
            .filter(|c| c.life.in_flight(Pending::Send))
            .map(|c| c.send.in_flight())
    }
}

/// Starts the send of what waits on connection `c`, unless one is out.
pub(super) fn flush(conns: &mut Slab<Conn>, ops: &mut FdOps, c: usize) {
    let Some(conn) = conns.get_mut(c) else {
        return;
    };
    if conn.life.in_flight(Pending::Send) || conn.life.close_wanted() || !conn.ready {
        return;
    }
    if conn.send.to_send().is_none() {
        return;
    }
    conn.life.start(Pending::Send);
    ops.push(c, conn.generation, conn.fd, FdOpKind::Send);
}

/// Starts a receive on connection `c`, unless one is out.
pub(super) fn arm_recv(conns: &mut Slab<Conn>, ops: &mut FdOps, c: usize) {
    let Some(conn) = conns.get_mut(c) else {
        return;
    };
    if conn.life.start(Pending::Recv) {
        let max = READ_CHUNK;
        ops.push(c, conn.generation, conn.fd, FdOpKind::Recv { max });
    }
}

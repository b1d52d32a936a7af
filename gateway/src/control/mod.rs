//! The control listener of one shard: HTTP/1.1 keep-alive on ordinary
//! descriptors (a handful of backend connections, not millions). Every
//! shard serves it via SO_REUSEPORT.
//!
//! [`ControlServer`] is sans-IO: its driver owns the listener, hands it
//! each accepted descriptor ([`ControlServer::on_accepted`]) and performs
//! the [`FdOp`]s it queues (receive, send, shutdown, close), reporting
//! their completions back. Requests come out whole
//! ([`ControlServer::take_ready`]) and answers go in
//! ([`ControlServer::respond`]).
//!
//! Connections are bounded ([`limits`]): at most `control_max_connections`
//! per shard (more are answered 503 and closed), a request must arrive
//! whole within `control_head_timeout_ms` (else 408 and close), and a
//! keep-alive connection idle for `control_idle_timeout_ms` is closed. The
//! server reads no clock: the driver passes `now` in, calls
//! [`ControlServer::expire`] every loop and sleeps no longer than
//! [`ControlServer::next_deadline`].
//!
//! A slot of the connection slab is freed only once no receive or send of
//! its connection is in flight (closing shuts the socket down first and
//! waits for them; see [`crate::stream`]). Every operation names
//! the slot's key and the connection's generation, and a completion that
//! names another generation, or finds no such operation in flight, is
//! ignored. Answers that come later are matched by [`Caller`], key and
//! generation.

mod conn;
pub mod http;
pub mod limits;
pub mod routes;
#[cfg(test)]
mod tests;

use std::os::fd::RawFd;

use protocol::time::Millis;
use slab::Slab;

use crate::fd_ops::{FdDone, FdOp, FdOpKind, FdOps};
use crate::stream::{Pending, SendBuf};
use conn::{ControlConn, Due};
use limits::{ControlCounters, ControlLimits, EarliestDeadline, Phase};

const READ_CHUNK: usize = 8192;

/// Answer bytes a connection may have waiting before the server stops
/// taking its pipelined requests (a client that sends and never reads
/// cannot grow them without bound).
const MAX_UNSENT: usize = 1 << 20;

/// Connections being refused (503 on its way out) at once; past it a
/// connection over the cap is closed without an answer, so a flood of
/// connects cannot grow the slab either.
const MAX_REFUSING: usize = 64;

/// Requests of one connection handed to the shard and not answered yet,
/// at most: a pipelining client gets this much concurrency (a push's
/// answer may wait for other shards), and no more of its bytes are parsed
/// until answers leave.
const MAX_PIPELINED: usize = 1024;

/// Buffers of an idle connection larger than this are given back (a past
/// 1 MiB request must not stay pinned by an idle keep-alive connection).
const KEEP_CAPACITY: usize = 64 * 1024;

/// One shard's control listener and its connections.
#[derive(Debug)]
pub struct ControlServer {
    conns: Slab<ControlConn>,
    ready: Vec<(Caller, http::Request)>,
    /// Connections with answers written since the last `flush_sends`.
    unsent: Vec<usize>,
    next_generation: u32,
    limits: ControlLimits,
    counters: ControlCounters,
    /// Connections in the slab that are being refused.
    refusing: usize,
    earliest: EarliestDeadline,
    /// Connections found expired by the last scan (kept to reuse).
    expired: Vec<(usize, Phase)>,
    /// Operations for the driver.
    ops: FdOps,
}

/// Who asked: a control connection, told apart from a later connection
/// that reuses its slot, so a late answer never reaches the wrong caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    key: usize,
    generation: u32,
    /// The request's number on its connection (answers leave in order).
    seq: u32,
}

impl Caller {
    /// The caller on control connection `key` of generation `generation`
    /// (for drivers other than this server's, such as a simulation).
    pub fn new(key: usize, generation: u32) -> Self {
        Self {
            key,
            generation,
            seq: 0,
        }
    }
}

impl ControlServer {
    /// Serves the connections its driver accepts, within `limits`.
    pub fn new(limits: ControlLimits) -> Self {
        Self {
            conns: Slab::new(),
            ready: Vec::new(),
            unsent: Vec::new(),
            next_generation: 0,
            limits,
            counters: ControlCounters::default(),
            refusing: 0,
            earliest: EarliestDeadline::default(),
            expired: Vec::new(),
            ops: FdOps::default(),
        }
    }

    /// What the listener has counted (refusals, timeouts).
    pub fn counters(&self) -> ControlCounters {
        self.counters
    }

    /// Connections open now (being refused ones included).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether operations wait for [`ControlServer::take_ops`].
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Moves the operations queued since the last call to `into`, in order.
    pub fn take_ops(&mut self, into: &mut Vec<FdOp>) {
        self.ops.take(into);
    }

    /// The receive buffer of connection `key` while its receive is in
    /// flight: the driver adds what it received at the end (into the
    /// spare capacity, or by copying) before [`ControlServer::on_done`].
    pub fn recv_buffer(&mut self, key: u32, generation: u32) -> Option<&mut Vec<u8>> {
        self.conns
            .get_mut(key as usize)
            .filter(|c| c.owns(generation) && c.life.in_flight(Pending::Recv))
            .map(|c| &mut c.inbuf)
    }

    /// The bytes of connection `key`'s send in flight; they stay put until
    /// [`ControlServer::on_done`].
    pub fn sending(&self, key: u32, generation: u32) -> Option<&[u8]> {
        self.conns
            .get(key as usize)
            .filter(|c| c.owns(generation) && c.life.in_flight(Pending::Send))
            .map(|c| c.send.in_flight())
    }

    /// When the driver must call [`ControlServer::expire`] next: `None`
    /// when no connection has a deadline (no control connections: no
    /// wake-ups). May be early (a lower bound); never late.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.earliest.get()
    }

    /// Expires connections whose deadline has passed at `now`: a request
    /// not complete in time is answered 408 and its connection closed (a
    /// new connection that sent nothing is closed), an idle keep-alive
    /// connection is closed. Cheap when nothing is due: one comparison.
    pub fn expire(&mut self, now: Millis) {
        if !self.earliest.due(now) {
            return;
        }
        let mut expired = std::mem::take(&mut self.expired);
        let mut next = EarliestDeadline::default();
        for (key, c) in self.conns.iter() {
            match c.deadline(&self.limits) {
                Some(at) if at <= now => expired.push((key, c.phase())),
                at => next.note(at),
            }
        }
        self.earliest = next;
        for (key, phase) in expired.drain(..) {
            self.expire_one(key, phase, now);
        }
        self.expired = expired;
    }

    fn expire_one(&mut self, key: usize, phase: Phase, now: Millis) {
        match phase {
            Phase::Request { started: true } => {
                self.counters.head_timeouts += 1;
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                let body = routes::error_body("request not complete in time");
                http::write_response(c.answers(), 408, "application/json", &body, false);
                // The receive in flight (if any) still writes into
                // `inbuf`; it is left alone and ends with the close.
                c.close_after_send = true;
                c.since = now;
                self.mark_unsent(key);
                self.note(key);
            }
            Phase::Request { started: false } => {
                self.counters.head_timeouts += 1;
                self.close(key);
            }
            Phase::Idle => {
                self.counters.idle_closes += 1;
                self.close(key);
            }
            Phase::Busy => {}
        }
    }

    /// Takes connection `key`'s (new) deadline into the earliest bound.
    fn note(&mut self, key: usize) {
        if let Some(c) = self.conns.get(key) {
            self.earliest.note(c.deadline(&self.limits));
        }
    }

    /// Requests parsed and waiting for the shard to answer with
    /// [`ControlServer::respond`] (now or later), with their caller.
    pub fn take_ready(&mut self) -> Vec<(Caller, http::Request)> {
        std::mem::take(&mut self.ready)
    }

    /// Writes the answer to `caller`'s request (dropped if that
    /// connection is gone). Answers leave in request order, at the next
    /// [`ControlServer::flush_sends`] once every earlier one is written,
    /// so a burst of pipelined requests is answered in one send; room
    /// for more pipelined requests is taken at once.
    pub fn respond(&mut self, now: Millis, caller: Caller, resp: &routes::Response) {
        let key = caller.key;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.generation != caller.generation || c.life.close_wanted() {
            return;
        }
        let index = caller.seq.wrapping_sub(c.first_seq) as usize;
        let Some(due) = c.due.get_mut(index).filter(|d| d.answer.is_none()) else {
            return;
        };
        let mut answer = Vec::new();
        http::write_response(
            &mut answer,
            resp.status,
            resp.content_type,
            &resp.body,
            due.keep_alive,
        );
        due.answer = Some(answer);
        c.fresh = false;
        c.since = now;
        c.release_answers();
        self.mark_unsent(key);
        self.serve(now, key);
        self.note(key);
    }

    /// Whether requests are waiting in [`ControlServer::take_ready`].
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Starts the sends of the answers written since the last call.
    pub fn flush_sends(&mut self) {
        let mut keys = std::mem::take(&mut self.unsent);
        for key in keys.drain(..) {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.listed = false;
            if !c.life.in_flight(Pending::Send) && !c.life.close_wanted() && !c.send.is_empty() {
                self.start_send(key);
            }
        }
        self.unsent = keys;
    }

    fn mark_unsent(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.listed
            && !c.life.in_flight(Pending::Send)
        {
            c.listed = true;
            self.unsent.push(key);
        }
    }

    /// Takes a new connection on descriptor `fd` (accepted by the
    /// driver), or refuses it (503) over the cap.
    pub fn on_accepted(&mut self, now: Millis, fd: RawFd) {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        if self.conns.len() - self.refusing < self.limits.max_connections {
            let key = self.conns.insert(ControlConn {
                fd,
                generation,
                since: now,
                fresh: true,
                ..Default::default()
            });
            self.start_recv(key);
            self.note(key);
            return;
        }
        self.counters.refused += 1;
        if self.refusing >= MAX_REFUSING {
            self.ops.push(usize::MAX, generation, fd, FdOpKind::Discard);
            return;
        }
        let mut send = SendBuf::default();
        let body = routes::error_body("too many control connections");
        http::write_response(send.writer(), 503, "application/json", &body, false);
        let key = self.conns.insert(ControlConn {
            fd,
            generation,
            send,
            since: now,
            refused: true,
            close_after_send: true,
            ..Default::default()
        });
        self.refusing += 1;
        self.start_send(key);
        self.note(key);
    }

    /// An operation of connection `key` (of `generation`) ended at `now`;
    /// a completion for another connection, or for an operation not in
    /// flight, is ignored.
    pub fn on_done(&mut self, now: Millis, key: u32, generation: u32, done: FdDone) {
        let key = key as usize;
        let Some(c) = self.conns.get_mut(key).filter(|c| c.owns(generation)) else {
            return;
        };
        match done {
            FdDone::Received(res) if c.life.finish(Pending::Recv) => {
                self.on_received(now, key, res)
            }
            FdDone::Sent(res) if c.life.finish(Pending::Send) => self.on_sent(now, key, res),
            FdDone::Closed if c.life.is_close_sent() => {
                let refused = self.conns.remove(key).refused;
                self.refusing -= usize::from(refused);
            }
            _ => {} // not this connection's: nothing of it is out
        }
    }

    /// A receive of connection `key` ended: `Ok(n)` bytes were added to
    /// its [`ControlServer::recv_buffer`] (0: the peer closed).
    fn on_received(&mut self, now: Millis, key: usize, res: Result<usize, i32>) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let n = match res {
            Ok(n) if n > 0 && !c.life.close_wanted() => n,
            _ => {
                self.close(key);
                return;
            }
        };
        if c.inbuf.len() == n && !c.fresh && !c.awaiting() && !c.close_after_send {
            c.since = now; // the first byte of a request
        }
        self.serve(now, key);
        self.note(key);
    }

    /// A send of connection `key` ended: `Ok(n)` bytes went out.
    fn on_sent(&mut self, now: Millis, key: usize, res: Result<usize, i32>) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let n = match res {
            Ok(n) if !c.life.close_wanted() => n,
            _ => {
                self.close(key);
                return;
            }
        };
        c.since = now;
        // Answers written meanwhile go out together, after the rest of a
        // partial send.
        if !c.send.sent(n) {
            self.start_send(key);
        } else {
            c.send.shrink(KEEP_CAPACITY);
            if c.close_after_send {
                self.close(key);
                return;
            }
        }
        // Serve anything held back behind unsent answers.
        self.serve(now, key);
        self.note(key);
    }

    /// Takes the complete requests off connection `key` and hands them
    /// to the shard, up to [`MAX_PIPELINED`] unanswered; reads on when
    /// the next is not complete. The shard takes them in order, and their
    /// answers leave in that order.
    fn serve(&mut self, now: Millis, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            if c.life.close_wanted()
                || c.last_taken
                || c.close_after_send
                || c.due.len() >= MAX_PIPELINED
                || c.send.unsent() > MAX_UNSENT
            {
                return;
            }
            match http::parse_request(&c.inbuf) {
                Ok(Some((req, used))) => {
                    c.inbuf.drain(..used);
                    if c.inbuf.is_empty()
                        && c.inbuf.capacity() > KEEP_CAPACITY
                        && !c.life.in_flight(Pending::Recv)
                    {
                        c.inbuf = Vec::new();
                    }
                    let seq = c.first_seq.wrapping_add(c.due.len() as u32);
                    c.due.push_back(Due {
                        keep_alive: req.keep_alive,
                        answer: None,
                    });
                    c.last_taken = !req.keep_alive;
                    let caller = Caller {
                        key,
                        generation: c.generation,
                        seq,
                    };
                    self.ready.push((caller, req));
                }
                Ok(None) => {
                    self.start_recv(key);
                    return;
                }
                Err(e) => {
                    // Answered in its turn, after the requests before it;
                    // then the connection closes.
                    let mut answer = Vec::new();
                    let body = routes::error_body(&e.to_string());
                    http::write_response(&mut answer, e.status(), "application/json", &body, false);
                    c.due.push_back(Due {
                        keep_alive: false,
                        answer: Some(answer),
                    });
                    c.last_taken = true;
                    c.since = now;
                    if !c.life.in_flight(Pending::Recv) {
                        c.inbuf.clear();
                    }
                    c.release_answers();
                    self.mark_unsent(key);
                    return;
                }
            }
        }
    }

    fn start_recv(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.start(Pending::Recv) {
            let max = READ_CHUNK;
            self.ops
                .push(key, c.generation, c.fd, FdOpKind::Recv { max });
        }
    }

    fn start_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.in_flight(Pending::Send) || c.life.close_wanted() || c.send.to_send().is_none() {
            return;
        }
        c.life.start(Pending::Send);
        self.ops.push(key, c.generation, c.fd, FdOpKind::Send);
    }

    /// Closes `key` once no operation of it is in flight; a pending
    /// receive is ended by shutting the socket down first.
    fn close(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.is_close_sent() {
            return;
        }
        if c.life.busy() {
            if c.life.want_close() {
                // Its pending operations then complete and call back here.
                self.ops.push(key, c.generation, c.fd, FdOpKind::Shutdown);
            }
            return;
        }
        c.life.close_sent();
        self.ops.push(key, c.generation, c.fd, FdOpKind::Close);
    }
}

//! The control listener of one shard: HTTP/1.1 keep-alive on ordinary
//! descriptors (a handful of backend connections, not millions), served
//! from the shard's own ring. Every shard serves it via SO_REUSEPORT.
//!
//! Connections are bounded ([`limits`]): at most `control_max_connections`
//! per shard (more are answered 503 and closed), a request must arrive
//! whole within `control_head_timeout_ms` (else 408 and close), and a
//! keep-alive connection idle for `control_idle_timeout_ms` is closed. The
//! server reads no clock: the shard passes `now` in, calls
//! [`ControlServer::expire`] every loop and sleeps no longer than
//! [`ControlServer::next_deadline`].
//!
//! A slot of the connection slab is freed only once no receive or send of
//! its connection is in flight (closing shuts the socket down first and
//! waits for them; see [`crate::stream`]). Every operation is tagged with
//! the slot's key and the connection's generation, and a completion that
//! names another generation, or finds no such operation in flight, is
//! ignored. Answers that come later are matched by [`Caller`], key and
//! generation.

pub mod http;
pub mod limits;
pub mod routes;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, squeue, types};
use protocol::time::Millis;
use slab::Slab;
use socket2::Socket;

use crate::stream::{Pending, SendBuf, StreamLife};
use crate::uring::entries;
use crate::uring::op::{OpKind, OpTag};
use crate::uring::sq::push_until_queued;
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

/// Buffers of an idle connection larger than this are given back (a past
/// 1 MiB request must not stay pinned by an idle keep-alive connection).
const KEEP_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Default)]
struct ControlConn {
    generation: u32,
    fd: i32,
    inbuf: Vec<u8>,
    /// Answers: the bytes being sent (the kernel reads from them while a
    /// send is out) and those written meanwhile, which go next, together.
    send: SendBuf,
    /// Receive and send in flight, and the close.
    life: StreamLife,
    close_after_send: bool,
    /// A request was handed to the shard and is not answered yet; later
    /// pipelined requests wait so responses keep their order.
    awaiting: bool,
    /// Whether the request being answered keeps the connection open.
    keep_alive: bool,
    /// Listed in `ControlServer::unsent` for the next `flush_sends`.
    listed: bool,
    /// When the current phase (see [`ControlConn::phase`]) started: the
    /// accept, the first byte of a request, the last answer written or
    /// the last send completed.
    since: Millis,
    /// No request has been answered on it yet.
    fresh: bool,
    /// Over the cap: answered 503, never read.
    refused: bool,
}

impl ControlConn {
    /// Where an answer is written now: behind the bytes being sent, if any.
    fn answers(&mut self) -> &mut Vec<u8> {
        self.send.writer()
    }

    /// Whether connection `c` is the one `tag` was submitted for.
    fn owns(&self, tag: OpTag) -> bool {
        tag.is_for(self.generation)
    }

    /// What the connection is doing, for its timeouts.
    fn phase(&self) -> Phase {
        if self.life.close_wanted() || self.awaiting {
            Phase::Busy
        } else if self.close_after_send {
            // Its last answer is leaving: bounded by the idle timeout.
            Phase::Idle
        } else if self.fresh || !self.inbuf.is_empty() {
            Phase::Request {
                started: !self.inbuf.is_empty(),
            }
        } else {
            Phase::Idle
        }
    }

    fn deadline(&self, limits: &ControlLimits) -> Option<Millis> {
        self.phase().deadline(limits, self.since)
    }
}

/// One shard's control listener and its connections.
#[derive(Debug)]
pub struct ControlServer {
    listener: Socket,
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
}

/// Who asked: a control connection, told apart from a later connection
/// that reuses its slot, so a late answer never reaches the wrong caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    key: usize,
    generation: u32,
}

impl Caller {
    /// The caller on control connection `key` of generation `generation`
    /// (for drivers other than this server's, such as a simulation).
    pub fn new(key: usize, generation: u32) -> Self {
        Self { key, generation }
    }
}

/// Queues an entry of a control connection. Entries point into buffers
/// owned by `ControlConn`s that stay in the slab until their operations
/// complete.
fn push(ring: &mut IoUring, entry: squeue::Entry) {
    // SAFETY: see above: receive buffers, answers and addresses stay in
    // their connection's slot until its operations complete.
    unsafe { push_until_queued(ring, std::slice::from_ref(&entry)) };
}

impl ControlServer {
    /// Serves `listener` (bound and listening already) within `limits`.
    pub fn new(listener: Socket, limits: ControlLimits) -> Self {
        Self {
            listener,
            conns: Slab::new(),
            ready: Vec::new(),
            unsent: Vec::new(),
            next_generation: 0,
            limits,
            counters: ControlCounters::default(),
            refusing: 0,
            earliest: EarliestDeadline::default(),
            expired: Vec::new(),
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

    /// When the shard must wake next to expire a connection: `None` when
    /// no connection has a deadline (no control connections: no wake-ups).
    /// May be early (a lower bound); never late.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.earliest.get()
    }

    /// Expires connections whose deadline has passed at `now`: a request
    /// not complete in time is answered 408 and its connection closed (a
    /// new connection that sent nothing is closed), an idle keep-alive
    /// connection is closed. Cheap when nothing is due: one comparison.
    pub fn expire(&mut self, ring: &mut IoUring, now: Millis) {
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
            self.expire_one(ring, key, phase, now);
        }
        self.expired = expired;
    }

    fn expire_one(&mut self, ring: &mut IoUring, key: usize, phase: Phase, now: Millis) {
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
                self.close(ring, key);
            }
            Phase::Idle => {
                self.counters.idle_closes += 1;
                self.close(ring, key);
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

    /// The listener's descriptor (for the shard's urgent watch).
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }

    /// Arms one accept on the listener.
    pub fn arm_accept(&mut self, ring: &mut IoUring) {
        let entry = opcode::Accept::new(
            types::Fd(self.listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(OpTag::new(OpKind::ControlAccept, 0).encode());
        push(ring, entry);
    }

    /// Requests parsed and waiting for the shard to answer with
    /// [`ControlServer::respond`] (now or later), with their connection key.
    pub fn take_ready(&mut self) -> Vec<(Caller, http::Request)> {
        std::mem::take(&mut self.ready)
    }

    /// Writes the answer to `caller`'s pending request (dropped if that
    /// connection is gone) and hands on the request pipelined behind it,
    /// if complete. Answers leave at the next [`ControlServer::flush_sends`],
    /// so a burst of pipelined requests is answered in one send.
    pub fn respond(
        &mut self,
        ring: &mut IoUring,
        now: Millis,
        caller: Caller,
        resp: &routes::Response,
    ) {
        let key = caller.key;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.generation != caller.generation || !c.awaiting || c.life.close_wanted() {
            return;
        }
        c.awaiting = false;
        c.fresh = false;
        c.since = now;
        let keep = c.keep_alive && resp.status < 500;
        http::write_response(
            c.answers(),
            resp.status,
            resp.content_type,
            &resp.body,
            keep,
        );
        if !keep {
            c.close_after_send = true;
        }
        self.mark_unsent(key);
        self.serve(ring, now, key);
        self.note(key);
    }

    /// Whether requests are waiting in [`ControlServer::take_ready`].
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Starts the sends of the answers written since the last call.
    pub fn flush_sends(&mut self, ring: &mut IoUring) {
        let mut keys = std::mem::take(&mut self.unsent);
        for key in keys.drain(..) {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.listed = false;
            if !c.life.in_flight(Pending::Send) && !c.life.close_wanted() && !c.send.is_empty() {
                self.arm_send(ring, key);
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

    /// Handles a completion of a control operation at `now`.
    pub fn on_completion(
        &mut self,
        ring: &mut IoUring,
        now: Millis,
        tag: OpTag,
        res: i32,
        _flags: u32,
    ) {
        let key = tag.index as usize;
        match tag.kind {
            OpKind::ControlAccept => {
                self.arm_accept(ring);
                if res >= 0 {
                    self.on_accept(ring, now, res);
                }
            }
            OpKind::ControlRecv => {
                let Some(c) = self.conns.get_mut(key).filter(|c| c.owns(tag)) else {
                    return;
                };
                if !c.life.finish(Pending::Recv) {
                    return; // not this connection's: nothing of it is out
                }
                if res <= 0 || c.life.close_wanted() {
                    self.close(ring, key);
                    return;
                }
                if c.inbuf.is_empty() && !c.fresh && !c.awaiting && !c.close_after_send {
                    c.since = now; // the first byte of a request
                }
                // SAFETY: the kernel wrote `res` bytes into the spare capacity.
                unsafe { c.inbuf.set_len(c.inbuf.len() + res as usize) };
                self.serve(ring, now, key);
                self.note(key);
            }
            OpKind::ControlSend => {
                let Some(c) = self.conns.get_mut(key).filter(|c| c.owns(tag)) else {
                    return;
                };
                if !c.life.finish(Pending::Send) {
                    return; // not this connection's: nothing of it is out
                }
                if res < 0 || c.life.close_wanted() {
                    self.close(ring, key);
                    return;
                }
                c.since = now;
                // Answers written meanwhile go out together, after the rest
                // of a partial send.
                if !c.send.sent(res as usize) {
                    self.arm_send(ring, key);
                } else {
                    c.send.shrink(KEEP_CAPACITY);
                    if c.close_after_send {
                        self.close(ring, key);
                        return;
                    }
                }
                // Serve anything held back behind unsent answers.
                self.serve(ring, now, key);
                self.note(key);
            }
            OpKind::ControlClose => {
                if !self.conns.get(key).is_some_and(|c| c.owns(tag)) {
                    return;
                }
                if self.conns.remove(key).refused {
                    self.refusing -= 1;
                }
            }
            _ => {}
        }
    }

    /// Takes a new connection `fd`, or refuses it (503) over the cap.
    fn on_accept(&mut self, ring: &mut IoUring, now: Millis, fd: i32) {
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
            self.arm_recv(ring, key);
            self.note(key);
            return;
        }
        self.counters.refused += 1;
        if self.refusing >= MAX_REFUSING {
            // SAFETY: closing the descriptor the accept just gave us; no
            // operation of ours uses it.
            unsafe { libc::close(fd) };
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
        self.arm_send(ring, key);
        self.note(key);
    }

    /// Takes the next complete request off connection `key` and hands it
    /// to the shard; reads on when none is complete. One request at a time
    /// is with the shard, so answers keep the order of the requests.
    fn serve(&mut self, ring: &mut IoUring, now: Millis, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.close_wanted() || c.awaiting || c.close_after_send || c.send.unsent() > MAX_UNSENT
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
                c.awaiting = true;
                c.keep_alive = req.keep_alive;
                let caller = Caller {
                    key,
                    generation: c.generation,
                };
                self.ready.push((caller, req));
            }
            Ok(None) => self.arm_recv(ring, key),
            Err(e) => {
                let status = e.status();
                let body = routes::error_body(&e.to_string());
                http::write_response(c.answers(), status, "application/json", &body, false);
                c.close_after_send = true;
                c.since = now;
                if !c.life.in_flight(Pending::Recv) {
                    c.inbuf.clear();
                }
                self.mark_unsent(key);
            }
        }
    }

    fn arm_recv(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !c.life.start(Pending::Recv) {
            return;
        }
        let tag = OpTag::of(OpKind::ControlRecv, key as u32, c.generation);
        let entry = entries::recv_into_spare(c.fd, &mut c.inbuf, READ_CHUNK, tag.encode());
        push(ring, entry);
    }

    fn arm_send(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.in_flight(Pending::Send) || c.life.close_wanted() {
            return;
        }
        let Some(rest) = c.send.to_send() else {
            return;
        };
        let tag = OpTag::of(OpKind::ControlSend, key as u32, c.generation);
        let entry = entries::send(c.fd, rest, tag.encode());
        c.life.start(Pending::Send);
        push(ring, entry);
    }

    /// Closes `key` once no operation of it is in flight; a pending
    /// receive is ended by shutting the socket down first.
    fn close(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.life.is_close_sent() {
            return;
        }
        if c.life.busy() {
            if c.life.want_close() {
                // SAFETY: shutting down a socket this connection owns; its
                // pending operations then complete and call back here.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
            }
            return;
        }
        c.life.close_sent();
        let entry = opcode::Close::new(types::Fd(c.fd))
            .build()
            .user_data(OpTag::of(OpKind::ControlClose, key as u32, c.generation).encode());
        push(ring, entry);
    }
}

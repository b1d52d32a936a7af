//! Per-shard keep-alive connection pools to HTTP backends (a few backend
//! connections on ordinary descriptors, not millions). The client is
//! sans-IO: it queues [`FdOp`]s (open, connect, send, receive, shutdown,
//! close) for its driver and learns their results through its `on_*`
//! inputs, each naming the connection's key and generation.
//!
//! A request is queued on its pool, written to a ready connection with
//! room (up to `depth` pipelined requests each) or waits for one to open.
//! Every request has a deadline counted from submission; the owner calls
//! [`HttpClient::expire`] and a request past it fails with
//! [`Failure::Timeout`] (its connection is closed: responses are in order).
//! Results land in [`HttpClient::done`] for the owner to drain.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use protocol::time::Millis;
use slab::Slab;
use socket2::SockAddr;

use super::http_client::{Response, parse_response};
use crate::fd_ops::{FdDone, FdOpKind, FdOps};
use crate::stream::{Pending, SendBuf, StreamLife};

mod io;
#[cfg(test)]
mod tests;

use io::{arm_recv, flush};

/// Bytes a receive of a backend connection reads at most.
const READ_CHUNK: usize = 16 * 1024;

/// Where a pool connects and what its requests say.
#[derive(Debug)]
pub struct Endpoint {
    /// Resolved address (boxed: the kernel may read it while a connect is
    /// in flight).
    pub addr: Box<SockAddr>,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
}

/// Limits of one pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Most connections.
    pub size: u32,
    /// Most requests in flight on one connection.
    pub depth: u32,
    /// Connect timeout.
    pub connect_timeout_ms: u32,
    /// Whole-request timeout (from submission).
    pub request_timeout_ms: u32,
    /// How long a failed connect marks the pool down.
    pub down_hold_ms: u32,
    /// Largest response body.
    pub max_response: usize,
}

/// Index of a pool in its [`HttpClient`].
pub type PoolId = usize;

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect, or the connection broke.
    Unavailable(String),
    /// No complete response by the deadline.
    Timeout,
    /// The response was malformed or too large.
    BadResponse(String),
}

/// A finished request: who asked, and what came back.
#[derive(Debug)]
pub struct Done<O> {
    /// The owner's tag given to [`HttpClient::submit`].
    pub owner: O,
    /// The response, or why there is none.
    pub result: Result<Response, Failure>,
}

#[derive(Debug)]
struct Req<O> {
    owner: O,
    bytes: Vec<u8>,
    serial: u32,
    retried: bool,
    conn: Option<usize>,
}

#[derive(Debug, Default)]
struct Conn {
    fd: RawFd,
    /// Tells this connection from an earlier one in its slab slot.
    generation: u32,
    pool: PoolId,
    /// Connected: requests may be written.
    ready: bool,
    inbuf: Vec<u8>,
    /// Requests being sent and those written meanwhile.
    send: SendBuf,
    /// Connect, receive and send in flight, and the close.
    life: StreamLife,
    served: u64,
    inflight: VecDeque<usize>,
}

#[derive(Debug)]
struct Pool {
    endpoint: Endpoint,
    limits: PoolLimits,
    conns: Vec<usize>,
    waiting: VecDeque<(usize, u32)>,
    deadlines: VecDeque<(Millis, usize, u32)>,
    down_until: Millis,
}

/// The HTTP client of one shard: every pool, connection and request.
#[derive(Debug)]
pub struct HttpClient<O> {
    pools: Vec<Pool>,
    conns: Slab<Conn>,
    reqs: Slab<Req<O>>,
    serial: u32,
    /// Generation of the next connection.
    next_generation: u32,
    /// Finished requests, for the owner to drain.
    pub done: Vec<Done<O>>,
    /// Connections opened (for stats).
    pub connects: u64,
    /// Connect attempts that failed (for stats).
    pub connect_errors: u64,
    /// Operations for the driver.
    ops: FdOps,
}

impl<O> Default for HttpClient<O> {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            conns: Slab::new(),
            reqs: Slab::new(),
            serial: 0,
            next_generation: 0,
            done: Vec::new(),
            connects: 0,
            connect_errors: 0,
            ops: FdOps::default(),
        }
    }
}

impl<O> HttpClient<O> {
    /// Adds a pool; requests name it by the returned id.
    pub fn add_pool(&mut self, endpoint: Endpoint, limits: PoolLimits) -> PoolId {
        self.pools.push(Pool {
            endpoint,
            limits,
            conns: Vec::new(),
            waiting: VecDeque::new(),
            deadlines: VecDeque::new(),
            down_until: Millis(0),
        });
        self.pools.len() - 1
    }

    /// The pool's endpoint (host header and path for requests).
    pub fn endpoint(&self, pool: PoolId) -> Option<&Endpoint> {
        self.pools.get(pool).map(|p| &p.endpoint)
    }

    /// Requests queued or in flight, all pools.
    pub fn in_flight(&self) -> usize {
        self.reqs.len()
    }

    /// Queues a complete request (`bytes`, see [`super::http_client::write_post`]).
    /// Fails at once when the pool is marked down and has no open connection.
    pub fn submit(
        &mut self,
        now: Millis,
        pool: PoolId,
        owner: O,
        bytes: Vec<u8>,
    ) -> Result<(), (O, Failure)> {
        let Some(p) = self.pools.get_mut(pool) else {
            return Err((owner, Failure::Unavailable("no such backend".into())));
        };
        let any_ready = p
            .conns
            .iter()
            .any(|&c| self.conns.get(c).is_some_and(|c| c.ready));
        if now < p.down_until && !any_ready {
            return Err((
                owner,
                Failure::Unavailable("backend down (connect failed)".into()),
            ));
        }
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let deadline = Millis(now.0 + u64::from(p.limits.request_timeout_ms));
        let key = self.reqs.insert(Req {
            owner,
            bytes,
            serial,
            retried: false,
            conn: None,
        });
        p.waiting.push_back((key, serial));
        p.deadlines.push_back((deadline, key, serial));
        self.pump(now, pool);
        Ok(())
    }

    /// The earliest request deadline of any pool.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.pools
            .iter()
            .filter_map(|p| p.deadlines.front().map(|d| d.0))
            .min()
    }

    /// Fails every request whose deadline has passed.
    pub fn expire(&mut self, now: Millis) {
        for pool in 0..self.pools.len() {
            while let Some(&(at, key, serial)) = self.pools[pool].deadlines.front() {
                if self.reqs.get(key).is_some_and(|r| r.serial != serial)
                    || !self.reqs.contains(key)
                {
                    self.pools[pool].deadlines.pop_front();
                    continue;
                }
                if at > now {
                    break;
                }
                self.pools[pool].deadlines.pop_front();
                let conn = self.reqs.get(key).and_then(|r| r.conn);
                self.finish(key, Err(Failure::Timeout));
                if let Some(c) = conn {
                    if let Some(conn) = self.conns.get_mut(c) {
                        conn.inflight.retain(|&k| k != key);
                    }
                    self.close(c, "request timed out");
                }
            }
        }
    }

    fn finish(&mut self, key: usize, result: Result<Response, Failure>) {
        if let Some(req) = self.reqs.try_remove(key) {
            self.done.push(Done {
                owner: req.owner,
                result,
            });
        }
    }

    /// Hands waiting requests to connections, opening new ones as needed.
    fn pump(&mut self, now: Millis, pool: PoolId) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let depth = p.limits.depth.max(1) as usize;
        while let Some(&(key, serial)) = p.waiting.front() {
            if self.reqs.get(key).is_none_or(|r| r.serial != serial) {
                p.waiting.pop_front();
                continue;
            }
            // The least-loaded ready connection with room.
            let best = p
                .conns
                .iter()
                .filter_map(|&c| {
                    let conn = self.conns.get(c)?;
                    (conn.ready && !conn.life.close_wanted() && conn.inflight.len() < depth)
                        .then_some((conn.inflight.len(), c))
                })
                .min();
            let Some((_, c)) = best else {
                break;
            };
            p.waiting.pop_front();
            let Some(req) = self.reqs.get_mut(key) else {
                continue;
            };
            req.conn = Some(c);
            if let Some(conn) = self.conns.get_mut(c) {
                conn.send.writer().extend_from_slice(&req.bytes);
                conn.inflight.push_back(key);
            }
            flush(&mut self.conns, &mut self.ops, c);
        }
        // Open connections for what still waits (those connecting count).
        let live = |c: &usize| self.conns.get(*c).is_some_and(|c| !c.life.close_wanted());
        let connecting = p
            .conns
            .iter()
            .filter(|c| live(c) && self.conns.get(**c).is_some_and(|c| !c.ready))
            .count();
        let open = p.conns.iter().filter(|c| live(c)).count();
        let want = p.waiting.len().div_ceil(depth);
        let room = (p.limits.size as usize).saturating_sub(open);
        let to_open = want.saturating_sub(connecting).min(room);
        if now < p.down_until {
            return;
        }
        for _ in 0..to_open {
            self.open(pool);
        }
    }

    /// Starts a new connection of `pool`: the driver opens its socket and
    /// answers with [`HttpClient::on_done`].
    fn open(&mut self, pool: PoolId) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut life = StreamLife::default();
        life.start(Pending::Connect);
        let key = self.conns.insert(Conn {
            fd: -1,
            generation,
            pool,
            life,
            ..Conn::default()
        });
        p.conns.push(key);
        self.ops.push(key, generation, -1, FdOpKind::Open);
    }

    /// An operation of connection `key` (of `generation`) ended at `now`;
    /// a completion for another connection is ignored.
    pub fn on_done(&mut self, now: Millis, key: u32, generation: u32, done: FdDone) {
        match done {
            FdDone::Opened(fd) => self.on_opened(now, key, generation, fd),
            FdDone::Connected(res) => self.on_connect_done(now, key, generation, res),
            FdDone::Sent(res) => self.on_send_done(key, generation, res),
            FdDone::Received(res) => self.on_recv_done(now, key, generation, res),
            FdDone::Closed => self.on_close_done(now, key, generation),
        }
    }

    /// The driver opened connection `key`'s socket (`Ok(fd)`, TCP_NODELAY
    /// set) or could not; on success its connect is queued.
    fn on_opened(&mut self, now: Millis, key: u32, generation: u32, fd: std::io::Result<RawFd>) {
        let Some(conn) = self.conn_mut(key, generation) else {
            return;
        };
        let pool = conn.pool;
        match fd {
            Ok(fd) if conn.life.close_wanted() => {
                // Given up while the socket was being opened.
                conn.fd = fd;
                conn.life.finish(Pending::Connect);
                self.close(key as usize, "closing");
            }
            Ok(fd) => {
                conn.fd = fd;
                let timeout_ms = self
                    .pools
                    .get(pool)
                    .map_or(1_000, |p| p.limits.connect_timeout_ms);
                self.ops.push(
                    key as usize,
                    generation,
                    fd,
                    FdOpKind::Connect { timeout_ms },
                );
            }
            Err(e) => {
                // No descriptor, so nothing to close: the slot goes now.
                self.conns.remove(key as usize);
                if let Some(p) = self.pools.get_mut(pool) {
                    p.conns.retain(|&k| k != key as usize);
                }
                self.connect_errors += 1;
                self.mark_down(now, pool, &format!("cannot create socket: {e}"));
            }
        }
    }

    fn mark_down(&mut self, now: Millis, pool: PoolId, why: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        p.down_until = Millis(now.0 + u64::from(p.limits.down_hold_ms));
        let waiting: Vec<_> = p.waiting.drain(..).collect();
        for (key, serial) in waiting {
            if self.reqs.get(key).is_some_and(|r| r.serial == serial) {
                self.finish(key, Err(Failure::Unavailable(why.to_string())));
            }
        }
    }

    /// Connection `key`'s connect ended: `Ok` connected, `Err(errno)`
    /// failed (`ECANCELED`: its timeout fired).
    fn on_connect_done(&mut self, now: Millis, key: u32, generation: u32, res: Result<(), i32>) {
        let c = key as usize;
        let Some(conn) = self.conn_mut(key, generation) else {
            return; // not this connection's
        };
        conn.life.finish(Pending::Connect);
        let pool = conn.pool;
        match res {
            Ok(()) if !conn.life.close_wanted() => {}
            _ => {
                self.connect_errors += 1;
                let why = match res {
                    Err(e) if e == libc::ECANCELED => "connect timed out".to_string(),
                    Err(e) => format!("connect failed: {}", std::io::Error::from_raw_os_error(e)),
                    Ok(()) => "closing".to_string(),
                };
                self.close(c, &why);
                self.mark_down(now, pool, &why);
                return;
            }
        }
        conn.ready = true;
        self.connects += 1;
        if let Some(p) = self.pools.get_mut(pool) {
            p.down_until = Millis(0);
        }
        arm_recv(&mut self.conns, &mut self.ops, c);
        self.pump(now, pool);
    }

    /// A send of connection `key` ended: `Ok(n)` bytes went out, or
    /// `Err(errno)`.
    fn on_send_done(&mut self, key: u32, generation: u32, res: Result<usize, i32>) {
        let c = key as usize;
        let Some(conn) = self.conn_mut(key, generation) else {
            return; // not this connection's
        };
        conn.life.finish(Pending::Send);
        match res {
            Ok(n) if n > 0 && !conn.life.close_wanted() => {
                conn.send.sent(n);
                flush(&mut self.conns, &mut self.ops, c);
            }
            _ => self.close(c, "send failed"),
        }
    }

    /// The close of connection `key` completed: its slot is free, and
    /// what waits for a connection may open another.
    fn on_close_done(&mut self, now: Millis, key: u32, generation: u32) {
        let c = key as usize;
        if self.conn(key, generation).is_none() {
            return;
        }
        if let Some(conn) = self.conns.try_remove(c) {
            debug_assert!(!conn.life.busy(), "closed with an operation in flight");
            let pool = conn.pool;
            if let Some(p) = self.pools.get_mut(pool) {
                p.conns.retain(|&k| k != c);
            }
            self.pump(now, pool);
        }
    }

    /// A receive of connection `key` ended: `Ok(n)` bytes were added to
    /// its [`HttpClient::recv_buffer`] (0: the backend closed), or
    /// `Err(errno)`.
    fn on_recv_done(&mut self, now: Millis, key: u32, generation: u32, res: Result<usize, i32>) {
        let c = key as usize;
        if self.conn(key, generation).is_none() {
            return; // not this connection's
        }
        self.on_recv(now, c, res.unwrap_or(0));
    }

    fn on_recv(&mut self, now: Millis, c: usize, n: usize) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        conn.life.finish(Pending::Recv);
        if conn.life.close_wanted() {
            self.close(c, "closing");
            return;
        }
        let eof = n == 0;
        let pool = conn.pool;
        let max = self
            .pools
            .get(pool)
            .map_or(1 << 20, |p| p.limits.max_response);
        let mut keep = true;
        loop {
            let Some(conn) = self.conns.get_mut(c) else {
                return;
            };
            let Some(&key) = conn.inflight.front() else {
                break;
            };
            match parse_response(&conn.inbuf, eof, max) {
                Ok(Some((resp, used))) => {
                    conn.inbuf.drain(..used);
                    conn.inflight.pop_front();
                    conn.served += 1;
                    keep = resp.keep_alive;
                    self.finish(key, Ok(resp));
                    if !keep {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.inflight.pop_front();
                    let stale = eof && conn.inbuf.is_empty() && conn.served > 0;
                    if stale {
                        // A reused connection the backend had closed: the
                        // request never reached it, so it is sent again once.
                        conn.inflight.push_front(key);
                    } else {
                        let failure = match e {
                            super::http_client::ResponseError::Truncated => {
                                Failure::Unavailable("backend closed the connection".into())
                            }
                            other => Failure::BadResponse(other.to_string()),
                        };
                        self.finish(key, Err(failure));
                    }
                    keep = false;
                    break;
                }
            }
        }
        if eof || !keep {
            self.close(c, "backend closed the connection");
        } else {
            arm_recv(&mut self.conns, &mut self.ops, c);
        }
        self.pump(now, pool);
    }

    /// Closes connection `c`: its requests in flight are sent again once if
    /// they never got an answer on a reused connection, else fail.
    fn close(&mut self, c: usize, why: &str) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let pool = conn.pool;
        let reused = conn.served > 0;
        let orphans: Vec<usize> = conn.inflight.drain(..).collect();
        let first = conn.life.want_close();
        if conn.life.may_close(&[]) {
            conn.life.close_sent();
            self.ops.push(c, conn.generation, conn.fd, FdOpKind::Close);
        } else if first && conn.life.busy() && conn.fd >= 0 {
            // Its pending operations complete and call back here.
            self.ops
                .push(c, conn.generation, conn.fd, FdOpKind::Shutdown);
        }
        for key in orphans.into_iter().rev() {
            let Some(req) = self.reqs.get_mut(key) else {
                continue;
            };
            req.conn = None;
            if reused && !req.retried {
                req.retried = true;
                let serial = req.serial;
                if let Some(p) = self.pools.get_mut(pool) {
                    p.waiting.push_front((key, serial));
                }
            } else {
                self.finish(key, Err(Failure::Unavailable(why.to_string())));
            }
        }
    }
}

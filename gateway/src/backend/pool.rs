//! Per-shard keep-alive connection pools to HTTP backends, driven by the
//! shard's io_uring ring (Connect + LinkTimeout, Send, Recv, Close on
//! ordinary descriptors: a few backend connections, not millions).
//!
//! A request is queued on its pool, written to a ready connection with
//! room (up to `depth` pipelined requests each) or waits for one to open.
//! Every request has a deadline counted from submission; the owner calls
//! [`HttpClient::expire`] and a request past it fails with
//! [`Failure::Timeout`] (its connection is closed: responses are in order).
//! Results land in [`HttpClient::done`] for the owner to drain.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, squeue, types};
use protocol::time::Millis;
use slab::Slab;
use socket2::SockAddr;

use super::http_client::{Response, parse_response};
use super::push;
use crate::stream::{Pending, SendBuf, StreamLife};
use crate::uring::op::{OpKind, OpTag};

mod io;

use io::{arm_recv, flush, push_pair};

/// Bytes a receive of a backend connection reads at most.
const READ_CHUNK: usize = 16 * 1024;

/// Where a pool connects and what its requests say.
#[derive(Debug)]
pub struct Endpoint {
    /// Resolved address (boxed: the kernel reads it during Connect).
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
    /// The connect timeout as the LinkTimeout behind each Connect reads
    /// it. Boxed and owned by the pool, so it outlives every submission,
    /// including one that stays queued because `io_uring_enter` failed.
    connect_timeout: Box<types::Timespec>,
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
        }
    }
}

impl<O> HttpClient<O> {
    /// Adds a pool; requests name it by the returned id.
    pub fn add_pool(&mut self, endpoint: Endpoint, limits: PoolLimits) -> PoolId {
        let ms = u64::from(limits.connect_timeout_ms);
        let connect_timeout = Box::new(
            types::Timespec::new()
                .sec(ms / 1000)
                .nsec(((ms % 1000) * 1_000_000) as u32),
        );
        self.pools.push(Pool {
            endpoint,
            limits,
            connect_timeout,
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
        ring: &mut IoUring,
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
        self.pump(ring, now, pool);
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
    pub fn expire(&mut self, ring: &mut IoUring, now: Millis) {
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
                    self.close(ring, c, "request timed out");
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
    fn pump(&mut self, ring: &mut IoUring, now: Millis, pool: PoolId) {
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
            flush(ring, &mut self.conns, c);
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
            match self.connect(ring, pool) {
                Ok(()) => {}
                Err(e) => {
                    self.connect_errors += 1;
                    self.mark_down(now, pool, &format!("cannot create socket: {e}"));
                    break;
                }
            }
        }
    }

    fn connect(&mut self, ring: &mut IoUring, pool: PoolId) -> std::io::Result<()> {
        let Some(p) = self.pools.get_mut(pool) else {
            return Ok(());
        };
        let addr = &p.endpoint.addr;
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                i32::from(addr.family()),
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a live int on a socket we own.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut life = StreamLife::default();
        life.start(Pending::Connect);
        let key = self.conns.insert(Conn {
            fd,
            generation,
            pool,
            life,
            ..Conn::default()
        });
        p.conns.push(key);
        let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(OpTag::of(OpKind::BackendConnect, key as u32, generation).encode());
        // Both entries go in back to back (a link must not be split over
        // two submissions); the timespec is the pool's, which outlives them.
        let timeout = opcode::LinkTimeout::new(&*p.connect_timeout)
            .build()
            .user_data(OpTag::of(OpKind::BackendLinkTimeout, key as u32, generation).encode());
        push_pair(ring, connect, timeout);
        Ok(())
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

    /// Handles a completion of a backend-connection operation.
    pub fn on_completion(&mut self, ring: &mut IoUring, now: Millis, tag: OpTag, res: i32) {
        let c = tag.index as usize;
        if !self
            .conns
            .get(c)
            .is_some_and(|conn| tag.is_for(conn.generation))
        {
            return; // not this connection's
        }
        match tag.kind {
            OpKind::BackendConnect => {
                let Some(conn) = self.conns.get_mut(c) else {
                    return;
                };
                conn.life.finish(Pending::Connect);
                let pool = conn.pool;
                if res < 0 || conn.life.close_wanted() {
                    self.connect_errors += 1;
                    let why = if res == -libc::ECANCELED {
                        "connect timed out".to_string()
                    } else {
                        format!(
                            "connect failed: {}",
                            std::io::Error::from_raw_os_error(-res)
                        )
                    };
                    self.close(ring, c, &why);
                    self.mark_down(now, pool, &why);
                    return;
                }
                conn.ready = true;
                self.connects += 1;
                if let Some(p) = self.pools.get_mut(pool) {
                    p.down_until = Millis(0);
                }
                arm_recv(ring, &mut self.conns, c);
                self.pump(ring, now, pool);
            }
            OpKind::BackendSend => {
                let Some(conn) = self.conns.get_mut(c) else {
                    return;
                };
                conn.life.finish(Pending::Send);
                if res <= 0 || conn.life.close_wanted() {
                    self.close(ring, c, "send failed");
                    return;
                }
                conn.send.sent(res as usize);
                flush(ring, &mut self.conns, c);
            }
            OpKind::BackendRecv => self.on_recv(ring, now, c, res),
            OpKind::BackendClose => {
                if let Some(conn) = self.conns.try_remove(c) {
                    debug_assert!(!conn.life.busy(), "closed with an operation in flight");
                    let pool = conn.pool;
                    if let Some(p) = self.pools.get_mut(pool) {
                        p.conns.retain(|&k| k != c);
                    }
                    self.pump(ring, now, pool);
                }
            }
            _ => {}
        }
    }

    fn on_recv(&mut self, ring: &mut IoUring, now: Millis, c: usize, res: i32) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        conn.life.finish(Pending::Recv);
        if conn.life.close_wanted() {
            self.close(ring, c, "closing");
            return;
        }
        let eof = res <= 0;
        if res > 0 {
            // SAFETY: the kernel wrote `res` bytes into the spare capacity.
            unsafe { conn.inbuf.set_len(conn.inbuf.len() + res as usize) };
        }
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
            self.close(ring, c, "backend closed the connection");
        } else {
            arm_recv(ring, &mut self.conns, c);
        }
        self.pump(ring, now, pool);
    }

    /// Closes connection `c`: its requests in flight are sent again once if
    /// they never got an answer on a reused connection, else fail.
    fn close(&mut self, ring: &mut IoUring, c: usize, why: &str) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let pool = conn.pool;
        let reused = conn.served > 0;
        let orphans: Vec<usize> = conn.inflight.drain(..).collect();
        let first = conn.life.want_close();
        if conn.life.may_close(&[]) {
            conn.life.close_sent();
            let entry = opcode::Close::new(types::Fd(conn.fd))
                .build()
                .user_data(OpTag::of(OpKind::BackendClose, c as u32, conn.generation).encode());
            push(ring, std::slice::from_ref(&entry));
        } else if first && conn.life.busy() {
            // SAFETY: shutting down a socket this connection owns; its
            // pending operations complete and call back here.
            unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
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

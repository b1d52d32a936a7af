//! The control listener of one shard: HTTP/1.1 keep-alive on ordinary
//! descriptors (a handful of backend connections, not millions), served
//! from the shard's own ring. Every shard serves it via SO_REUSEPORT.

pub mod http;
pub mod routes;

use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;
use socket2::Socket;

use crate::uring::op::{OpKind, OpTag};

const READ_CHUNK: usize = 8192;

/// Answer bytes a connection may have waiting before the server stops
/// taking its pipelined requests (a client that sends and never reads
/// cannot grow them without bound).
const MAX_UNSENT: usize = 1 << 20;

#[derive(Debug, Default)]
struct ControlConn {
    generation: u32,
    fd: i32,
    inbuf: Vec<u8>,
    /// Answers being sent (the kernel reads from it while a send is out).
    outbuf: Vec<u8>,
    /// Answers written while a send is out; they go next, in one send.
    queued: Vec<u8>,
    sent: usize,
    recv_in_flight: bool,
    send_in_flight: bool,
    close_after_send: bool,
    closing: bool,
    close_sent: bool,
    /// A request was handed to the shard and is not answered yet; later
    /// pipelined requests wait so responses keep their order.
    awaiting: bool,
    /// Whether the request being answered keeps the connection open.
    keep_alive: bool,
    /// Listed in `ControlServer::unsent` for the next `flush_sends`.
    listed: bool,
}

impl ControlConn {
    /// Where an answer is written now: behind the send in flight, if any.
    fn answers(&mut self) -> &mut Vec<u8> {
        if self.send_in_flight {
            &mut self.queued
        } else {
            &mut self.outbuf
        }
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
}

/// Who asked: a control connection, told apart from a later connection
/// that reuses its slot, so a late answer never reaches the wrong caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    key: usize,
    generation: u32,
}

fn push(ring: &mut IoUring, entry: squeue::Entry) {
    loop {
        // SAFETY: entries point into buffers owned by `ControlConn`s that
        // stay in the slab until their operations complete.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return;
        }
        if ring.submit().is_err() {
            std::thread::yield_now();
        }
    }
}

impl ControlServer {
    /// Serves `listener` (bound and listening already).
    pub fn new(listener: Socket) -> Self {
        Self {
            listener,
            conns: Slab::new(),
            ready: Vec::new(),
            unsent: Vec::new(),
            next_generation: 0,
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
    pub fn respond(&mut self, ring: &mut IoUring, caller: Caller, resp: &routes::Response) {
        let key = caller.key;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.generation != caller.generation || !c.awaiting || c.closing {
            return;
        }
        c.awaiting = false;
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
        self.serve(ring, key);
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
            if !c.send_in_flight && !c.closing && c.sent < c.outbuf.len() {
                self.arm_send(ring, key);
            }
        }
        self.unsent = keys;
    }

    fn mark_unsent(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.listed
            && !c.send_in_flight
        {
            c.listed = true;
            self.unsent.push(key);
        }
    }

    /// Handles a completion of a control operation.
    pub fn on_completion(&mut self, ring: &mut IoUring, tag: OpTag, res: i32, _flags: u32) {
        let key = tag.index as usize;
        match tag.kind {
            OpKind::ControlAccept => {
                self.arm_accept(ring);
                if res >= 0 {
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1);
                    let key = self.conns.insert(ControlConn {
                        fd: res,
                        generation,
                        ..Default::default()
                    });
                    self.arm_recv(ring, key);
                }
            }
            OpKind::ControlRecv => {
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                c.recv_in_flight = false;
                if res <= 0 || c.closing {
                    self.close(ring, key);
                    return;
                }
                // SAFETY: the kernel wrote `res` bytes into the spare capacity.
                unsafe { c.inbuf.set_len(c.inbuf.len() + res as usize) };
                self.serve(ring, key);
            }
            OpKind::ControlSend => {
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                c.send_in_flight = false;
                if res < 0 || c.closing {
                    self.close(ring, key);
                    return;
                }
                c.sent += res as usize;
                if c.sent < c.outbuf.len() {
                    self.arm_send(ring, key);
                    return;
                }
                c.outbuf.clear();
                c.sent = 0;
                if !c.queued.is_empty() {
                    // Answers written meanwhile go out together.
                    std::mem::swap(&mut c.outbuf, &mut c.queued);
                    self.arm_send(ring, key);
                } else if c.close_after_send {
                    self.close(ring, key);
                    return;
                }
                // Serve anything held back behind unsent answers.
                self.serve(ring, key);
            }
            OpKind::ControlClose => {
                self.conns.try_remove(key);
            }
            _ => {}
        }
    }

    /// Takes the next complete request off connection `key` and hands it
    /// to the shard; reads on when none is complete. One request at a time
    /// is with the shard, so answers keep the order of the requests.
    fn serve(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing
            || c.awaiting
            || c.close_after_send
            || c.outbuf.len() + c.queued.len() > MAX_UNSENT
        {
            return;
        }
        match http::parse_request(&c.inbuf) {
            Ok(Some((req, used))) => {
                c.inbuf.drain(..used);
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
                c.inbuf.clear();
                self.mark_unsent(key);
            }
        }
    }

    fn arm_recv(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.recv_in_flight || c.closing {
            return;
        }
        c.inbuf.reserve(READ_CHUNK);
        let spare = c.inbuf.spare_capacity_mut();
        let entry = opcode::Recv::new(
            types::Fd(c.fd),
            spare.as_mut_ptr().cast(),
            spare.len() as u32,
        )
        .build()
        .user_data(OpTag::new(OpKind::ControlRecv, key as u32).encode());
        c.recv_in_flight = true;
        push(ring, entry);
    }

    fn arm_send(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let rest = &c.outbuf[c.sent..];
        let entry = opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(OpTag::new(OpKind::ControlSend, key as u32).encode());
        c.send_in_flight = true;
        push(ring, entry);
    }

    /// Closes `key` once no operation of it is in flight; a pending
    /// receive is ended by shutting the socket down first.
    fn close(&mut self, ring: &mut IoUring, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.close_sent {
            return;
        }
        if c.recv_in_flight || c.send_in_flight {
            if !c.closing {
                // SAFETY: shutting down a socket this connection owns; its
                // pending operations then complete and call back here.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
            }
            c.closing = true;
            return;
        }
        c.closing = true;
        c.close_sent = true;
        let entry = opcode::Close::new(types::Fd(c.fd))
            .build()
            .user_data(OpTag::new(OpKind::ControlClose, key as u32).encode());
        push(ring, entry);
    }
}

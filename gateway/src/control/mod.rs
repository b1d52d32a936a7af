//! The control listener of one shard: HTTP/1.1 keep-alive on ordinary
//! descriptors (a handful of backend connections, not millions), served
//! from the shard's own ring. Every shard serves it via SO_REUSEPORT.

pub mod http;
mod routes;

use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;
use socket2::Socket;

use crate::runtime::Shared;
use crate::uring::op::{OpKind, OpTag};

const READ_CHUNK: usize = 8192;

#[derive(Debug, Default)]
struct ControlConn {
    fd: i32,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    sent: usize,
    recv_in_flight: bool,
    send_in_flight: bool,
    close_after_send: bool,
    closing: bool,
    close_sent: bool,
}

/// One shard's control listener and its connections.
#[derive(Debug)]
pub struct ControlServer {
    listener: Socket,
    conns: Slab<ControlConn>,
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
        }
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

    /// Handles a completion of a control operation.
    pub fn on_completion(
        &mut self,
        ring: &mut IoUring,
        tag: OpTag,
        res: i32,
        _flags: u32,
        shared: &Shared,
    ) {
        let key = tag.index as usize;
        match tag.kind {
            OpKind::ControlAccept => {
                self.arm_accept(ring);
                if res >= 0 {
                    let key = self.conns.insert(ControlConn {
                        fd: res,
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
                self.serve(ring, key, shared);
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
                } else {
                    c.outbuf.clear();
                    c.sent = 0;
                    if c.close_after_send {
                        self.close(ring, key);
                    } else {
                        // Serve anything pipelined behind, then read on.
                        self.serve(ring, key, shared);
                    }
                }
            }
            OpKind::ControlClose => {
                self.conns.try_remove(key);
            }
            _ => {}
        }
    }

    fn serve(&mut self, ring: &mut IoUring, key: usize, shared: &Shared) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.send_in_flight || c.closing {
            return;
        }
        let mut consumed = 0;
        loop {
            match http::parse_request(&c.inbuf[consumed..]) {
                Ok(Some((req, used))) => {
                    consumed += used;
                    let resp = routes::route(&req, shared);
                    let keep = req.keep_alive && resp.status < 500;
                    http::write_response(
                        &mut c.outbuf,
                        resp.status,
                        resp.content_type,
                        &resp.body,
                        keep,
                    );
                    if !keep {
                        c.close_after_send = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let status = if e == http::FramingError::TooLarge {
                        413
                    } else {
                        400
                    };
                    let body = routes::error_body(&e.to_string());
                    http::write_response(&mut c.outbuf, status, "application/json", &body, false);
                    c.close_after_send = true;
                    consumed = c.inbuf.len();
                    break;
                }
            }
        }
        c.inbuf.drain(..consumed);
        if !c.outbuf.is_empty() {
            self.arm_send(ring, key);
        } else {
            self.arm_recv(ring, key);
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

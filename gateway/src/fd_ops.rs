//! What the control server and the backend client ask their driver to do
//! with their ordinary descriptors. Both are sans-IO state machines: they
//! make no syscall and build no SQE; they queue [`FdOp`]s, and the driver
//! (io_uring today, epoll next) performs them and reports back through
//! their `on_*` inputs, naming the same key and generation.
//!
//! Receives and sends work on buffers the state machine owns: for a
//! [`FdOpKind::Recv`] the driver writes into the connection's receive
//! buffer (its spare capacity, or a copy from a scratch buffer) and says
//! how many bytes it added; for a [`FdOpKind::Send`] it reads the bytes
//! the state machine lends until the send's completion.

use std::os::fd::RawFd;

/// One operation on a connection's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdOp {
    /// The connection's slot.
    pub key: u32,
    /// The connection's generation in that slot; its completion names it.
    pub generation: u32,
    /// The descriptor (the driver gave it: accepted or opened).
    pub fd: RawFd,
    /// What to do.
    pub kind: FdOpKind,
}

/// What an [`FdOp`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdOpKind {
    /// Open a TCP socket for the connection (`fd` is -1); the driver
    /// answers with the state machine's `on_opened`, at once.
    Open,
    /// Connect the opened socket to the connection's address, within
    /// `timeout_ms`.
    Connect {
        /// Connect timeout.
        timeout_ms: u32,
    },
    /// Receive at most `max` bytes into the connection's receive buffer.
    Recv {
        /// Most bytes to take.
        max: usize,
    },
    /// Send the bytes the state machine lends for this connection.
    Send,
    /// Shut the socket down now (both ways), so the operations in flight
    /// end; there is no completion to report.
    Shutdown,
    /// Close the descriptor; its completion frees the slot.
    Close,
    /// Close a descriptor no operation ever used, now, without a
    /// completion (a connection refused before it was taken).
    Discard,
}

/// Operations queued for the driver, in order.
#[derive(Debug, Default)]
pub struct FdOps(Vec<FdOp>);

impl FdOps {
    /// Queues `kind` for connection `key` of `generation` on `fd`.
    pub fn push(&mut self, key: usize, generation: u32, fd: RawFd, kind: FdOpKind) {
        self.0.push(FdOp {
            key: u32::try_from(key).unwrap_or(u32::MAX),
            generation,
            fd,
            kind,
        });
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves the queued operations to `into` (appending, in order).
    pub fn take(&mut self, into: &mut Vec<FdOp>) {
        into.append(&mut self.0);
    }

    /// The queued operations (for tests and simulations).
    pub fn as_slice(&self) -> &[FdOp] {
        &self.0
    }
}

/// How an [`FdOp`] ended, as the driver reports it back (errors are
/// positive errno values).
#[derive(Debug)]
pub enum FdDone {
    /// [`FdOpKind::Open`]: the socket, or why there is none.
    Opened(std::io::Result<RawFd>),
    /// [`FdOpKind::Connect`]: connected, or failed (`ECANCELED`: its
    /// timeout fired).
    Connected(Result<(), i32>),
    /// [`FdOpKind::Recv`]: this many bytes were added to the receive
    /// buffer (0: the peer closed).
    Received(Result<usize, i32>),
    /// [`FdOpKind::Send`]: this many bytes went out.
    Sent(Result<usize, i32>),
    /// [`FdOpKind::Close`] completed: the slot may be freed.
    Closed,
}

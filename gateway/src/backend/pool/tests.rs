//! The pools driven without sockets or a ring: the tests play the driver
//! (they perform the client's operations and decide how each ends) and
//! the clock.

// Test set-up failures must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use protocol::time::Millis;
use socket2::SockAddr;

use super::{Endpoint, Failure, HttpClient, PoolId, PoolLimits};
use crate::fd_ops::{FdDone, FdOp, FdOpKind};

const LIMITS: PoolLimits = PoolLimits {
    size: 2,
    depth: 1,
    connect_timeout_ms: 300,
    request_timeout_ms: 1_000,
    down_hold_ms: 500,
    max_response: 1 << 16,
};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

struct Rig {
    client: HttpClient<u32>,
    pool: PoolId,
    next_fd: i32,
}

impl Rig {
    fn new() -> Self {
        let mut client = HttpClient::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let pool = client.add_pool(
            Endpoint {
                addr: Box::new(SockAddr::from(addr)),
                host: "backend".into(),
                path: "/hook".into(),
            },
            LIMITS,
        );
        Self {
            client,
            pool,
            next_fd: 50,
        }
    }

    fn ops(&mut self) -> Vec<FdOp> {
        let mut ops = Vec::new();
        self.client.take_ops(&mut ops);
        ops
    }

    fn submit(&mut self, now: u64, owner: u32) {
        let bytes =
            format!("POST /hook HTTP/1.1\r\nhost: backend\r\ncontent-length: 1\r\n\r\n{owner}");
        self.client
            .submit(Millis(now), self.pool, owner, bytes.into_bytes())
            .unwrap();
    }

    /// Performs an Open as the driver does, and returns the Connect it
    /// leads to.
    fn open(&mut self, now: u64, op: FdOp) -> FdOp {
        assert_eq!(op.kind, FdOpKind::Open);
        assert!(self.client.connect_addr(op.key, op.generation).is_some());
        let fd = self.next_fd;
        self.next_fd += 1;
        self.client
            .on_done(Millis(now), op.key, op.generation, FdDone::Opened(Ok(fd)));
        let ops = self.ops();
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!(ops[0].kind, FdOpKind::Connect { timeout_ms: 300 });
        assert_eq!(ops[0].fd, fd);
        ops[0]
    }

    /// Opens and connects one connection for what waits; returns its
    /// receive and send, in the order queued.
    fn connect(&mut self, now: u64) -> Vec<FdOp> {
        let ops = self.ops();
        assert_eq!(ops.len(), 1, "{ops:?}");
        let c = self.open(now, ops[0]);
        self.client
            .on_done(Millis(now), c.key, c.generation, FdDone::Connected(Ok(())));
        self.ops()
    }

    /// Completes the send `op` whole; returns the bytes sent.
    fn send(&mut self, op: FdOp) -> Vec<u8> {
        assert_eq!(op.kind, FdOpKind::Send);
        let bytes = self.client.sending(op.key, op.generation).unwrap().to_vec();
        self.client.on_done(
            Millis(0),
            op.key,
            op.generation,
            FdDone::Sent(Ok(bytes.len())),
        );
        bytes
    }

    /// Completes the receive `op` with `bytes` (empty: the backend closed).
    fn recv(&mut self, now: u64, op: FdOp, bytes: &[u8]) {
        assert!(matches!(op.kind, FdOpKind::Recv { .. }));
        self.client
            .recv_buffer(op.key, op.generation)
            .unwrap()
            .extend_from_slice(bytes);
        self.client.on_done(
            Millis(now),
            op.key,
            op.generation,
            FdDone::Received(Ok(bytes.len())),
        );
    }

    fn done(&mut self) -> Vec<(u32, Result<u16, Failure>)> {
        self.client
            .done
            .drain(..)
            .map(|d| (d.owner, d.result.map(|r| r.status)))
            .collect()
    }
}

fn kinds(ops: &[FdOp]) -> Vec<FdOpKind> {
    ops.iter().map(|o| o.kind).collect()
}

#[test]
fn a_request_opens_a_connection_is_sent_and_answered_and_the_connection_is_kept() {
    let mut rig = Rig::new();
    rig.submit(0, 7);
    let ops = rig.connect(10);
    assert_eq!(
        kinds(&ops),
        [FdOpKind::Recv { max: 16 * 1024 }, FdOpKind::Send]
    );
    let sent = rig.send(ops[1]);
    assert!(
        sent.ends_with(b"\r\n\r\n7"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    // The answer may come in pieces.
    rig.recv(20, ops[0], &OK[..10]);
    assert!(rig.done().is_empty());
    let again = rig.ops();
    assert_eq!(kinds(&again), [FdOpKind::Recv { max: 16 * 1024 }]);
    rig.recv(21, again[0], &OK[10..]);
    assert_eq!(rig.done(), [(7, Ok(200))]);
    assert_eq!(rig.client.connects, 1);
    // The next request reuses the connection: no Open.
    rig.submit(30, 8);
    let ops = rig.ops();
    assert_eq!(
        kinds(&ops),
        [FdOpKind::Recv { max: 16 * 1024 }, FdOpKind::Send]
    );
}

#[test]
fn a_completion_for_another_generation_is_ignored() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.ops();
    let open = ops[0];
    rig.client.on_done(
        Millis(0),
        open.key,
        open.generation + 1,
        FdDone::Opened(Ok(99)),
    );
    assert!(rig.ops().is_empty(), "not that connection's");
    assert!(rig.client.sending(open.key, open.generation + 1).is_none());
    let c = rig.open(1, open);
    assert_eq!(c.key, open.key);
}

#[test]
fn a_failed_connect_fails_what_waits_and_holds_the_pool_down() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.ops();
    let c = rig.open(0, ops[0]);
    rig.client.on_done(
        Millis(5),
        c.key,
        c.generation,
        FdDone::Connected(Err(libc::ECONNREFUSED)),
    );
    let done = rig.done();
    assert_eq!(done.len(), 1);
    assert!(
        matches!(&done[0].1, Err(Failure::Unavailable(why)) if why.contains("connect failed")),
        "{done:?}"
    );
    assert_eq!(rig.client.connect_errors, 1);
    // Its socket is closed (nothing is in flight on it).
    let ops = rig.ops();
    assert_eq!(kinds(&ops), [FdOpKind::Close]);
    rig.client
        .on_done(Millis(6), ops[0].key, ops[0].generation, FdDone::Closed);
    // Down for down_hold_ms: refused at once, then tried again.
    let err = rig.client.submit(Millis(100), rig.pool, 2, Vec::new());
    assert!(matches!(err, Err((2, Failure::Unavailable(_)))));
    rig.submit(505, 3);
    assert_eq!(kinds(&rig.ops()), [FdOpKind::Open]);
}

#[test]
fn a_connect_that_times_out_says_so() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.ops();
    let c = rig.open(0, ops[0]);
    rig.client.on_done(
        Millis(300),
        c.key,
        c.generation,
        FdDone::Connected(Err(libc::ECANCELED)),
    );
    let done = rig.done();
    assert!(
        matches!(&done[0].1, Err(Failure::Unavailable(why)) if why == "connect timed out"),
        "{done:?}"
    );
}

#[test]
fn a_socket_that_cannot_be_opened_fails_the_request_with_nothing_to_close() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.ops();
    let err = std::io::Error::from_raw_os_error(libc::EMFILE);
    rig.client.on_done(
        Millis(0),
        ops[0].key,
        ops[0].generation,
        FdDone::Opened(Err(err)),
    );
    let done = rig.done();
    assert!(
        matches!(&done[0].1, Err(Failure::Unavailable(why)) if why.starts_with("cannot create socket")),
        "{done:?}"
    );
    assert!(rig.ops().is_empty(), "no descriptor, no close");
}

#[test]
fn a_request_past_its_deadline_fails_and_its_connection_is_shut_then_closed() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.connect(0);
    rig.send(ops[1]);
    assert_eq!(rig.client.next_deadline(), Some(Millis(1_000)));
    rig.client.expire(Millis(999));
    assert!(rig.done().is_empty());
    rig.client.expire(Millis(1_000));
    assert_eq!(rig.done(), [(1, Err(Failure::Timeout))]);
    // The receive is still out: shut down first, closed once it ends.
    let ops2 = rig.ops();
    assert_eq!(kinds(&ops2), [FdOpKind::Shutdown]);
    rig.recv(1_001, ops[0], b"");
    let ops3 = rig.ops();
    assert_eq!(kinds(&ops3), [FdOpKind::Close]);
    rig.client.on_done(
        Millis(1_002),
        ops3[0].key,
        ops3[0].generation,
        FdDone::Closed,
    );
    assert_eq!(rig.client.in_flight(), 0);
}

#[test]
fn a_request_on_a_reused_connection_the_backend_had_closed_is_sent_again_once() {
    let mut rig = Rig::new();
    rig.submit(0, 1);
    let ops = rig.connect(0);
    rig.send(ops[1]);
    rig.recv(1, ops[0], OK);
    assert_eq!(rig.done(), [(1, Ok(200))]);
    let recv = rig.ops()[0];
    rig.submit(10, 2);
    let send = rig.ops()[0];
    rig.send(send);
    // The backend had closed the idle connection: EOF, no answer.
    rig.recv(11, recv, b"");
    assert!(rig.done().is_empty(), "not failed: sent again");
    // It is closed, and a new connection carries the request.
    let ops = rig.ops();
    assert_eq!(kinds(&ops), [FdOpKind::Close, FdOpKind::Open]);
    rig.client
        .on_done(Millis(12), ops[0].key, ops[0].generation, FdDone::Closed);
    let c = rig.open(13, ops[1]);
    rig.client
        .on_done(Millis(13), c.key, c.generation, FdDone::Connected(Ok(())));
    let ops = rig.ops();
    let sent = rig.send(ops[1]);
    assert!(sent.ends_with(b"\r\n\r\n2"));
    rig.recv(14, ops[0], OK);
    assert_eq!(rig.done(), [(2, Ok(200))]);
}

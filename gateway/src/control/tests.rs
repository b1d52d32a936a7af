//! The control server's limits driven through a real io_uring ring and
//! loopback sockets, with simulated time: every `now` is made up here, so
//! the timeouts are exercised without waiting for them.

// Test set-up failures must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use io_uring::{IoUring, types};
use protocol::time::Millis;
use socket2::{Domain, Socket, Type};

use super::limits::ControlLimits;
use super::{ControlServer, routes};
use crate::uring::op::OpTag;

struct Rig {
    ring: IoUring,
    server: ControlServer,
    addr: SocketAddr,
}

impl Rig {
    fn new(limits: ControlLimits) -> Self {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(64).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut ring = IoUring::new(64).unwrap();
        let mut server = ControlServer::new(listener, limits);
        server.arm_accept(&mut ring);
        Self { ring, server, addr }
    }

    /// Runs completions at `now` until none arrives for 30 ms, answering
    /// every request 200 as the shard would, then sends the answers.
    fn pump(&mut self, now: Millis) {
        loop {
            self.server.flush_sends(&mut self.ring);
            let ts = types::Timespec::new().nsec(30_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let cqes: Vec<_> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            if cqes.is_empty() {
                return;
            }
            for (data, res, flags) in cqes {
                let tag = OpTag::decode(data).unwrap();
                self.server
                    .on_completion(&mut self.ring, now, tag, res, flags);
            }
            for (caller, _req) in self.server.take_ready() {
                let resp = routes::health();
                self.server.respond(&mut self.ring, now, caller, &resp);
            }
        }
    }

    fn connect(&mut self, now: Millis) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        self.pump(now);
        s
    }
}

const LIMITS: ControlLimits = ControlLimits {
    max_connections: 2,
    head_timeout_ms: Some(500),
    idle_timeout_ms: Some(2_000),
};

/// Reads what the server sent until it closed (or 500 ms passed): the
/// text and whether it closed.
fn drain(s: &mut TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[test]
fn no_connections_no_deadline() {
    let mut rig = Rig::new(LIMITS);
    rig.pump(Millis(0));
    assert_eq!(rig.server.next_deadline(), None);
    rig.server.expire(&mut rig.ring, Millis(u64::MAX));
    assert_eq!(rig.server.counters(), Default::default());
}

#[test]
fn a_stalled_head_is_answered_408_at_the_head_timeout() {
    let mut rig = Rig::new(LIMITS);
    let mut c = rig.connect(Millis(1_000));
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")
        .unwrap();
    rig.pump(Millis(1_200));
    // The first request of a connection is timed from the accept.
    assert_eq!(rig.server.next_deadline(), Some(Millis(1_500)));
    rig.server.expire(&mut rig.ring, Millis(1_499));
    rig.pump(Millis(1_499));
    assert_eq!(rig.server.counters().head_timeouts, 0);
    rig.server.expire(&mut rig.ring, Millis(1_500));
    rig.pump(Millis(1_500));
    let (text, closed) = drain(&mut c);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(closed);
    assert_eq!(rig.server.counters().head_timeouts, 1);
    rig.pump(Millis(1_600));
    assert_eq!(rig.server.connections(), 0, "slot freed after the close");
}

#[test]
fn a_later_request_is_timed_from_its_first_byte_and_a_silent_one_closes_quietly() {
    let mut rig = Rig::new(LIMITS);
    let mut c = rig.connect(Millis(0));
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    rig.pump(Millis(100));
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    // Idle from the answer at 100: the idle deadline, not the head one
    // (once a scan has dropped the stale bound of the accept).
    rig.server.expire(&mut rig.ring, Millis(600));
    assert_eq!(rig.server.counters().head_timeouts, 0);
    assert_eq!(rig.server.next_deadline(), Some(Millis(2_100)));
    c.write_all(b"GET /heal").unwrap();
    rig.pump(Millis(1_000));
    rig.server.expire(&mut rig.ring, Millis(1_499));
    rig.pump(Millis(1_499));
    assert_eq!(rig.server.counters().head_timeouts, 0, "timed from 1000");
    rig.server.expire(&mut rig.ring, Millis(1_500));
    rig.pump(Millis(1_500));
    assert!(drain(&mut c).0.starts_with("HTTP/1.1 408 "));
    // A connection that never sends anything is closed without an answer.
    let mut quiet = rig.connect(Millis(3_000));
    rig.server.expire(&mut rig.ring, Millis(3_500));
    rig.pump(Millis(3_500));
    assert_eq!(drain(&mut quiet), (String::new(), true));
    assert_eq!(rig.server.counters().head_timeouts, 2);
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout_and_use_extends_it() {
    let mut rig = Rig::new(LIMITS);
    let mut c = rig.connect(Millis(0));
    let mut buf = [0u8; 512];
    for at in [100, 2_000, 3_900] {
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .unwrap();
        rig.pump(Millis(at));
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "at {at}");
        rig.server.expire(&mut rig.ring, Millis(at + 1_999));
        rig.pump(Millis(at + 1_999));
    }
    assert_eq!(rig.server.counters().idle_closes, 0);
    rig.server.expire(&mut rig.ring, Millis(5_900));
    rig.pump(Millis(5_900));
    assert_eq!(drain(&mut c), (String::new(), true));
    assert_eq!(rig.server.counters().idle_closes, 1);
    assert_eq!(rig.server.connections(), 0);
}

#[test]
fn a_connection_over_the_cap_gets_503_and_the_others_keep_working() {
    let mut rig = Rig::new(LIMITS);
    let mut held = [rig.connect(Millis(0)), rig.connect(Millis(0))];
    let mut over = rig.connect(Millis(0));
    let (text, closed) = drain(&mut over);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("connection: close") && closed, "{text}");
    assert_eq!(rig.server.counters().refused, 1);
    let mut buf = [0u8; 512];
    for c in &mut held {
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .unwrap();
        rig.pump(Millis(10));
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    }
    assert_eq!(rig.server.connections(), 2, "the refused one is gone");
    // A slot given back is taken again.
    drop(held);
    rig.pump(Millis(20));
    let mut again = rig.connect(Millis(30));
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    rig.pump(Millis(40));
    let n = again.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
}

#[test]
fn a_head_line_over_the_limit_is_431_without_waiting_for_its_end() {
    let mut rig = Rig::new(LIMITS);
    let mut c = rig.connect(Millis(0));
    let line = format!("GET / HTTP/1.1\r\nx-pad: {}", "a".repeat(9 * 1024));
    c.write_all(line.as_bytes()).unwrap();
    rig.pump(Millis(10));
    let (text, closed) = drain(&mut c);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert!(closed);
}

//! The control server's limits, driven without sockets or a ring: the rig
//! below plays the driver and the peers (it performs the server's
//! operations on in-memory connections), and every `now` is made up here,
//! so the timeouts are exercised without waiting for them.

// Test set-up failures must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::fd::RawFd;

use protocol::time::Millis;

use super::limits::ControlLimits;
use super::{ControlServer, routes};
use crate::fd_ops::{FdDone, FdOp, FdOpKind};

/// One peer of the server, as the rig's "kernel" sees it.
#[derive(Debug, Default)]
struct Peer {
    /// Written by the client, not yet received by the server.
    to_server: Vec<u8>,
    /// Sent by the server, not yet read by the client.
    from_server: Vec<u8>,
    /// The server shut the socket down or closed it.
    shut: bool,
    /// The server's close completed (or it discarded the descriptor).
    closed: bool,
}

struct Rig {
    server: ControlServer,
    peers: HashMap<RawFd, Peer>,
    next_fd: RawFd,
    /// Receives waiting for bytes.
    waiting: Vec<FdOp>,
}

impl Rig {
    fn new(limits: ControlLimits) -> Self {
        Self {
            server: ControlServer::new(limits),
            peers: HashMap::new(),
            next_fd: 100,
            waiting: Vec::new(),
        }
    }

    /// Performs the server's operations at `now` until nothing moves,
    /// answering every request 200 as the shard would.
    fn pump(&mut self, now: Millis) {
        self.pump_answering(now, true);
    }

    /// Like [`Rig::pump`]; without `answer`, requests stay in
    /// `take_ready` for the test to answer.
    fn pump_answering(&mut self, now: Millis, answer: bool) {
        loop {
            self.server.flush_sends();
            let mut ops = std::mem::take(&mut self.waiting);
            self.server.take_ops(&mut ops);
            let mut moved = false;
            for op in ops {
                moved |= self.perform(now, op);
            }
            if answer {
                let ready = self.server.take_ready();
                moved |= !ready.is_empty();
                for (caller, _req) in ready {
                    self.server.respond(now, caller, &routes::health());
                }
            }
            if !moved && !self.server.has_ops() {
                return;
            }
        }
    }

    /// Performs `op`; whether it completed.
    fn perform(&mut self, now: Millis, op: FdOp) -> bool {
        let (key, generation) = (op.key, op.generation);
        let peer = self.peers.get_mut(&op.fd).expect("an accepted descriptor");
        match op.kind {
            FdOpKind::Recv { max } => {
                if peer.to_server.is_empty() && !peer.shut {
                    self.waiting.push(op);
                    return false;
                }
                let n = peer.to_server.len().min(max);
                let bytes: Vec<u8> = peer.to_server.drain(..n).collect();
                if let Some(buf) = self.server.recv_buffer(key, generation) {
                    buf.extend_from_slice(&bytes);
                }
                self.server
                    .on_done(now, key, generation, FdDone::Received(Ok(n)));
            }
            FdOpKind::Send => {
                let bytes = self.server.sending(key, generation).unwrap().to_vec();
                peer.from_server.extend_from_slice(&bytes);
                self.server
                    .on_done(now, key, generation, FdDone::Sent(Ok(bytes.len())));
            }
            FdOpKind::Shutdown => peer.shut = true,
            FdOpKind::Close => {
                peer.shut = true;
                peer.closed = true;
                self.server.on_done(now, key, generation, FdDone::Closed);
            }
            FdOpKind::Discard => {
                peer.shut = true;
                peer.closed = true;
            }
            FdOpKind::Open | FdOpKind::Connect { .. } => panic!("a server never connects"),
        }
        true
    }

    /// A client connects at `now`; its descriptor names it.
    fn connect(&mut self, now: Millis) -> RawFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.peers.insert(fd, Peer::default());
        self.server.on_accepted(now, fd);
        self.pump(now);
        fd
    }

    fn write(&mut self, fd: RawFd, bytes: &[u8]) {
        self.peers
            .get_mut(&fd)
            .unwrap()
            .to_server
            .extend_from_slice(bytes);
    }

    /// The client hangs up.
    fn hang_up(&mut self, fd: RawFd) {
        self.peers.get_mut(&fd).unwrap().shut = true;
    }

    /// What the server sent `fd` so far, and whether it has closed.
    fn read(&mut self, fd: RawFd) -> (String, bool) {
        let peer = self.peers.get_mut(&fd).unwrap();
        let text = String::from_utf8_lossy(&std::mem::take(&mut peer.from_server)).into_owned();
        (text, peer.closed)
    }
}

const LIMITS: ControlLimits = ControlLimits {
    max_connections: 2,
    head_timeout_ms: Some(500),
    idle_timeout_ms: Some(2_000),
};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";

#[test]
fn no_connections_no_deadline() {
    let mut rig = Rig::new(LIMITS);
    rig.pump(Millis(0));
    assert_eq!(rig.server.next_deadline(), None);
    rig.server.expire(Millis(u64::MAX));
    assert_eq!(rig.server.counters(), Default::default());
}

#[test]
fn every_operation_names_its_connection_and_a_stale_completion_is_ignored() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    let recv = rig.waiting[0];
    assert_eq!(recv.fd, c);
    assert!(matches!(recv.kind, FdOpKind::Recv { .. }));
    // A completion for another generation of the slot changes nothing.
    rig.server.on_done(
        Millis(1),
        recv.key,
        recv.generation + 1,
        FdDone::Received(Ok(0)),
    );
    assert_eq!(rig.server.connections(), 1);
    assert!(
        rig.server
            .recv_buffer(recv.key, recv.generation + 1)
            .is_none()
    );
    rig.write(c, HEALTHZ);
    rig.pump(Millis(2));
    assert!(rig.read(c).0.starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_stalled_head_is_answered_408_at_the_head_timeout() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(1_000));
    rig.write(c, b"GET /healthz HTTP/1.1\r\nhost: t\r\n");
    rig.pump(Millis(1_200));
    // The first request of a connection is timed from the accept.
    assert_eq!(rig.server.next_deadline(), Some(Millis(1_500)));
    rig.server.expire(Millis(1_499));
    rig.pump(Millis(1_499));
    assert_eq!(rig.server.counters().head_timeouts, 0);
    rig.server.expire(Millis(1_500));
    rig.pump(Millis(1_500));
    let (text, closed) = rig.read(c);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(closed);
    assert_eq!(rig.server.counters().head_timeouts, 1);
    assert_eq!(rig.server.connections(), 0, "slot freed after the close");
}

#[test]
fn a_later_request_is_timed_from_its_first_byte_and_a_silent_one_closes_quietly() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    rig.write(c, HEALTHZ);
    rig.pump(Millis(100));
    assert!(rig.read(c).0.starts_with("HTTP/1.1 200 "));
    // Idle from the answer at 100: the idle deadline, not the head one
    // (once a scan has dropped the stale bound of the accept).
    rig.server.expire(Millis(600));
    assert_eq!(rig.server.counters().head_timeouts, 0);
    assert_eq!(rig.server.next_deadline(), Some(Millis(2_100)));
    rig.write(c, b"GET /heal");
    rig.pump(Millis(1_000));
    rig.server.expire(Millis(1_499));
    rig.pump(Millis(1_499));
    assert_eq!(rig.server.counters().head_timeouts, 0, "timed from 1000");
    rig.server.expire(Millis(1_500));
    rig.pump(Millis(1_500));
    assert!(rig.read(c).0.starts_with("HTTP/1.1 408 "));
    // A connection that never sends anything is closed without an answer.
    let quiet = rig.connect(Millis(3_000));
    rig.server.expire(Millis(3_500));
    rig.pump(Millis(3_500));
    assert_eq!(rig.read(quiet), (String::new(), true));
    assert_eq!(rig.server.counters().head_timeouts, 2);
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout_and_use_extends_it() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    for at in [100, 2_000, 3_900] {
        rig.write(c, HEALTHZ);
        rig.pump(Millis(at));
        assert!(rig.read(c).0.starts_with("HTTP/1.1 200 "), "at {at}");
        rig.server.expire(Millis(at + 1_999));
        rig.pump(Millis(at + 1_999));
    }
    assert_eq!(rig.server.counters().idle_closes, 0);
    rig.server.expire(Millis(5_900));
    rig.pump(Millis(5_900));
    assert_eq!(rig.read(c), (String::new(), true));
    assert_eq!(rig.server.counters().idle_closes, 1);
    assert_eq!(rig.server.connections(), 0);
}

#[test]
fn a_connection_over_the_cap_gets_503_and_the_others_keep_working() {
    let mut rig = Rig::new(LIMITS);
    let held = [rig.connect(Millis(0)), rig.connect(Millis(0))];
    let over = rig.connect(Millis(0));
    let (text, closed) = rig.read(over);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("connection: close") && closed, "{text}");
    assert_eq!(rig.server.counters().refused, 1);
    for c in held {
        rig.write(c, HEALTHZ);
        rig.pump(Millis(10));
        assert!(rig.read(c).0.starts_with("HTTP/1.1 200 "));
    }
    assert_eq!(rig.server.connections(), 2, "the refused one is gone");
    // A slot given back is taken again.
    for c in held {
        rig.hang_up(c);
    }
    rig.pump(Millis(20));
    assert_eq!(rig.server.connections(), 0);
    let again = rig.connect(Millis(30));
    rig.write(again, HEALTHZ);
    rig.pump(Millis(40));
    assert!(rig.read(again).0.starts_with("HTTP/1.1 200 "));
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_send() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    rig.write(c, &[HEALTHZ, HEALTHZ, HEALTHZ].concat());
    rig.pump(Millis(1));
    let (text, closed) = rig.read(c);
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 3, "{text}");
    assert!(!closed, "keep-alive");
}

#[test]
fn pipelined_answers_leave_in_request_order_whatever_order_they_come_in() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    rig.write(c, &[HEALTHZ, HEALTHZ, HEALTHZ].concat());
    rig.pump_answering(Millis(1), false);
    let ready = rig.server.take_ready();
    assert_eq!(ready.len(), 3, "all three are with the shard at once");
    let answer = |status: u16| routes::Response::json(status, &serde_json::json!({ "n": status }));
    // The third and the second answer first: nothing leaves yet.
    rig.server.respond(Millis(2), ready[2].0, &answer(202));
    rig.server.respond(Millis(2), ready[1].0, &answer(503));
    rig.pump_answering(Millis(2), false);
    assert_eq!(rig.read(c), (String::new(), false));
    // A second answer for the same request is dropped.
    rig.server.respond(Millis(2), ready[2].0, &answer(500));
    rig.server.respond(Millis(3), ready[0].0, &answer(201));
    rig.pump_answering(Millis(3), false);
    let (text, closed) = rig.read(c);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["201", "503", "202"], "{text}");
    assert!(!closed, "a 5xx answer keeps a keep-alive connection");
}

#[test]
fn a_request_that_closes_the_connection_is_the_last_one_taken() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    let close = b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    rig.write(c, &[&close[..], HEALTHZ].concat());
    rig.pump_answering(Millis(1), false);
    let ready = rig.server.take_ready();
    assert_eq!(ready.len(), 1, "nothing after a closing request is parsed");
    rig.server.respond(Millis(2), ready[0].0, &routes::health());
    rig.pump_answering(Millis(2), false);
    let (text, closed) = rig.read(c);
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 1, "{text}");
    assert!(closed);
}

#[test]
fn a_head_line_over_the_limit_is_431_without_waiting_for_its_end() {
    let mut rig = Rig::new(LIMITS);
    let c = rig.connect(Millis(0));
    let line = format!("GET / HTTP/1.1\r\nx-pad: {}", "a".repeat(9 * 1024));
    rig.write(c, line.as_bytes());
    rig.pump(Millis(10));
    let (text, closed) = rig.read(c);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert!(closed);
}

//! One control connection's state: its buffers, its stream's operations
//! in flight, the requests it has with the shard and their answers (which
//! leave in request order), and the phase its timeouts are judged by.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use protocol::time::Millis;

use super::limits::{ControlLimits, Phase};
use crate::stream::{SendBuf, StreamLife, same_generation};

#[derive(Debug, Default)]
pub(super) struct ControlConn {
    pub(super) generation: u32,
    pub(super) fd: RawFd,
    pub(super) inbuf: Vec<u8>,
    /// Answers: the bytes being sent (the kernel reads from them while a
    /// send is out) and those written meanwhile, which go next, together.
    pub(super) send: SendBuf,
    /// Receive and send in flight, and the close.
    pub(super) life: StreamLife,
    pub(super) close_after_send: bool,
    /// Requests handed to the shard, oldest first, with their answers as
    /// they come (in any order); answers leave in request order.
    pub(super) due: VecDeque<Due>,
    /// The sequence number of `due`'s front (the next answer to leave).
    pub(super) first_seq: u32,
    /// A request that closes the connection (or a malformed one) was
    /// taken: nothing after it is parsed.
    pub(super) last_taken: bool,
    /// Listed in `ControlServer::unsent` for the next `flush_sends`.
    pub(super) listed: bool,
    /// When the current phase (see [`ControlConn::phase`]) started: the
    /// accept, the first byte of a request, the last answer written or
    /// the last send completed.
    pub(super) since: Millis,
    /// No request has been answered on it yet.
    pub(super) fresh: bool,
    /// Over the cap: answered 503, never read.
    pub(super) refused: bool,
}

/// A request handed to the shard, and its answer once written.
#[derive(Debug)]
pub(super) struct Due {
    /// Whether the request keeps the connection open.
    pub(super) keep_alive: bool,
    /// The whole HTTP response, once the shard answered.
    pub(super) answer: Option<Vec<u8>>,
}

impl ControlConn {
    /// Whether a request is with the shard.
    pub(super) fn awaiting(&self) -> bool {
        !self.due.is_empty()
    }

    /// Moves the answers that are next in request order to the send
    /// buffer; after one that closes the connection nothing else goes.
    pub(super) fn release_answers(&mut self) {
        while let Some(Due {
            keep_alive,
            answer: Some(_),
        }) = self.due.front()
        {
            let keep_alive = *keep_alive;
            let Some(Due {
                answer: Some(bytes),
                ..
            }) = self.due.pop_front()
            else {
                break;
            };
            self.first_seq = self.first_seq.wrapping_add(1);
            self.send.writer().extend_from_slice(&bytes);
            if !keep_alive {
                self.close_after_send = true;
                self.due.clear();
                break;
            }
        }
    }

    /// Where an answer is written now: behind the bytes being sent, if any.
    pub(super) fn answers(&mut self) -> &mut Vec<u8> {
        self.send.writer()
    }

    /// Whether this is the connection of `generation` (a completion's).
    pub(super) fn owns(&self, generation: u32) -> bool {
        same_generation(self.generation, generation)
    }

    /// What the connection is doing, for its timeouts.
    pub(super) fn phase(&self) -> Phase {
        if self.life.close_wanted() || self.awaiting() {
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

    pub(super) fn deadline(&self, limits: &ControlLimits) -> Option<Millis> {
        self.phase().deadline(limits, self.since)
    }
}

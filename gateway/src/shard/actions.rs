//! The core's actions, performed: stream operations become SQEs, backend
//! calls go to the backend client (whose immediate results go straight
//! back to the core), control answers to the control server.

use io_uring::{opcode, types};

use super::{BUF_GROUP, Shard};
use crate::backend::Outcome;
use crate::control::routes;
use crate::shard_core::{Action, Answer, BackendCall, StreamOp, StreamOpKind, Time};
use crate::uring::op::{OpKind, OpTag};

impl Shard {
    /// Performs every action the core has queued, in order, including
    /// those that performing them leads to.
    pub(super) fn perform_actions(&mut self, t: Time) {
        while self.core.has_actions() {
            let mut actions = std::mem::take(&mut self.actions);
            self.core.take_actions(&mut actions);
            for action in actions.drain(..) {
                self.perform(t, action);
            }
            self.actions = actions;
        }
    }

    fn perform(&mut self, t: Time, action: Action) {
        match action {
            Action::Stream(op) => self.submit_stream_op(op),
            Action::Backend(call) => self.call_backend(t, *call),
            Action::Answer(caller, answer) => {
                let response = match answer {
                    Answer::Response(r) => r,
                    Answer::Stats => {
                        self.publish();
                        routes::stats(&self.shared)
                    }
                    Answer::Metrics => {
                        self.publish();
                        routes::metrics(&self.shared)
                    }
                };
                self.control.respond(t.now, caller, &response);
            }
            Action::StopAccepting => self.stop_accepting(),
        }
    }

    /// The SQE of a client stream operation. Its tag names the connection
    /// and its generation, so the completion is matched to exactly it.
    fn submit_stream_op(&mut self, op: StreamOp) {
        let StreamOp {
            key,
            generation,
            stream,
            kind,
        } = op;
        let fd = types::Fixed(stream);
        let entry = match kind {
            StreamOpKind::Recv => opcode::RecvMulti::new(fd, BUF_GROUP)
                .build()
                .user_data(OpTag::of(OpKind::Recv, key, generation).encode()),
            StreamOpKind::Send => {
                // The bytes stay in the connection's queue, unmoved, until
                // the send's completion (see `outbound`).
                let Some(buf) = self.core.sending(key, generation) else {
                    return;
                };
                opcode::Send::new(fd, buf.as_ptr(), buf.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(OpTag::of(OpKind::Send, key, generation).encode())
            }
            StreamOpKind::Shutdown => opcode::Shutdown::new(fd, libc::SHUT_WR)
                .build()
                .user_data(OpTag::of(OpKind::Shutdown, key, generation).encode()),
            StreamOpKind::CancelRecv | StreamOpKind::CancelSend => {
                let target = if kind == StreamOpKind::CancelRecv {
                    OpKind::Recv
                } else {
                    OpKind::Send
                };
                opcode::AsyncCancel::new(OpTag::of(target, key, generation).encode())
                    .build()
                    .user_data(OpTag::of(OpKind::Cancel, key, generation).encode())
            }
            StreamOpKind::Close => opcode::Close::new(fd)
                .build()
                .user_data(OpTag::of(OpKind::Close, key, generation).encode()),
        };
        self.push(entry);
    }

    fn call_backend(&mut self, t: Time, call: BackendCall) {
        let now = t.now;
        match call {
            BackendCall::Authenticate {
                key,
                generation,
                hello,
            } => {
                let verdict =
                    self.backend
                        .authenticate(now, self.core.stats_mut(), key, generation, &hello);
                if let Some(verdict) = verdict {
                    let outcome = Outcome::Auth {
                        key,
                        generation,
                        verdict,
                        device: hello.device,
                        apps: hello.apps,
                    };
                    self.core.on_backend_outcome(t, outcome);
                }
            }
            BackendCall::Uplink {
                key,
                generation,
                user,
                uplink,
            } => {
                let reply =
                    self.backend
                        .uplink(now, self.core.stats_mut(), key, generation, &user, uplink);
                if let Some(reply) = reply {
                    let outcome = Outcome::Reply {
                        key,
                        generation,
                        reply,
                    };
                    self.core.on_backend_outcome(t, outcome);
                }
            }
            BackendCall::Online(p) => self.backend.online(now, self.core.stats_mut(), p),
            BackendCall::Closing {
                key,
                generation,
                reason,
            } => self.backend.closing(key, generation, reason),
            BackendCall::Offline { key, generation } => {
                self.backend
                    .offline(now, self.core.stats_mut(), key, generation)
            }
        }
        self.apply_backend_outcomes(t);
    }

    /// Hands the backend client's results to the core.
    pub(super) fn apply_backend_outcomes(&mut self, t: Time) {
        while !self.backend.outcomes.is_empty() {
            for outcome in std::mem::take(&mut self.backend.outcomes) {
                self.core.on_backend_outcome(t, outcome);
            }
        }
    }

    /// A drain began: cancel the accepts and let the listener go.
    fn stop_accepting(&mut self) {
        let tags: Vec<OpTag> = if self.multishot_accept {
            vec![OpTag::new(OpKind::AcceptMulti, 0)]
        } else {
            (0..self.accept_addrs.len())
                .map(|i| OpTag::new(OpKind::AcceptOne, i as u32))
                .collect()
        };
        for tag in tags {
            let cancel = opcode::AsyncCancel::new(tag.encode())
                .build()
                .user_data(OpTag::new(OpKind::Cancel, 0).encode());
            self.push(cancel);
        }
        // The in-flight accepts hold their own reference to the socket.
        self.listener = None;
    }

    /// Answers the requests the control listener has parsed. Answering a
    /// request hands on the one pipelined behind it, so this runs until
    /// none is left; their answers leave in one send. Pushes answered are
    /// routed once the answers have been submitted to the kernel (see
    /// [`crate::shard_core::ShardCore::on_control_request`]).
    pub(super) fn handle_control_requests(&mut self, t: Time) {
        while self.control.has_ready() {
            for (caller, req) in self.control.take_ready() {
                self.core.on_control_request(t, caller, &req);
                self.settle(t);
            }
        }
        if !self.core.has_accepted_pushes() {
            return;
        }
        self.control.flush_sends();
        self.perform_fd_ops(t);
        if let Err(e) = self.ring.submit() {
            tracing::warn!(shard = self.index, "submitting control answers failed: {e}");
        }
        self.core.route_accepted_pushes(t);
        self.settle(t);
    }
}

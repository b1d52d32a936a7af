//! Client connections in the core: accept and admission, received bytes
//! into the session, authentication, sends, timers. The close sequence is
//! in `closing`.

use protocol::proto::{ErrorCode, Hello, KickCode, Welcome};
use protocol::server::{CloseReason, Event};
use protocol::time::Millis;

use super::closing::live;
use super::conn::{Conn, flags};
use super::names::{acquire_apps, acquire_device};
use super::outbound::{Enqueued, Frame};
use super::push::Message;
use super::resume::{Lookup, Resumed};
use super::session::Session;
use super::transport::{ListenerKind, Transport};
use super::{ShardCore, StreamOpKind, Time};
use crate::admission::Refusal;
use crate::stream::Pending;

impl ShardCore {
    /// The driver accepted a client connection on stream handle `stream`,
    /// on a listener of `kind`, from `peer` when the driver knows it (it
    /// must when [`ShardCore::needs_peer_address`]). Refused connections
    /// get an Error and are closed.
    pub fn on_accepted(
        &mut self,
        t: Time,
        stream: u32,
        kind: ListenerKind,
        peer: Option<std::net::IpAddr>,
    ) {
        let transport = kind.transport();
        let now = self.at(t);
        self.stats.accepts += 1;
        let fd = stream;
        let limits = &self.shard_cfg.settings;
        let refusal = if self.conns.len() >= limits.max_connections as usize {
            self.stats.refused_max_connections += 1;
            Some((ErrorCode::Overloaded, "shard at its connection limit"))
        } else if self.handshakes >= limits.max_handshakes {
            self.stats.refused_max_handshakes += 1;
            Some((ErrorCode::Overloaded, "too many handshakes in flight"))
        } else {
            match peer.map(|ip| self.admission.admit(ip)) {
                Some(Err(Refusal::Address)) => {
                    self.stats.refused_address += 1;
                    Some((ErrorCode::Forbidden, "address not allowed"))
                }
                Some(Err(Refusal::PerIp)) => {
                    self.stats.refused_per_ip += 1;
                    Some((
                        ErrorCode::Overloaded,
                        "too many connections from this address",
                    ))
                }
                _ => None,
            }
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let session = if kind.transport() == Transport::Mqtt {
            Session::mqtt(now, &self.settings)
        } else {
            Session::v1(now, &self.settings)
        };
        let mut conn = Conn::new(session, transport, fd, generation);
        if refusal.is_some() {
            conn.clear(flags::IN_HANDSHAKE);
        } else {
            self.handshakes += 1;
        }
        let key = self.conns.insert(conn) as u32;
        if kind.is_tls() && !self.tls_accept(key) {
            // No TLS config to speak with: nothing can be said; close.
            self.arm_recv(key);
            self.begin_close(now, key);
            return;
        }
        // A refused peer was not counted by admission, so it is not bound.
        if let (None, Some(ip)) = (refusal, peer) {
            self.admission.bind(key, ip);
        }
        self.arm_recv(key);
        if let Some((code, message)) = refusal {
            if let Some(conn) = self.conns.get_mut(key as usize) {
                conn.session.fail(code, message, &mut self.out);
            }
            self.handle_output(now, key);
        } else {
            self.arm_timer(now, key);
        }
    }

    pub(super) fn arm_recv(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.life.is_peer_closed() || !conn.life.start(Pending::Recv) {
            return;
        }
        conn.clear(flags::NEEDS_REARM);
        self.stream_op(key, StreamOpKind::Recv);
    }

    /// Bytes received on connection (key, generation). `more` is false
    /// when the receive stopped with these bytes (it is re-armed at the
    /// end of the turn).
    pub fn on_received(&mut self, t: Time, key: u32, generation: u32, data: &[u8], more: bool) {
        let now = self.at(t);
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        if !more {
            conn.life.finish(Pending::Recv);
        }
        self.stats.bytes_in += data.len() as u64;
        if !conn.has(flags::CLOSING) {
            if conn.has(flags::TLS) {
                self.tls_received(now, key, data);
            } else {
                self.plain_received(now, key, data);
            }
        }
        if !more
            && let Some(conn) = self.conns.get_mut(key as usize)
            && !conn.has(flags::CLOSING)
        {
            conn.set(flags::NEEDS_REARM);
            self.rearm.push(key);
        }
        self.handle_output(now, key);
    }

    /// Bytes of connection `key`'s transport (as received, or decrypted
    /// from TLS records) into its session.
    pub(super) fn plain_received(&mut self, now: Millis, key: u32, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        match conn.transport {
            Transport::RawV1 => {
                conn.session
                    .handle_input(now, data, &self.settings, &mut self.out);
                self.stats.frames_in += std::mem::take(&mut self.out.v1.frames_in);
            }
            Transport::WebSocket(phase) => self.ws_received(now, key, phase, data),
            Transport::Mqtt => self.mqtt_received(now, key, data),
        }
    }

    /// The receive of (key, generation) found no buffer: the data stays in
    /// the socket and the receive is re-armed at the end of the turn.
    pub fn on_recv_no_buffers(&mut self, key: u32, generation: u32, more: bool) {
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        if !more {
            conn.life.finish(Pending::Recv);
        }
        self.stats.buffer_pool_exhausted += 1;
        if !conn.life.close_wanted() {
            conn.set(flags::NEEDS_REARM);
            self.rearm.push(key);
        }
    }

    /// The receive side of (key, generation) ended: EOF, reset or
    /// cancellation.
    pub fn on_recv_ended(&mut self, t: Time, key: u32, generation: u32) {
        let now = self.at(t);
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        conn.life.finish(Pending::Recv);
        conn.life.peer_closed();
        if !conn.has(flags::CLOSING) && conn.transport == Transport::Mqtt {
            // Its session ends first (the will is due), then the close.
            self.mqtt_connection_lost(now, key);
        }
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if !conn.has(flags::CLOSING) {
            self.stats.client_closes += 1;
            self.begin_close(now, key);
        } else if conn.has(flags::SHUTDOWN_SENT) {
            self.submit_close(key);
        }
        self.try_finish(key);
    }

    /// Moves the session's output to the wire and acts on its events.
    pub(super) fn handle_output(&mut self, now: Millis, key: u32) {
        loop {
            self.queue_session_output(now, key);
            let mqtt_events = self.mqtt_events(now, key);
            if self.out.v1.events.is_empty() {
                if mqtt_events {
                    continue;
                }
                break;
            }
            let mut events = std::mem::take(&mut self.out.v1.events);
            for event in events.drain(..) {
                self.on_event(now, key, event);
            }
            if self.out.v1.events.is_empty() {
                self.out.v1.events = events;
            }
        }
        self.flush(key);
        self.arm_timer(now, key);
    }

    /// Queues what connection `key`'s session wrote (either protocol) to
    /// its stream, framed by its transport; events stay for the caller.
    pub(super) fn queue_session_output(&mut self, now: Millis, key: u32) {
        if !self.out.v1.transmit.is_empty() {
            let transport = self.conns.get(key as usize).map(|c| c.transport);
            let transmit = std::mem::take(&mut self.out.v1.transmit);
            let frame = self.frame_session_output(transport.unwrap_or_default(), &transmit);
            self.out.v1.transmit = transmit;
            self.out.v1.transmit.clear();
            self.stats.frames_out += std::mem::take(&mut self.out.v1.frames_out);
            if let Some(frame) = frame {
                self.enqueue(now, key, frame);
            }
        }
        self.mqtt_transmit(now, key);
    }

    fn on_event(&mut self, now: Millis, key: u32, event: Event) {
        match event {
            Event::Hello(hello) => self.authenticate(now, key, hello),
            Event::Closed(reason) => {
                self.count_close(key, &reason);
                self.presence_closing(key, &reason);
                self.ws_session_closed(now, key, &reason);
                self.begin_close(now, key);
            }
            Event::Uplink(uplink) => self.forward_uplink(key, uplink),
            Event::Subscribe(topics) => self.subscribe(now, key, topics),
            Event::Unsubscribe(topics) => self.unsubscribe(key, topics),
            Event::Ack(ids) => {
                self.stats.acks += ids.len() as u64;
                // Durable pushes leave their inbox on the first Ack: tell
                // the user's owner, which keeps the inbox.
                let user = self.conns.get(key as usize).and_then(|c| c.user.clone());
                if let Some(user) = user
                    && !ids.is_empty()
                {
                    let msg = Message::Acked(user.clone(), ids.into());
                    self.tell_owner(&user, msg);
                }
            }
        }
    }

    pub(super) fn authenticate(&mut self, now: Millis, key: u32, mut hello: Hello) {
        if let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) {
            let token = std::mem::take(&mut hello.resume);
            self.parked.presented(key, generation, token);
        }
        if self.webhook_auth() {
            return self.authenticate_webhook(key, hello);
        }
        let now_s = self.unix_ms / 1000;
        let verdict = self.verifier.verify_hello(&hello, now_s);
        match verdict {
            Ok(identity) => self.admit(now, key, identity.user, hello.device, hello.apps),
            Err(e) => self.refuse_hello(now, key, e.error_code(), &e.to_string()),
        }
    }

    /// The handshake of `key` was refused (either auth mode): `Error` and
    /// close, counted for the log's summary of rejections.
    pub(super) fn refuse_hello(&mut self, now: Millis, key: u32, code: ErrorCode, reason: &str) {
        self.rejections.record(code, reason);
        self.log_rejections(now);
        if let Some(conn) = self.conns.get_mut(key as usize) {
            conn.session.reject(code, reason, &mut self.out);
        }
    }

    /// The handshake of `key` succeeded for `user` (either auth mode):
    /// takes the session's references to its device label and apps, sends
    /// the Welcome and reports the session online. Refused with OVERLOADED
    /// when the shard already tells apart as many apps as it can.
    pub(super) fn admit(
        &mut self,
        now: Millis,
        key: u32,
        user: String,
        device: String,
        apps: Vec<String>,
    ) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        match self.resume_lookup(key, generation, &user) {
            Lookup::Fresh if self.mqtt_session_lookup(now, key, &user, (&device, &apps)) => {}
            Lookup::Fresh => self.welcome(now, key, (user, device, apps), None),
            Lookup::Here(resumed) => self.welcome(now, key, (user, device, apps), Some(resumed)),
            Lookup::Elsewhere(name) => self.ask_for_parked(now, key, name, (user, device, apps)),
        }
    }

    /// Sends `key`'s Welcome and reports the session online, or, for a
    /// resumed one, subscribes it to its old topics with no event.
    pub(super) fn welcome(
        &mut self,
        now: Millis,
        key: u32,
        (user, device, apps): (String, String, Vec<String>),
        resumed: Option<Resumed>,
    ) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        let Some(mask) = acquire_apps(&mut self.app_names, &apps) else {
            self.stats.refused_app_table += 1;
            conn.session.fail(
                ErrorCode::Overloaded,
                "this shard already tells apart as many distinct apps as it can; retry later",
                &mut self.out,
            );
            return;
        };
        conn.apps = mask;
        conn.device = acquire_device(&mut self.device_names, &device);
        let generation = conn.generation;
        let session = format!("{:x}-{:x}", self.index, generation);
        let welcome = Welcome {
            session: session.clone(),
            user: user.clone(),
            heartbeat_ms: 0,
            resume: self.resume_token(key, generation, &user),
            server_time_ms: self.unix_ms,
            resumed: resumed.is_some(),
            recovered: resumed.as_ref().is_some_and(|(_, p)| p.complete),
        };
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        conn.user = Some(user.clone().into_boxed_str());
        conn.session
            .accept(now, &self.settings, welcome, &mut self.out);
        if conn.has(flags::IN_HANDSHAKE) {
            conn.clear(flags::IN_HANDSHAKE);
            self.handshakes -= 1;
        }
        self.stats.handshakes_ok += 1;
        let presence = crate::backend::events::Presence {
            key,
            generation,
            user,
            session,
            device,
            apps,
        };
        if self
            .conns
            .get(key as usize)
            .is_some_and(|c| c.transport == Transport::Mqtt)
        {
            self.mqtt_take_over(key, &presence.user);
        }
        match resumed {
            Some((from, mut parked)) => {
                self.presence_resumed(from, presence);
                if !parked.complete {
                    self.stats.resume_incomplete += 1;
                }
                // The Welcome (or CONNACK) goes first, then what was missed.
                self.queue_session_output(now, key);
                let missed = std::mem::take(&mut parked.missed);
                self.replay_missed(now, key, missed);
                let topics: Vec<String> = parked.topics.into_iter().map(String::from).collect();
                if self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| c.transport == Transport::Mqtt)
                {
                    self.mqtt_resubscribe(now, key, topics);
                } else {
                    self.subscribe(now, key, topics);
                }
            }
            None => self.presence_online(presence),
        }
    }

    pub(super) fn count_close(&mut self, key: u32, reason: &CloseReason) {
        let in_handshake = self
            .conns
            .get(key as usize)
            .is_some_and(|c| c.has(flags::IN_HANDSHAKE));
        let s = &mut self.stats;
        match reason {
            CloseReason::ClientBye => s.client_closes += 1,
            CloseReason::HandshakeTimeout => s.handshakes_timeout += 1,
            CloseReason::IdleTimeout => s.idle_timeouts += 1,
            CloseReason::Rejected(ErrorCode::TokenExpired) => s.handshakes_expired += 1,
            CloseReason::Rejected(_) => s.handshakes_unauthorized += 1,
            CloseReason::ProtocolError(_) if in_handshake => s.handshakes_protocol += 1,
            CloseReason::ProtocolError(_) => s.protocol_errors += 1,
            // Counted as slow_consumer_disconnects where it is decided.
            CloseReason::Kicked(KickCode::SlowConsumer) => {}
            CloseReason::Kicked(_) => s.kicks += 1,
            _ => {}
        }
    }

    /// Queues `frame` to connection `key`, applying the slow-consumer policy.
    /// Under `disconnect`, an overflowing connection loses what is queued
    /// behind the frame being written and gets a best-effort Kick
    /// (SLOW_CONSUMER) in its place, then is closed: the Kick arrives if
    /// the client reads again within `protocol.close_linger_ms`. Returns
    /// whether `frame` was queued.
    pub(super) fn enqueue(&mut self, now: Millis, key: u32, frame: impl Into<Frame>) -> bool {
        let cap = self.shard_cfg.settings.outbound_queue_bytes;
        let policy = self.shard_cfg.settings.slow_consumer;
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return false;
        };
        if conn.life.close_wanted() {
            return false;
        }
        let before = conn.outbound.queued_bytes();
        let outcome = conn
            .outbound
            .push(frame.into(), cap, policy, &mut self.queues);
        if outcome == Enqueued::Overflow {
            conn.outbound.clear(&mut self.queues);
            conn.session.kick(
                KickCode::SlowConsumer,
                "the client does not read fast enough",
                &[],
                0,
                &mut self.out,
            );
        }
        let after = conn.outbound.queued_bytes();
        self.account_queued(before, after);
        match outcome {
            Enqueued::Queued => true,
            Enqueued::QueuedDropping(n) => {
                self.stats.slow_consumer_drops += u64::from(n);
                true
            }
            Enqueued::Overflow => {
                self.stats.slow_consumer_disconnects += 1;
                // Queues the Kick and starts the close. Safe inside
                // `handle_output` too: this takes only the Kick's output.
                self.handle_output(now, key);
                false
            }
        }
    }

    /// Starts a send for `key` if it has bytes waiting and none in flight.
    pub(super) fn flush(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.life.close_wanted() {
            return;
        }
        let started = if conn.has(flags::TLS) {
            let Some(stream) = self.tls.stream(key) else {
                return;
            };
            let before = conn.outbound.queued_bytes();
            let started = conn
                .outbound
                .start_send_sealed(
                    &mut |plain, last, out| stream.seal(plain, last, out),
                    &mut self.queues,
                )
                .is_some();
            let after = conn.outbound.queued_bytes();
            self.account_queued(before, after);
            started
        } else {
            conn.outbound.start_send().is_some()
        };
        if !started {
            return;
        }
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        conn.life.start(Pending::Send);
        self.stream_op(key, StreamOpKind::Send);
    }

    /// The send of (key, generation) completed: `Ok(written)` bytes, or
    /// failed (the peer is gone).
    pub fn on_send_done(&mut self, t: Time, key: u32, generation: u32, res: Result<usize, i32>) {
        let now = self.at(t);
        let Some(conn) = live(&mut self.conns, key, generation) else {
            return;
        };
        conn.life.finish(Pending::Send);
        let before = conn.outbound.queued_bytes();
        if let Ok(written) = res {
            conn.outbound.complete_send(written, &mut self.queues);
            self.stats.bytes_out += written as u64;
        } else {
            conn.outbound.complete_send(0, &mut self.queues);
            conn.outbound.clear(&mut self.queues);
            conn.life.peer_closed();
        }
        let after = conn.outbound.queued_bytes();
        let failed = res.is_err();
        let closing = conn.has(flags::CLOSING);
        let close_wanted = conn.life.close_wanted();
        let drained = conn.outbound.is_empty();
        self.account_queued(before, after);
        if close_wanted {
            self.submit_close_if_clear(key);
        } else if failed && !closing {
            self.begin_close(now, key);
        } else if closing && (drained || failed) {
            self.shutdown_or_close(now, key);
        } else {
            self.flush(key);
        }
        self.try_finish(key);
    }

    pub(super) fn on_timer(&mut self, now: Millis, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        let due = conn.deadline(&self.settings, now).is_some_and(|d| d <= now);
        if due {
            if conn.has(flags::CLOSING) {
                self.submit_close(key);
                return;
            }
            conn.session
                .handle_timeout(now, &self.settings, &mut self.out);
            self.handle_output(now, key);
        } else {
            self.arm_timer(now, key);
        }
    }
}

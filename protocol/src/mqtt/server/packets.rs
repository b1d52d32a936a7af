//! What an [`MqttSession`] does with each decoded packet, and how it closes.

use bytes::Bytes;

use super::connect::{check_connect, connect_request};
use super::{
    CloseReason, Event, Flow, Limit, MqttConfig, MqttSession, Output, RetainPolicy, SessionState,
    Uplink,
};
use crate::mqtt::encode::{encode_connack, encode_pingresp, encode_unsuback};
use crate::mqtt::{
    ConnAck, ConnectReturnCode, DecodeError, Packet, Publish, QoS, Subscribe, Unsubscribe,
};
use crate::time::Millis;

impl MqttSession {
    /// Handles one whole packet received at `now`.
    pub(super) fn on_packet(
        &mut self,
        now: Millis,
        packet: Packet<'_>,
        cfg: &MqttConfig,
        out: &mut Output,
    ) -> Flow {
        out.packets_in += 1;
        match self.state {
            SessionState::AwaitingConnect => return self.on_first_packet(packet, cfg, out),
            SessionState::Established => {}
            // Parsing stops on entering either: never reached.
            SessionState::Authenticating | SessionState::Closed => return Flow::Stop,
        }
        self.mark = now;
        match packet {
            Packet::PingReq => {
                encode_pingresp(&mut out.transmit);
                out.packets_out += 1;
            }
            Packet::Publish(publish) => return self.on_publish(&publish, cfg, out),
            Packet::PubAck(packet_id) => match self.window.remove(packet_id) {
                Some(push_id) => out.events.push(Event::Acked { packet_id, push_id }),
                None => out.unknown_acks += 1,
            },
            Packet::Subscribe(subscribe) => return self.on_subscribe(&subscribe, cfg, out),
            Packet::Unsubscribe(unsubscribe) => {
                return self.on_unsubscribe(&unsubscribe, cfg, out);
            }
            Packet::Disconnect => {
                self.will = None;
                return self.close_with(CloseReason::ClientDisconnect, out);
            }
            Packet::Connect(_) => return self.close_with(CloseReason::SecondConnect, out),
            other @ (Packet::ConnAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return self.close_with(CloseReason::UnexpectedPacket(other.packet_type()), out);
            }
        }
        Flow::Continue
    }

    /// The first packet: CONNECT, checked, then handed to the caller.
    fn on_first_packet(&mut self, packet: Packet<'_>, cfg: &MqttConfig, out: &mut Output) -> Flow {
        let kind = packet.packet_type();
        let Packet::Connect(connect) = packet else {
            return self.close_with(CloseReason::NotConnect(kind), out);
        };
        if let Err(close) = check_connect(&connect, cfg) {
            return match close {
                CloseReason::Refused(code) => self.refuse(code, out),
                other => self.close_with(other, out),
            };
        }
        let request = connect_request(&connect);
        self.keep_alive_ms = cfg.grant_keep_alive(connect.keep_alive);
        self.will = request.will.clone().map(Box::new);
        self.state = SessionState::Authenticating;
        out.events.push(Event::Authenticate(request));
        Flow::Stop
    }

    fn on_publish(&mut self, p: &Publish<'_>, cfg: &MqttConfig, out: &mut Output) -> Flow {
        if p.qos == QoS::ExactlyOnce {
            return self.close_with(CloseReason::Qos2Unsupported, out);
        }
        if p.retain && cfg.retain == RetainPolicy::Refuse {
            return self.close_with(CloseReason::RetainRefused, out);
        }
        if p.topic.len() > cfg.max_topic_len {
            return self.close_with(CloseReason::LimitExceeded(Limit::TopicLength), out);
        }
        if p.qos == QoS::AtLeastOnce {
            if self.uplinks_in_flight >= cfg.max_uplinks_in_flight {
                return self.close_with(CloseReason::LimitExceeded(Limit::UplinksInFlight), out);
            }
            self.uplinks_in_flight += 1;
        }
        out.events.push(Event::Uplink(Uplink {
            topic: p.topic.to_owned(),
            payload: Bytes::copy_from_slice(p.payload),
            qos: p.qos,
            packet_id: p.packet_id,
            retain: p.retain,
            dup: p.dup,
        }));
        Flow::Continue
    }

    fn on_subscribe(&mut self, s: &Subscribe<'_>, cfg: &MqttConfig, out: &mut Output) -> Flow {
        if let Some(limit) =
            filters_over_limits(s.filters.len(), s.filters.iter().map(|f| f.0), cfg)
        {
            return self.close_with(CloseReason::LimitExceeded(limit), out);
        }
        let filters = s.filters.iter().map(|(f, q)| (f.to_owned(), q)).collect();
        out.events.push(Event::Subscribe {
            packet_id: s.packet_id,
            filters,
        });
        Flow::Continue
    }

    fn on_unsubscribe(&mut self, u: &Unsubscribe<'_>, cfg: &MqttConfig, out: &mut Output) -> Flow {
        if let Some(limit) = filters_over_limits(u.filters.len(), u.filters.iter(), cfg) {
            return self.close_with(CloseReason::LimitExceeded(limit), out);
        }
        // A decoded packet id is never 0, so this writes.
        if encode_unsuback(u.packet_id, &mut out.transmit).is_ok() {
            out.packets_out += 1;
        }
        let filters = u.filters.iter().map(str::to_owned).collect();
        out.events.push(Event::Unsubscribe(filters));
        Flow::Continue
    }

    /// Bytes that are no packet: close; before CONNECT, an unsupported
    /// protocol level is first answered with CONNACK 0x01 (§3.1.2.2).
    pub(super) fn malformed(&mut self, e: DecodeError, out: &mut Output) {
        if self.state == SessionState::AwaitingConnect
            && matches!(e, DecodeError::UnsupportedProtocolLevel(_))
        {
            self.refuse(ConnectReturnCode::UnacceptableProtocolVersion, out);
        } else {
            self.close_with(CloseReason::Malformed(e), out);
        }
    }

    /// Sends CONNACK with the non-zero `code`, then closes.
    pub(super) fn refuse(&mut self, code: ConnectReturnCode, out: &mut Output) -> Flow {
        self.send_connack(false, code, out);
        self.close_with(CloseReason::Refused(code), out)
    }

    pub(super) fn send_connack(
        &mut self,
        session_present: bool,
        code: ConnectReturnCode,
        out: &mut Output,
    ) {
        encode_connack(
            ConnAck {
                session_present,
                code,
            },
            &mut out.transmit,
        );
        out.packets_out += 1;
    }

    /// Closes with `reason`: the will is due unless the client said
    /// DISCONNECT or was never accepted. The QoS 1 window stays readable.
    pub(super) fn close_with(&mut self, reason: CloseReason, out: &mut Output) -> Flow {
        let established = self.state == SessionState::Established;
        self.state = SessionState::Closed;
        self.pending.clear();
        let due = established && reason != CloseReason::ClientDisconnect;
        if let Some(will) = self.will.take().filter(|_| due) {
            out.events.push(Event::Will(*will));
        }
        out.events.push(Event::Closed(reason));
        Flow::Stop
    }
}

/// Which bound a SUBSCRIBE's or UNSUBSCRIBE's filters exceed, if any.
fn filters_over_limits<'a>(
    count: usize,
    mut filters: impl Iterator<Item = &'a str>,
    cfg: &MqttConfig,
) -> Option<Limit> {
    if count > cfg.max_filters {
        return Some(Limit::Filters);
    }
    filters
        .any(|f| f.len() > cfg.max_topic_len)
        .then_some(Limit::TopicLength)
}

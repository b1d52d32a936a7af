//! Gateway protocol v1 through the protocol crate's client session.

use bytes::Bytes;
use protocol::client::{ClientCloseReason, ClientConfig, ClientEvent, ClientSession};
use protocol::proto::{ErrorCode, KickCode};
use protocol::time::Millis;

use super::{Identity, WireEvent};
use crate::stamp;

/// A gateway client: the protocol's sans-IO session plus the ping that
/// confirms a subscription (the gateway handles frames in order, so the
/// Pong to a Ping sent after a Subscribe means the Subscribe was processed).
#[derive(Debug)]
pub struct GatewayClient {
    session: ClientSession,
    sub_ping: Option<u64>,
    events: Vec<ClientEvent>,
}

impl GatewayClient {
    /// A session for `id`, created at `now`.
    #[must_use]
    pub fn new(id: &Identity, now: Millis) -> Self {
        let cfg = ClientConfig {
            token: id.token.clone(),
            device: "bench".into(),
            heartbeat_ms: id.heartbeat_ms,
            ..ClientConfig::default()
        };
        Self {
            session: ClientSession::new(now, cfg),
            sub_ping: None,
            events: Vec::new(),
        }
    }

    /// Writes the Hello.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        self.session.start(out);
    }

    /// Writes Subscribe then the confirming Ping.
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        self.session.subscribe(vec![topic.to_owned()], out);
        let id = self.session.ping(out);
        self.sub_ping = (id != 0).then_some(id);
    }

    /// Acks every durable push (`ack = true`) on receipt (`--ack`): the
    /// session writes an `Ack` for each new id as it arrives, and again for
    /// each redelivered copy of an id it acked (see [`GatewayClient::input`]).
    pub fn set_auto_ack(&mut self, on: bool) {
        self.session.set_auto_ack(on);
    }

    /// Feeds received bytes.
    ///
    /// A durable push whose id the session has seen is dropped by the
    /// session's dedup window (and acked again if it was acked): it is
    /// reported as a [`WireEvent::Redelivery`], not as a delivery. A new id
    /// that arrives flagged `redelivery` (its first copy never reached this
    /// connection) is a delivery and a redelivery both.
    pub fn input(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        let dropped_before = self.session.duplicates_dropped();
        self.session.handle_input(now, data, &mut self.events, out);
        let dropped = self
            .session
            .duplicates_dropped()
            .saturating_sub(dropped_before);
        for _ in 0..dropped {
            ev.push(WireEvent::Redelivery);
        }
        for e in self.events.drain(..) {
            match e {
                ClientEvent::Welcome(_) => ev.push(WireEvent::Established),
                ClientEvent::Push(p) => {
                    if p.redelivery {
                        ev.push(WireEvent::Redelivery);
                    }
                    ev.push(WireEvent::Delivery(stamp::decode(&p.payload)));
                }
                ClientEvent::Pong(p) if Some(p.id) == self.sub_ping => {
                    self.sub_ping = None;
                    ev.push(WireEvent::Subscribed);
                }
                ClientEvent::Pong(_) | ClientEvent::Kick(_) | ClientEvent::Error(_) => {}
                ClientEvent::Reply(r) => ev.push(WireEvent::Reply {
                    request_id: r.request_id,
                    status: r.status,
                }),
                ClientEvent::Closed(why) => ev.push(WireEvent::Closed(close_label(why))),
            }
        }
    }

    /// Heartbeat and timeouts.
    pub fn tick(
        &mut self,
        now: Millis,
        ev: &mut Vec<WireEvent>,
        out: &mut Vec<u8>,
    ) -> Option<Millis> {
        let was_closed = self.session.is_closed();
        self.session.handle_timeout(now, out);
        if !was_closed
            && self.session.is_closed()
            && let Some(why) = self.session.close_reason()
        {
            ev.push(WireEvent::Closed(close_label(why)));
        }
        self.session.deadline()
    }

    /// Writes an Uplink on app "bench".
    pub fn uplink(&mut self, route: &str, payload: &[u8], out: &mut Vec<u8>) -> Option<u64> {
        let id = self
            .session
            .uplink("bench", route, Bytes::copy_from_slice(payload), out);
        (id != 0).then_some(id)
    }

    /// Writes Bye.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        self.session.bye(out);
    }

    /// Whether the session is over (and has said why in a
    /// [`WireEvent::Closed`]).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }
}

/// Why a connection closed, for the failure counts: codes by their
/// protocol names (`ErrorCode`, `KickCode`), the number beside them.
fn close_label(why: ClientCloseReason) -> String {
    match why {
        ClientCloseReason::Bye => "bye".into(),
        ClientCloseReason::Kicked(c) => match KickCode::from_u32(c) {
            Some(k) => format!("kicked: {} ({c})", k.as_str_name()),
            None => format!("kicked: unknown code {c}"),
        },
        ClientCloseReason::ServerError(c) => match ErrorCode::from_u32(c) {
            Some(e) => format!("gateway error: {} ({c})", e.as_str_name()),
            None => format!("gateway error: unknown code {c}"),
        },
        ClientCloseReason::HandshakeTimeout => "handshake timeout".into(),
        ClientCloseReason::IdleTimeout => "idle timeout".into(),
        ClientCloseReason::ProtocolError(c) => format!("protocol error ({c:?})"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use protocol::codec::{decode_frame, encode_frame, frame};
    use protocol::proto::frame::Kind;
    use protocol::proto::{Ack, Push, Welcome};

    use super::*;
    use crate::stamp::Stamp;

    fn bytes_of(kinds: Vec<Kind>) -> Vec<u8> {
        let mut out = Vec::new();
        for k in kinds {
            encode_frame(&frame(k), &mut out);
        }
        out
    }

    fn acks(mut buf: &[u8]) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some((f, used)) = decode_frame(buf, u32::MAX).expect("a frame") {
            if let Some(Kind::Ack(Ack { ids: more })) = f.kind {
                ids.extend(more);
            }
            buf = &buf[used..];
        }
        ids
    }

    fn durable(id: u64, seq: u64, redelivery: bool) -> Kind {
        Kind::Push(Push {
            id,
            ack: true,
            redelivery,
            payload: Bytes::from(crate::stamp::encode(
                Stamp {
                    seq,
                    intended_us: 5,
                },
                32,
            )),
            ..Push::default()
        })
    }

    /// An established client, acking on receipt when `ack`.
    fn client(ack: bool) -> GatewayClient {
        let id = Identity {
            user: "u1".into(),
            token: "t".into(),
            heartbeat_ms: 30_000,
        };
        let mut c = GatewayClient::new(&id, Millis(0));
        c.set_auto_ack(ack);
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.start(&mut out);
        c.input(
            Millis(1),
            &bytes_of(vec![Kind::Welcome(Welcome::default())]),
            &mut ev,
            &mut out,
        );
        assert_eq!(ev, [WireEvent::Established]);
        c
    }

    #[test]
    fn with_ack_each_push_is_acked_on_receipt_and_a_copy_is_a_redelivery() {
        let mut c = client(true);
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.input(
            Millis(2),
            &bytes_of(vec![durable(7, 0, false), durable(8, 1, false)]),
            &mut ev,
            &mut out,
        );
        assert_eq!(acks(&out), [7, 8], "acked as they arrive");
        assert!(
            matches!(&ev[..], [WireEvent::Delivery(Some(a)), WireEvent::Delivery(Some(b))]
            if a.seq == 0 && b.seq == 1)
        );
        // The gateway sends 7 again (the ack came too late): one
        // redelivery, acked again, no second delivery.
        ev.clear();
        out.clear();
        c.input(
            Millis(3),
            &bytes_of(vec![durable(7, 0, true)]),
            &mut ev,
            &mut out,
        );
        assert_eq!(ev, [WireEvent::Redelivery]);
        assert_eq!(acks(&out), [7]);
        // A flagged copy of an id this connection never saw: a delivery
        // (the first here) and a redelivery on the wire.
        ev.clear();
        out.clear();
        c.input(
            Millis(4),
            &bytes_of(vec![durable(9, 2, true)]),
            &mut ev,
            &mut out,
        );
        assert!(
            matches!(&ev[..], [WireEvent::Redelivery, WireEvent::Delivery(Some(s))] if s.seq == 2)
        );
        assert_eq!(acks(&out), [9]);
    }

    #[test]
    fn without_ack_nothing_is_acked() {
        let mut c = client(false);
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.input(
            Millis(2),
            &bytes_of(vec![durable(7, 0, false)]),
            &mut ev,
            &mut out,
        );
        assert!(acks(&out).is_empty());
        assert!(matches!(&ev[..], [WireEvent::Delivery(Some(_))]));
    }

    #[test]
    fn codes_are_named() {
        assert_eq!(
            close_label(ClientCloseReason::ServerError(6)),
            "gateway error: ERROR_CODE_UNAUTHORIZED (6)"
        );
        assert_eq!(
            close_label(ClientCloseReason::Kicked(KickCode::Drain as u32)),
            format!("kicked: KICK_CODE_DRAIN ({})", KickCode::Drain as u32)
        );
        assert_eq!(
            close_label(ClientCloseReason::ServerError(999)),
            "gateway error: unknown code 999"
        );
    }
}

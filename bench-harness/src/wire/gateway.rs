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

    /// Feeds received bytes.
    pub fn input(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        self.session.handle_input(now, data, &mut self.events, out);
        for e in self.events.drain(..) {
            match e {
                ClientEvent::Welcome(_) => ev.push(WireEvent::Established),
                ClientEvent::Push(p) => ev.push(WireEvent::Delivery(stamp::decode(&p.payload))),
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
    use super::*;

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

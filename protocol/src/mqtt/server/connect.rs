//! A decoded CONNECT, checked against the client id rules and the
//! configured bounds, and turned into the owned [`ConnectRequest`] the
//! caller authenticates.

use bytes::Bytes;

use super::{CloseReason, ConnectRequest, Limit, MqttConfig, Will};
use crate::mqtt::{Connect, ConnectReturnCode};

/// Why `c` is refused before the caller sees it:
/// [`CloseReason::Refused`] with CONNACK 0x02 for an empty client id
/// without clean session (§3.1.3-8) or one over `max_client_id_len`;
/// [`CloseReason::LimitExceeded`] for a will topic over `max_topic_len`.
pub(super) fn check_connect(c: &Connect<'_>, cfg: &MqttConfig) -> Result<(), CloseReason> {
    let id_rejected =
        (c.client_id.is_empty() && !c.clean_session) || c.client_id.len() > cfg.max_client_id_len;
    if id_rejected {
        return Err(CloseReason::Refused(ConnectReturnCode::IdentifierRejected));
    }
    if c.will
        .as_ref()
        .is_some_and(|w| w.topic.len() > cfg.max_topic_len)
    {
        return Err(CloseReason::LimitExceeded(Limit::TopicLength));
    }
    Ok(())
}

/// The owned request for a checked CONNECT.
pub(super) fn connect_request(c: &Connect<'_>) -> ConnectRequest {
    ConnectRequest {
        client_id: (!c.client_id.is_empty()).then(|| c.client_id.to_owned()),
        username: c.username.map(str::to_owned),
        password: c.password.map(Bytes::copy_from_slice),
        clean_session: c.clean_session,
        keep_alive_s: c.keep_alive,
        will: c.will.as_ref().map(|w| Will {
            topic: w.topic.to_owned(),
            payload: Bytes::copy_from_slice(w.payload),
            qos: w.qos,
            retain: w.retain,
        }),
    }
}

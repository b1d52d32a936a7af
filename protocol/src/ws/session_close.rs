//! The close code a WebSocket connection ends with when its v1 session
//! closes: the v1 `Error` or `Kick` frame before it says why in full; the
//! code tells a browser's `CloseEvent` (and a reconnect policy) the gist.

use super::close::CloseCode;
use crate::proto::{ErrorCode, KickCode};
use crate::server::CloseReason;

/// Try again later (1013, IANA-registered): the server is overloaded.
pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

/// The close code for a session that ended with `reason`.
///
/// - The client's `Bye`: 1000.
/// - A kick for shutdown or drain: 1001 (going away: reconnect); any other
///   kick: 1008.
/// - An error or refusal: 1009 for an oversize frame, 1002 for undecodable
///   or out-of-place frames, 1013 when overloaded, 1011 for the gateway's
///   or a backend's failure, 1008 for the rest (auth, limits, timeouts,
///   slow consumer).
#[must_use]
pub fn close_code_for(reason: &CloseReason) -> CloseCode {
    match reason {
        CloseReason::ClientBye => CloseCode::NORMAL,
        CloseReason::Kicked(KickCode::GoingAway | KickCode::Drain) => CloseCode::GOING_AWAY,
        CloseReason::Kicked(_) => CloseCode::POLICY_VIOLATION,
        CloseReason::ProtocolError(code) | CloseReason::Rejected(code) => for_error(*code),
        CloseReason::HandshakeTimeout | CloseReason::IdleTimeout => CloseCode::POLICY_VIOLATION,
    }
}

fn for_error(code: ErrorCode) -> CloseCode {
    match code {
        ErrorCode::FrameTooLarge => CloseCode::MESSAGE_TOO_BIG,
        ErrorCode::BadFrame
        | ErrorCode::UnknownKind
        | ErrorCode::HelloRequired
        | ErrorCode::UnsupportedVersion => CloseCode::PROTOCOL_ERROR,
        ErrorCode::Overloaded => TRY_AGAIN_LATER,
        ErrorCode::Internal | ErrorCode::BackendUnavailable | ErrorCode::BackendTimeout => {
            CloseCode::INTERNAL_ERROR
        }
        _ => CloseCode::POLICY_VIOLATION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ends_map_to_close_codes() {
        let cases = [
            (CloseReason::ClientBye, 1000),
            (CloseReason::Kicked(KickCode::GoingAway), 1001),
            (CloseReason::Kicked(KickCode::Drain), 1001),
            (CloseReason::Kicked(KickCode::DuplicateSession), 1008),
            (CloseReason::ProtocolError(ErrorCode::FrameTooLarge), 1009),
            (CloseReason::ProtocolError(ErrorCode::BadFrame), 1002),
            (CloseReason::ProtocolError(ErrorCode::HelloRequired), 1002),
            (CloseReason::Rejected(ErrorCode::Unauthorized), 1008),
            (CloseReason::Rejected(ErrorCode::Overloaded), 1013),
            (CloseReason::ProtocolError(ErrorCode::Internal), 1011),
            (CloseReason::IdleTimeout, 1008),
            (CloseReason::HandshakeTimeout, 1008),
        ];
        for (reason, code) in cases {
            let got = close_code_for(&reason);
            assert_eq!(got, CloseCode(code), "{reason:?}");
            assert!(got.is_valid_on_wire());
        }
    }
}

//! Close codes (RFC 6455 §7.4) and the payload of a close frame (§5.5.1):
//! empty, or a 2-byte big-endian code followed by a UTF-8 reason.

/// Why a received close frame's payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// A 1-byte payload: a code needs 2.
    #[error("close frame payload of 1 byte")]
    TooShort,
    /// A code that may not be sent (§7.4).
    #[error("close code {0} is not valid on the wire")]
    InvalidCode(u16),
    /// A reason that is not UTF-8.
    #[error("close reason is not UTF-8")]
    InvalidReason,
}

impl CloseError {
    /// The code of the close frame that answers it: 1007 for a reason that
    /// is not UTF-8 (invalid payload data), else 1002 (protocol error).
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            CloseError::InvalidReason => CloseCode::INVALID_PAYLOAD,
            CloseError::TooShort | CloseError::InvalidCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint goes away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint does not accept (here: text).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: data inconsistent with its type (here: a close reason that is
    /// not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy violation (a generic refusal).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether the code may appear in a close frame on the wire.
    ///
    /// Valid: 1000–1003, 1007–1011, 1012–1014 (registered with IANA after
    /// the RFC: service restart, try again later, bad gateway), and
    /// 3000–4999 (libraries and applications). Invalid: below 1000, 1004
    /// (reserved), 1005 and 1006 (never sent: "no code" and "abnormal
    /// closure" exist only for APIs), 1015 (TLS failure, likewise),
    /// 1016–2999 (unassigned) and 5000 upwards.
    #[must_use]
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The code of a received close frame's `payload`: `None` for an empty
/// payload (the peer gave no code), else the code, once it and the reason
/// are checked.
///
/// A 1-byte payload or a code not valid on the wire is a protocol error
/// (1002); a reason that is not UTF-8 is invalid payload data (1007).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseCode>, CloseError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return if payload.is_empty() {
            Ok(None)
        } else {
            Err(CloseError::TooShort)
        };
    };
    let code = CloseCode(u16::from_be_bytes(*code));
    if !code.is_valid_on_wire() {
        return Err(CloseError::InvalidCode(code.0));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(CloseError::InvalidReason);
    }
    Ok(Some(code))
}

/// The longest prefix of `reason` that fits a close frame (125 bytes of
/// payload, 2 of them the code), cut at a character boundary so it stays
/// UTF-8.
#[must_use]
pub fn fit_reason(reason: &str) -> &str {
    const MAX: usize = super::frame::MAX_CONTROL_PAYLOAD - 2;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_and_iana() {
        // The valid and invalid codes of Autobahn|Testsuite cases 7.7 and 7.9.
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in [1012, 1013, 1014] {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
    }

    #[test]
    fn payloads_parse_or_fail_with_the_right_error() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]), Err(CloseError::TooShort));
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8]),
            Ok(Some(CloseCode::NORMAL))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe9bye \xce\xba\xe1\xbd\xb9"),
            Ok(Some(CloseCode::GOING_AWAY))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(CloseError::InvalidCode(1005))
        );
        // A reason cut in the middle of a character, and a surrogate.
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce"),
            Err(CloseError::InvalidReason)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xed\xa0\x80"),
            Err(CloseError::InvalidReason)
        );
        assert_eq!(
            CloseError::InvalidReason.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(CloseError::TooShort.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(fit_reason("short"), "short");
        let long = "é".repeat(100); // 200 bytes, 2 per character
        let cut = fit_reason(&long);
        assert_eq!(cut.len(), 122);
        assert!(long.starts_with(cut));
        assert_eq!(fit_reason(&"a".repeat(200)).len(), 123);
    }
}

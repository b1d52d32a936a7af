//! Generated types of the `gateway.v1` protobuf package (`proto/gateway.proto`).
//!
//! Field and message documentation comes from the comments in the `.proto` file.

#![allow(clippy::doc_markdown, clippy::doc_lazy_continuation)]

include!(concat!(env!("OUT_DIR"), "/gateway.v1.rs"));

impl ErrorCode {
    /// The value carried in `Error.code` on the wire.
    #[must_use]
    pub fn as_u32(self) -> u32 {
        // Every value is a small non-negative number.
        u32::try_from(self as i32).unwrap_or(0)
    }

    /// The code for a wire value, or `None` for a value this version does not know.
    #[must_use]
    pub fn from_u32(code: u32) -> Option<ErrorCode> {
        i32::try_from(code)
            .ok()
            .and_then(|v| ErrorCode::try_from(v).ok())
    }
}

impl KickCode {
    /// The value carried in `Kick.code` on the wire.
    #[must_use]
    pub fn as_u32(self) -> u32 {
        u32::try_from(self as i32).unwrap_or(0)
    }

    /// The code for a wire value, or `None` for a value this version does not know.
    #[must_use]
    pub fn from_u32(code: u32) -> Option<KickCode> {
        i32::try_from(code)
            .ok()
            .and_then(|v| KickCode::try_from(v).ok())
    }
}

impl Error {
    /// An `Error` message with the given code and detail.
    #[must_use]
    pub fn new(code: ErrorCode, message: &str) -> Error {
        Error {
            code: code.as_u32(),
            message: message.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorCode, KickCode};

    #[test]
    fn codes_round_trip_through_u32() {
        for v in 0..=17u32 {
            let c = ErrorCode::from_u32(v).unwrap();
            assert_eq!(c.as_u32(), v);
            assert!(c.as_str_name().starts_with("ERROR_CODE_"));
        }
        assert_eq!(ErrorCode::from_u32(18), None);
        assert_eq!(ErrorCode::from_u32(u32::MAX), None);
        assert_eq!(ErrorCode::TokenExpired.as_u32(), 7);
        for v in 0..=5u32 {
            assert_eq!(KickCode::from_u32(v).unwrap().as_u32(), v);
        }
        assert_eq!(KickCode::from_u32(6), None);
        assert_eq!(KickCode::Drain.as_str_name(), "KICK_CODE_DRAIN");
    }
}

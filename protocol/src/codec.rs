//! Length-prefixed framing over caller-owned bytes.
//!
//! A frame on the wire is a 4-byte big-endian length `N` followed by `N` bytes
//! of a protobuf-encoded [`Frame`], with `1 <= N <= max_frame`. The length is
//! checked from the 4-byte header alone, so an oversize or empty frame is
//! rejected before anything is allocated or the body is waited for.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::proto::{ErrorCode, Frame, Push, frame::Kind};

/// Size of the big-endian length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Default largest accepted frame body, in bytes (the prefix not included).
pub const DEFAULT_MAX_FRAME: u32 = 65536;

/// Why bytes could not be decoded into a [`Frame`].
///
/// Every variant is fatal for the connection: the receiver answers with one
/// `Error` frame carrying [`CodecError::error_code`] and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix is zero.
    #[error("frame length is zero")]
    EmptyFrame,
    /// The length prefix exceeds the receiver's `max_frame`.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced body length.
        len: u32,
        /// The receiver's limit.
        max: u32,
    },
    /// The body is not a valid protobuf `Frame`.
    #[error("undecodable frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The body decoded, but no `kind` (or only one unknown to this version) is set.
    #[error("frame has no known kind")]
    UnknownKind,
}

impl CodecError {
    /// The wire error code to report to the peer.
    #[must_use]
    pub fn error_code(&self) -> ErrorCode {
        match self {
            CodecError::EmptyFrame | CodecError::Malformed(_) => ErrorCode::BadFrame,
            CodecError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            CodecError::UnknownKind => ErrorCode::UnknownKind,
        }
    }
}

/// Reads and checks the length prefix at the start of `buf`.
///
/// Returns `Ok(None)` while fewer than [`LENGTH_PREFIX`] bytes are available,
/// `Ok(Some(len))` for an acceptable body length, and an error for a zero or
/// oversize length.
pub fn peek_length(buf: &[u8], max_frame: u32) -> Result<Option<u32>, CodecError> {
    let Some(header) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header);
    if len == 0 {
        return Err(CodecError::EmptyFrame);
    }
    if len > max_frame {
        return Err(CodecError::TooLarge {
            len,
            max: max_frame,
        });
    }
    Ok(Some(len))
}

/// Decodes the frame at the start of `buf`.
///
/// - `Ok(None)`: `buf` holds only part of a frame; call again with more bytes.
/// - `Ok(Some((frame, consumed)))`: one frame decoded from the first `consumed`
///   bytes; the rest of `buf` (possibly more frames) is untouched.
/// - `Err(_)`: the stream is corrupt; there is no way to resynchronise.
///
/// A length of zero or above `max_frame` is rejected from the header alone.
pub fn decode_frame(buf: &[u8], max_frame: u32) -> Result<Option<(Frame, usize)>, CodecError> {
    let Some(len) = peek_length(buf, max_frame)? else {
        return Ok(None);
    };
    // `len <= max_frame <= u32::MAX` fits in usize on every supported target.
    let total = LENGTH_PREFIX.saturating_add(len as usize);
    let Some(body) = buf.get(LENGTH_PREFIX..total) else {
        return Ok(None);
    };
    let frame = Frame::decode(body)?;
    if frame.kind.is_none() {
        return Err(CodecError::UnknownKind);
    }
    Ok(Some((frame, total)))
}

/// Length of `frame` once encoded, prefix included.
#[must_use]
pub fn encoded_len(frame: &Frame) -> usize {
    LENGTH_PREFIX + frame.encoded_len()
}

/// Appends `frame` (length prefix, then body) to `out`.
///
/// Does not check the receiver's `max_frame`; see [`encode_frame_checked`].
/// A frame with no `kind` encodes to an empty body, which receivers reject.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    let body = frame.encoded_len();
    out.reserve(LENGTH_PREFIX + body);
    // A body is never near 4 GiB: saturate rather than wrap if it were.
    out.put_u32(u32::try_from(body).unwrap_or(u32::MAX));
    frame.encode_raw(out);
}

/// Like [`encode_frame`], but refuses (and leaves `out` untouched) when the
/// body would exceed `max_frame` or be empty.
pub fn encode_frame_checked(
    frame: &Frame,
    max_frame: u32,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let body = frame.encoded_len();
    if body == 0 {
        return Err(CodecError::EmptyFrame);
    }
    let len = u32::try_from(body).unwrap_or(u32::MAX);
    if len > max_frame {
        return Err(CodecError::TooLarge {
            len,
            max: max_frame,
        });
    }
    encode_frame(frame, out);
    Ok(())
}

/// Encodes `frame` once (prefix included) into reference-counted bytes that
/// can be handed to many recipients without copying.
#[must_use]
pub fn encode_shared(frame: &Frame) -> Bytes {
    let body = frame.encoded_len();
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX + body);
    buf.put_u32(u32::try_from(body).unwrap_or(u32::MAX));
    frame.encode_raw(&mut buf);
    buf.freeze()
}

/// Encodes a [`Push`] as a complete frame, once, for broadcast.
///
/// A `Push` carries no per-recipient field, so the same bytes go to every
/// recipient.
#[must_use]
pub fn encode_push(push: &Push) -> Bytes {
    // Cloning a Push is cheap: its payload is a `Bytes` (refcount bump).
    encode_shared(&Frame {
        kind: Some(Kind::Push(push.clone())),
    })
}

/// Wraps a message kind into a [`Frame`].
#[must_use]
pub fn frame(kind: Kind) -> Frame {
    Frame { kind: Some(kind) }
}

/// Short lowercase name of a frame kind, for logs and metrics labels.
#[must_use]
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Hello(_) => "hello",
        Kind::Welcome(_) => "welcome",
        Kind::Ping(_) => "ping",
        Kind::Pong(_) => "pong",
        Kind::Subscribe(_) => "subscribe",
        Kind::Unsubscribe(_) => "unsubscribe",
        Kind::Push(_) => "push",
        Kind::Ack(_) => "ack",
        Kind::Uplink(_) => "uplink",
        Kind::Reply(_) => "reply",
        Kind::Kick(_) => "kick",
        Kind::Error(_) => "error",
        Kind::Bye(_) => "bye",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Ack, Bye, Hello, Ping};

    fn ping(id: u64) -> Frame {
        frame(Kind::Ping(Ping { id }))
    }

    #[test]
    fn round_trip_one_frame() {
        let f = frame(Kind::Hello(Hello {
            version: 1,
            token: "t".into(),
            device: "d".into(),
            apps: vec!["a".into(), "b".into()],
            heartbeat_ms: 1234,
            resume: Bytes::from_static(b"r"),
        }));
        let mut out = Vec::new();
        encode_frame(&f, &mut out);
        assert_eq!(out.len(), encoded_len(&f));
        assert_eq!(&out[..4], &((out.len() - 4) as u32).to_be_bytes());
        let (g, used) = decode_frame(&out, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(g, f);
        assert_eq!(used, out.len());
    }

    #[test]
    fn partial_input_is_none_at_every_split() {
        let mut out = Vec::new();
        encode_frame(&ping(99), &mut out);
        for cut in 0..out.len() {
            assert_eq!(
                decode_frame(&out[..cut], DEFAULT_MAX_FRAME),
                Ok(None),
                "cut {cut}"
            );
        }
        assert!(decode_frame(&out, DEFAULT_MAX_FRAME).unwrap().is_some());
    }

    #[test]
    fn several_frames_decode_in_order() {
        let mut out = Vec::new();
        for id in 0..5 {
            encode_frame(&ping(id), &mut out);
        }
        encode_frame(&frame(Kind::Bye(Bye {})), &mut out);
        let mut rest = &out[..];
        let mut got = Vec::new();
        while let Some((f, used)) = decode_frame(rest, DEFAULT_MAX_FRAME).unwrap() {
            got.push(f);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(got.len(), 6);
        assert_eq!(got[3], ping(3));
        assert_eq!(got[5], frame(Kind::Bye(Bye {})));
    }

    #[test]
    fn zero_length_is_rejected_from_header() {
        assert_eq!(decode_frame(&[0, 0, 0, 0], 10), Err(CodecError::EmptyFrame));
        assert_eq!(CodecError::EmptyFrame.error_code(), ErrorCode::BadFrame);
    }

    #[test]
    fn oversize_is_rejected_from_header_alone() {
        // Only the header: the body is never waited for.
        let err = decode_frame(&[0, 0, 0, 11], 10).unwrap_err();
        assert_eq!(err, CodecError::TooLarge { len: 11, max: 10 });
        assert_eq!(err.error_code(), ErrorCode::FrameTooLarge);
        let err = decode_frame(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { len: u32::MAX, .. }));
        // Exactly max is fine (here: waiting for the body).
        assert_eq!(decode_frame(&[0, 0, 0, 10], 10), Ok(None));
    }

    #[test]
    fn garbage_body_is_malformed() {
        let buf = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        let err = decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
        assert_eq!(err.error_code(), ErrorCode::BadFrame);
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn frame_without_kind_is_unknown_kind() {
        // Field 99 (varint) is unknown to Frame: decodes to kind = None.
        let body = [0x98, 0x06, 0x01];
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&body);
        let err = decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(err, CodecError::UnknownKind);
        assert_eq!(err.error_code(), ErrorCode::UnknownKind);
    }

    #[test]
    fn checked_encode_enforces_limits() {
        let mut out = Vec::new();
        let big = frame(Kind::Ack(Ack {
            ids: (0..100).collect(),
        }));
        assert!(matches!(
            encode_frame_checked(&big, 10, &mut out),
            Err(CodecError::TooLarge { max: 10, .. })
        ));
        assert!(out.is_empty());
        assert_eq!(
            encode_frame_checked(&Frame { kind: None }, 10, &mut out),
            Err(CodecError::EmptyFrame)
        );
        encode_frame_checked(&big, DEFAULT_MAX_FRAME, &mut out).unwrap();
        assert_eq!(out.len(), encoded_len(&big));
    }

    #[test]
    fn shared_push_matches_plain_encoding() {
        let push = Push {
            id: 7,
            app: "chat".into(),
            topic: "room".into(),
            payload: Bytes::from_static(b"hello"),
            ack: true,
            ts_us: 42,
            redelivery: false,
        };
        let shared = encode_push(&push);
        let mut plain = Vec::new();
        encode_frame(&frame(Kind::Push(push.clone())), &mut plain);
        assert_eq!(&shared[..], &plain[..]);
        let (f, _) = decode_frame(&shared, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(f.kind, Some(Kind::Push(push)));
    }

    #[test]
    fn kind_names_are_distinct() {
        let kinds = [
            Kind::Hello(Hello::default()),
            Kind::Ping(Ping::default()),
            Kind::Bye(Bye {}),
        ];
        let names: Vec<_> = kinds.iter().map(kind_name).collect();
        assert_eq!(names, ["hello", "ping", "bye"]);
    }
}

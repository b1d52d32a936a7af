//! The primitives every MQTT 3.1.1 packet is built from (spec §1.5, §2.2.3):
//! the variable-length "remaining length", big-endian two-byte integers,
//! and length-prefixed UTF-8 strings and binary data, read through a
//! bounds-checked [`Reader`] over the packet body and written to a `Vec<u8>`.

use super::codes::PacketType;
use super::error::{DecodeError, EncodeError};

/// Largest remaining length the four-byte encoding can carry (spec §2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Most bytes a remaining length takes on the wire.
pub const MAX_LENGTH_BYTES: usize = 4;

/// Longest string or binary field: its length prefix is two bytes.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// Reads the remaining length that starts at `buf[0]`.
///
/// `Ok(None)` while the encoding is incomplete; `Ok(Some((value, bytes)))`
/// once it is whole; an error when a fourth byte still has its continuation
/// bit set (a fifth byte is never read).
pub fn decode_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(MAX_LENGTH_BYTES).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_LENGTH_BYTES {
        return Err(DecodeError::BadRemainingLength);
    }
    Ok(None)
}

/// Appends `len` as a remaining length (1 to 4 bytes, shortest form).
pub fn encode_remaining_length(len: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { len });
    }
    let mut rest = len;
    loop {
        // `rest % 128 < 128`: the cast keeps every bit.
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            return Ok(());
        }
    }
}

/// How many bytes [`encode_remaining_length`] writes for `len` (≤ the maximum).
#[must_use]
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a two-byte length prefix and `bytes` (a string or binary field).
pub fn put_field(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len =
        u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong { len: bytes.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Bytes a field takes on the wire: its two-byte prefix and its content.
#[must_use]
pub const fn field_len(content: usize) -> usize {
    2 + content
}

/// Checks a UTF-8 encoded string field (spec §1.5.3): well-formed UTF-8
/// (which excludes the surrogates U+D800..U+DFFF) and no U+0000.
pub fn check_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8)?;
    if bytes.contains(&0) {
        return Err(DecodeError::NulCharacter);
    }
    Ok(s)
}

/// A cursor over one packet's body (everything after the fixed header).
/// Every read is bounds-checked: running past the end is
/// [`DecodeError::Truncated`], naming the packet.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    body: &'a [u8],
    packet: PacketType,
}

impl<'a> Reader<'a> {
    /// A reader over `body`, the body of a `packet`.
    #[must_use]
    pub fn new(body: &'a [u8], packet: PacketType) -> Reader<'a> {
        Reader { body, packet }
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.body.len()
    }

    /// Whether everything has been read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.body.len() {
            return Err(DecodeError::Truncated(self.packet));
        }
        let (head, rest) = self.body.split_at(n);
        self.body = rest;
        Ok(head)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.body)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = *self.take_array::<1>()?;
        Ok(b)
    }

    /// A big-endian two-byte integer.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(*self.take_array::<2>()?))
    }

    /// A non-zero packet identifier (spec §2.3.1).
    pub fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId(self.packet)),
            id => Ok(id),
        }
    }

    /// A length-prefixed binary field.
    pub fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A length-prefixed UTF-8 string, checked per spec §1.5.3.
    pub fn string(&mut self) -> Result<&'a str, DecodeError> {
        check_utf8(self.binary()?)
    }

    /// Fails unless everything has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.packet))
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<&'a [u8; N], DecodeError> {
        let (head, rest) = self
            .body
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated(self.packet))?;
        self.body = rest;
        Ok(head)
    }
}

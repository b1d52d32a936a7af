//! The frame format (RFC 6455 §5.2): opcodes, the size limits of a header
//! and of a control frame, and masking.

/// Largest control frame payload (RFC 6455 §5.5): pings, pongs and closes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest frame header: 2 bytes, an 8-byte extended length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// A frame's opcode (RFC 6455 §5.2). Values 3–7 and 11–15 are reserved and
/// refused by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// A later fragment of a fragmented message.
    Continuation = 0x0,
    /// The first frame of a text message (refused by this mapping).
    Text = 0x1,
    /// The first frame of a binary message.
    Binary = 0x2,
    /// Close (control).
    Close = 0x8,
    /// Ping (control).
    Ping = 0x9,
    /// Pong (control).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for the low 4 bits `bits`, or `None` for a reserved value.
    #[must_use]
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    #[must_use]
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// XORs `buf` with the 4-byte `mask`, `buf[0]` being the payload byte at
/// `offset` (RFC 6455 §5.3). Masking and unmasking are the same operation.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    // A simple indexed loop: LLVM vectorises it.
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_reserved_ones_are_none() {
        for op in [
            Opcode::Continuation,
            Opcode::Text,
            Opcode::Binary,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ] {
            assert_eq!(Opcode::from_bits(op as u8), Some(op));
        }
        for bits in (3..=7).chain(11..=15) {
            assert_eq!(Opcode::from_bits(bits), None, "{bits}");
        }
        assert!(Opcode::Ping.is_control() && !Opcode::Binary.is_control());
    }

    #[test]
    fn masking_at_any_offset_matches_bytewise() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for (i, (&d, &w)) in data.iter().zip(&whole).enumerate() {
            assert_eq!(d ^ mask[i % 4], w);
        }
        // Unmasking in pieces at every split point gives the same bytes.
        for cut in 0..data.len() {
            let mut pieces = whole.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, cut);
            assert_eq!(pieces, data, "cut {cut}");
        }
    }
}

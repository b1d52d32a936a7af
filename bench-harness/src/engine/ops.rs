//! Completion routing: each SQE's `user_data` says which operation, which
//! connection slot and which incarnation of that slot it was for.

/// Operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Socket creation into a direct-descriptor slot.
    Socket = 1,
    /// A setsockopt in the connect chain.
    SockOpt = 2,
    /// Bind to the source address.
    Bind = 3,
    /// Connect.
    Connect = 4,
    /// Send.
    Send = 5,
    /// Multishot receive.
    Recv = 6,
    /// Shutdown before close.
    Shutdown = 7,
    /// Close of the slot.
    Close = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Op::Socket,
            2 => Op::SockOpt,
            3 => Op::Bind,
            4 => Op::Connect,
            5 => Op::Send,
            6 => Op::Recv,
            7 => Op::Shutdown,
            8 => Op::Close,
            _ => return None,
        })
    }

    /// Name for failure reasons.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Op::Socket => "socket",
            Op::SockOpt => "setsockopt",
            Op::Bind => "bind",
            Op::Connect => "connect",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Shutdown => "shutdown",
            Op::Close => "close",
        }
    }
}

/// A decoded `user_data`: operation, slot, generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The operation.
    pub op: Op,
    /// Slot generation when submitted.
    pub generation: u16,
    /// Connection slot (also the direct-descriptor index).
    pub slot: u32,
}

impl Tag {
    /// Packs into 64 bits.
    #[must_use]
    pub fn encode(self) -> u64 {
        (u64::from(self.op as u8) << 56) | (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    /// Unpacks; `None` for values no SQE carried.
    #[must_use]
    pub fn decode(v: u64) -> Option<Self> {
        Some(Self {
            op: Op::from_u8((v >> 56) as u8)?,
            generation: (v >> 32) as u16,
            slot: v as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in [Op::Socket, Op::Recv, Op::Close] {
            let t = Tag {
                op,
                generation: 65_535,
                slot: u32::MAX,
            };
            assert_eq!(Tag::decode(t.encode()), Some(t));
        }
        assert_eq!(Tag::decode(0), None);
    }
}

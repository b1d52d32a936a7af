//! Completion routing: each SQE's `user_data` says which operation, which
//! connection slot and which incarnation of that slot it was for (packed
//! as the gateway packs its own, see `gateway::uring::op`).

use gateway::uring::op::OpCode;

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

impl OpCode for Op {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(v: u8) -> Option<Self> {
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
}

impl Op {
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

/// A decoded `user_data`: operation, connection slot (also the
/// direct-descriptor index), generation of the slot: the gateway's tag
/// packing, over the harness's operations.
pub type Tag = gateway::uring::op::Tag<Op>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in [Op::Socket, Op::Recv, Op::Close] {
            let t = Tag::of(op, u32::MAX, 65_535);
            assert_eq!(Tag::decode(t.encode()), Some(t));
            assert!(t.is_for(65_535));
        }
        assert_eq!(Tag::decode(0), None);
    }
}

//! Completion routing: every SQE carries a `user_data` that says which
//! operation it was, for which connection, and for which generation of
//! that connection's slot, packed into 64 bits. [`Tag`] is generic over the
//! operation kinds, so the gateway's shards ([`OpKind`]) and the load
//! harness (its own kinds) share the packing and the generation check.

/// What an SQE was submitted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Multishot accept on the client listener.
    AcceptMulti = 1,
    /// Single-shot accept (with peer address) on the client listener; the
    /// index says which address slot it fills.
    AcceptOne = 2,
    /// Multishot receive on a client connection.
    Recv = 3,
    /// Send on a client connection.
    Send = 4,
    /// Shutdown(SHUT_WR) of a client connection being closed.
    Shutdown = 5,
    /// Close of a client connection's direct descriptor.
    Close = 6,
    /// Read of the shard's doorbell eventfd.
    Doorbell = 7,
    /// Accept on the control listener.
    ControlAccept = 8,
    /// Receive on a control connection.
    ControlRecv = 9,
    /// Send on a control connection.
    ControlSend = 10,
    /// Close of a control connection.
    ControlClose = 11,
    /// Cancellation of another operation (result ignored).
    Cancel = 12,
    /// Connect of a backend connection (index: its key in the HTTP client).
    BackendConnect = 13,
    /// The timeout linked to a backend connect (result ignored).
    BackendLinkTimeout = 14,
    /// Send on a backend connection.
    BackendSend = 15,
    /// Receive on a backend connection.
    BackendRecv = 16,
    /// Close of a backend connection.
    BackendClose = 17,
    // 18 was the backend client's own timer: its deadlines now bound the
    // shard's wait.
    /// The poll of the shard's urgent descriptors (see `uring::urgent`).
    UrgentPoll = 19,
    /// The zero timeout linked to that poll (result ignored).
    UrgentTimeout = 20,
}

impl OpKind {
    /// Whether completions of this kind are the steady traffic of client
    /// connections (frames in and out, closes) that heartbeats alone
    /// produce, rather than work someone waits on (a push, a control
    /// request, a backend reply, a new connection). A shard batches its
    /// wake-ups only while it sees nothing but client traffic.
    pub fn is_client_traffic(self) -> bool {
        matches!(
            self,
            Self::Recv | Self::Send | Self::Shutdown | Self::Close | Self::Cancel
        )
    }
}

impl OpCode for OpKind {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::AcceptMulti,
            2 => Self::AcceptOne,
            3 => Self::Recv,
            4 => Self::Send,
            5 => Self::Shutdown,
            6 => Self::Close,
            7 => Self::Doorbell,
            8 => Self::ControlAccept,
            9 => Self::ControlRecv,
            10 => Self::ControlSend,
            11 => Self::ControlClose,
            12 => Self::Cancel,
            13 => Self::BackendConnect,
            14 => Self::BackendLinkTimeout,
            15 => Self::BackendSend,
            16 => Self::BackendRecv,
            17 => Self::BackendClose,
            19 => Self::UrgentPoll,
            20 => Self::UrgentTimeout,
            _ => return None,
        })
    }
}

/// Operation kinds a [`Tag`] can carry: one byte each, 0 never used (so a
/// zero `user_data` decodes to nothing).
pub trait OpCode: Copy + Eq + std::fmt::Debug {
    /// The kind's byte (1..=255).
    fn code(self) -> u8;
    /// The kind of a byte, if it is one.
    fn from_code(code: u8) -> Option<Self>;
}

/// Bits of a connection's generation a [`Tag`] carries.
pub use crate::stream::GENERATION_BITS;

const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;

/// An operation and the object it belongs to: a slab key or slot index,
/// and for a connection, the generation of the connection in that slot
/// when the operation was submitted, so that a completion (or a
/// cancellation by `user_data`) can never be taken for an operation of a
/// later connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<K> {
    /// The operation.
    pub kind: K,
    /// Connection key or slot index the operation belongs to.
    pub index: u32,
    /// The low [`GENERATION_BITS`] of the connection's generation (0 for
    /// objects that have none).
    pub generation: u32,
}

/// A shard's operation tag.
pub type OpTag = Tag<OpKind>;

impl<K: OpCode> Tag<K> {
    /// A tag for `kind` on `index`, with no generation.
    pub fn new(kind: K, index: u32) -> Self {
        Self::of(kind, index, 0)
    }

    /// A tag for `kind` on connection `index` of generation `generation`.
    pub fn of(kind: K, index: u32, generation: u32) -> Self {
        Self {
            kind,
            index,
            generation: generation & GENERATION_MASK,
        }
    }

    /// Whether this tag was made for the connection of generation
    /// `generation` (compared on the bits a tag carries).
    pub fn is_for(self, generation: u32) -> bool {
        crate::stream::same_generation(self.generation, generation)
    }

    /// Packs the tag into an SQE's `user_data`.
    pub fn encode(self) -> u64 {
        (u64::from(self.kind.code()) << 56)
            | (u64::from(self.generation & GENERATION_MASK) << 32)
            | u64::from(self.index)
    }

    /// Unpacks a CQE's `user_data`; `None` for values no SQE carried.
    pub fn decode(user_data: u64) -> Option<Self> {
        let kind = K::from_code((user_data >> 56) as u8)?;
        Some(Self {
            kind,
            index: user_data as u32,
            generation: (user_data >> 32) as u32 & GENERATION_MASK,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for kind in [
            OpKind::AcceptMulti,
            OpKind::Recv,
            OpKind::Cancel,
            OpKind::ControlClose,
            OpKind::UrgentTimeout,
        ] {
            for index in [0, 1, u32::MAX] {
                for generation in [0, 1, GENERATION_MASK, u32::MAX] {
                    let t = OpTag::of(kind, index, generation);
                    assert_eq!(OpTag::decode(t.encode()), Some(t));
                    assert!(t.is_for(generation));
                }
            }
        }
        assert_eq!(OpTag::decode(0), None);
    }

    #[test]
    fn a_tag_tells_generations_apart() {
        let old = OpTag::of(OpKind::Shutdown, 7, 41);
        assert!(!old.is_for(42));
        assert_ne!(old.encode(), OpTag::of(OpKind::Shutdown, 7, 42).encode());
        // Only the carried bits count: 2^24 generations later the tag repeats.
        assert!(old.is_for(41 + (1 << GENERATION_BITS)));
    }
}

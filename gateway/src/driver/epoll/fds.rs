//! What the epoll driver knows about each descriptor it watches: whose it
//! is (a client stream, a control or a backend connection), which
//! connection and generation of its owner's slot it belongs to, the
//! readiness edge-triggered epoll reported and not yet used up, and the
//! operation waiting on it. Indexed by descriptor number; a slot's `seq`
//! changes whenever the descriptor is closed, so an event that was already
//! fetched for a closed descriptor is never taken for the next one that
//! gets the same number.

use std::os::fd::RawFd;

/// Whose a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// Not watched.
    #[default]
    Free,
    /// A client connection of the core.
    Client,
    /// A connection of the control server.
    Control,
    /// A connection of the backend client.
    Backend,
}

/// One watched descriptor.
#[derive(Debug, Clone, Copy, Default)]
pub struct FdSlot {
    /// Changes every time the descriptor number is reused.
    pub seq: u32,
    /// Whose it is.
    pub owner: Owner,
    /// The owner's connection key (known from its first operation).
    pub key: u32,
    /// The owner's connection generation.
    pub generation: u32,
    /// Reads may find data (or the end): epoll said so, or nothing has
    /// been tried since.
    pub readable: bool,
    /// Writes may go through.
    pub writable: bool,
    /// The peer's end (FIN, reset or error) was reported: reads go on
    /// until they find it, so a short read does not mean "empty" then.
    pub peer_closed: bool,
    /// A receive is wanted (client: until cancelled; control and backend:
    /// one receive of at most `recv_max` bytes).
    pub reading: bool,
    /// Most bytes a control or backend receive takes (a larger ask is
    /// read 64 KiB at a time: a receive may always return fewer). A `u16`
    /// keeps the slot at 24 B, and there is one slot per descriptor number
    /// in every shard's table.
    pub recv_max: u16,
    /// A send waits for the socket to become writable.
    pub send_pending: bool,
    /// A backend connect is in progress.
    pub connecting: bool,
    /// Listed for the next visit.
    pub queued: bool,
}

/// The watched descriptors.
#[derive(Debug, Default)]
pub struct FdTable {
    slots: Vec<FdSlot>,
}

impl FdTable {
    /// Starts watching `fd` for `owner`; returns its slot's `seq`.
    pub fn open(&mut self, fd: RawFd, owner: Owner) -> u32 {
        let i = usize::try_from(fd).unwrap_or(usize::MAX);
        if i >= self.slots.len() {
            self.slots.resize(i + 1, FdSlot::default());
        }
        let slot = &mut self.slots[i];
        let seq = slot.seq;
        *slot = FdSlot {
            seq,
            owner,
            // Untried: the first read or write finds out.
            readable: true,
            writable: true,
            ..FdSlot::default()
        };
        seq
    }

    /// The slot of `fd` if it is watched.
    pub fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdSlot> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .filter(|s| s.owner != Owner::Free)
    }

    /// The slot of `fd` if it is watched and `seq` is its current one (an
    /// event's).
    pub fn current(&mut self, fd: RawFd, seq: u32) -> Option<&mut FdSlot> {
        self.get_mut(fd).filter(|s| s.seq == seq & SEQ_MASK)
    }

    /// `fd` is closed: its slot is free and its number's next use gets a
    /// new `seq`.
    pub fn close(&mut self, fd: RawFd) {
        if let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)) {
            let seq = slot.seq.wrapping_add(1) & SEQ_MASK;
            *slot = FdSlot {
                seq,
                ..FdSlot::default()
            };
        }
    }
}

/// Bits of `seq` an event's data carries.
const SEQ_MASK: u32 = (1 << 24) - 1;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The client listener.
    Listener,
    /// The control listener.
    ControlListener,
    /// The doorbell eventfd.
    Doorbell,
    /// A descriptor of the table, with its `seq` when it was watched.
    Fd(RawFd, u32),
}

impl Token {
    /// Packs the token into an event's data.
    pub fn encode(self) -> u64 {
        match self {
            Token::Listener => 1 << 56,
            Token::ControlListener => 2 << 56,
            Token::Doorbell => 3 << 56,
            Token::Fd(fd, seq) => {
                (4 << 56) | (u64::from(seq & SEQ_MASK) << 32) | u64::from(fd as u32)
            }
        }
    }

    /// Unpacks an event's data.
    pub fn decode(data: u64) -> Option<Self> {
        Some(match data >> 56 {
            1 => Token::Listener,
            2 => Token::ControlListener,
            3 => Token::Doorbell,
            4 => Token::Fd(data as u32 as RawFd, (data >> 32) as u32 & SEQ_MASK),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Listener,
            Token::ControlListener,
            Token::Doorbell,
            Token::Fd(0, 0),
            Token::Fd(19_999, SEQ_MASK),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }

    /// Every shard's table has a slot per descriptor number of the
    /// process, so with S shards a connection costs S slots: 24 B each is
    /// part of the epoll driver's RSS per connection (docs/BENCHMARKS.md).
    #[test]
    fn a_slot_stays_24_bytes() {
        assert!(std::mem::size_of::<FdSlot>() <= 24);
    }

    #[test]
    fn an_event_for_a_closed_descriptor_does_not_reach_its_successor() {
        let mut table = FdTable::default();
        let old = table.open(7, Owner::Client);
        assert!(table.current(7, old).is_some());
        table.close(7);
        assert!(table.get_mut(7).is_none());
        let new = table.open(7, Owner::Control);
        assert_ne!(old, new);
        assert!(table.current(7, old).is_none(), "the old event is stale");
        assert_eq!(table.current(7, new).map(|s| s.owner), Some(Owner::Control));
    }
}

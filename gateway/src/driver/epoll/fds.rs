//! What the epoll driver knows about each descriptor it watches: whose it
//! is (a client stream, a control or a backend connection), which
//! connection and generation of its owner's slot it belongs to, the
//! readiness edge-triggered epoll reported and not yet used up, and the
//! operation waiting on it. Found by descriptor number; every watch gets a
//! new `seq`, so an event that was already fetched for a closed descriptor
//! is never taken for the next one that gets the same number.

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
    /// keeps the slot, one per connection, at 24 B.
    pub recv_max: u16,
    /// A send waits for the socket to become writable.
    pub send_pending: bool,
    /// A backend connect is in progress.
    pub connecting: bool,
    /// Listed for the next visit.
    pub queued: bool,
}

/// The watched descriptors of one shard.
///
/// Descriptor numbers are the process's, shared by every shard, so slots
/// indexed by number would cost each shard a 24-byte slot for every
/// connection of every other shard (1.2 KB a connection at 52 shards). The
/// slots are kept compact instead, one per descriptor this shard watches,
/// and only a 4-byte index entry goes by number.
#[derive(Debug, Default)]
pub struct FdTable {
    /// Descriptor number → its slot's position + 1 (0: not watched here).
    index: Vec<u32>,
    /// The slots, watched and free.
    slots: Vec<FdSlot>,
    /// Positions of free slots, for the next descriptor.
    free: Vec<u32>,
    /// The `seq` of the next watch. One counter for the table, not one per
    /// number or slot, so a number watched again gets a `seq` none of its
    /// earlier watches had (until the 24-bit counter wraps, far beyond the
    /// one `epoll_wait` batch a stale event can come from).
    next_seq: u32,
}

impl FdTable {
    /// Starts watching `fd` for `owner`; returns its slot's `seq`.
    pub fn open(&mut self, fd: RawFd, owner: Owner) -> u32 {
        self.close(fd);
        let Ok(number) = usize::try_from(fd) else {
            return 0;
        };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1) & SEQ_MASK;
        let slot = FdSlot {
            seq,
            owner,
            // Untried: the first read or write finds out.
            readable: true,
            writable: true,
            ..FdSlot::default()
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = slot;
                at
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        if number >= self.index.len() {
            self.index.resize(number + 1, 0);
        }
        self.index[number] = at + 1;
        seq
    }

    /// The slot of `fd` if it is watched.
    pub fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdSlot> {
        let at = *self.index.get(usize::try_from(fd).ok()?)?;
        self.slots
            .get_mut(at.checked_sub(1)? as usize)
            .filter(|s| s.owner != Owner::Free)
    }

    /// The slot of `fd` if it is watched and `seq` is its current one (an
    /// event's).
    pub fn current(&mut self, fd: RawFd, seq: u32) -> Option<&mut FdSlot> {
        self.get_mut(fd).filter(|s| s.seq == seq & SEQ_MASK)
    }

    /// How many descriptors it watches.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// `fd` is closed: its slot is free, and its number's next watch gets
    /// a new `seq`.
    pub fn close(&mut self, fd: RawFd) {
        let Some(entry) = usize::try_from(fd)
            .ok()
            .and_then(|number| self.index.get_mut(number))
        else {
            return;
        };
        let Some(at) = std::mem::take(entry).checked_sub(1) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(at as usize) {
            *slot = FdSlot::default();
            self.free.push(at);
        }
    }
}

/// Bits of `seq` an event's data carries.
const SEQ_MASK: u32 = (1 << 24) - 1;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Client listener number `n` of the shard.
    Listener(u8),
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
            Token::Listener(n) => (1 << 56) | u64::from(n),
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
            1 => Token::Listener(data as u8),
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
            Token::Listener(0),
            Token::Listener(3),
            Token::ControlListener,
            Token::Doorbell,
            Token::Fd(0, 0),
            Token::Fd(19_999, SEQ_MASK),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }

    /// A connection's slot (plus a 4-byte index entry in each shard's
    /// table) is part of the epoll driver's RSS per connection
    /// (docs/BENCHMARKS.md).
    #[test]
    fn a_slot_stays_24_bytes() {
        assert!(std::mem::size_of::<FdSlot>() <= 24);
    }

    #[test]
    fn a_shard_holds_slots_for_its_own_descriptors_only() {
        let mut table = FdTable::default();
        table.open(19_999, Owner::Client);
        assert_eq!(table.len(), 1);
        assert_eq!(table.slots.len(), 1, "no slots for the numbers below it");
        assert!(table.get_mut(19_998).is_none());
        table.close(19_999);
        assert_eq!(table.len(), 0);
        assert!(table.get_mut(19_999).is_none());
        // The freed slot serves the next descriptor, whatever its number.
        table.open(5, Owner::Control);
        assert_eq!(table.slots.len(), 1);
        assert_eq!(table.get_mut(5).map(|s| s.owner), Some(Owner::Control));
    }

    #[test]
    fn a_number_watched_again_never_gets_an_old_seq() {
        let mut table = FdTable::default();
        let mut seen = std::collections::HashSet::new();
        for fd in 0..1000 {
            assert!(seen.insert(table.open(3, Owner::Client)));
            // Other numbers take the freed slots in between.
            table.open(100 + fd, Owner::Client);
            table.close(3);
            table.close(100 + fd);
        }
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

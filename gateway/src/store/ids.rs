//! Push ids that never repeat across restarts: handed out from blocks the
//! store reserved durably ([`StoreCore::reserve_ids`]), the next block
//! asked for while half of the current one is left, so the hand-out never
//! waits for a commit in steady state.

use super::error::AppendError;
use super::ops::Ticket;
use super::store_core::StoreCore;

/// An id source over durable reservations of one store.
#[derive(Debug)]
pub struct IdBlocks {
    block: u64,
    /// The ids usable now: `next..=last` (empty when `next > last`).
    next: u64,
    last: u64,
    /// A reservation not yet durable: its ids and ticket.
    reserving: Option<(u64, u64, Ticket)>,
    /// A durable reservation waiting for the current block to run out.
    ready: Option<(u64, u64)>,
}

impl IdBlocks {
    /// Blocks of `block` ids; none usable until the first is durable.
    pub fn new(block: u64) -> Self {
        Self {
            block: block.max(2),
            next: 1,
            last: 0,
            reserving: None,
            ready: None,
        }
    }

    /// The next id, or `None` while no durable reservation is left (the
    /// caller retries after the next commit).
    pub fn next_id(&mut self) -> Option<u64> {
        if self.next > self.last
            && let Some((first, last)) = self.ready.take()
        {
            (self.next, self.last) = (first, last);
        }
        if self.next > self.last {
            return None;
        }
        let id = self.next;
        self.next += 1;
        Some(id)
    }

    /// Ids usable now, without another reservation.
    pub fn available(&self) -> u64 {
        let current = (self.last + 1).saturating_sub(self.next);
        current + self.ready.map_or(0, |(f, l)| l + 1 - f)
    }

    /// Reserves the next block in `store` when half a block or less is
    /// left and no reservation is under way.
    pub fn refill(&mut self, store: &mut StoreCore) -> Result<(), AppendError> {
        if self.reserving.is_some() || self.ready.is_some() || self.available() > self.block / 2 {
            return Ok(());
        }
        self.reserving = Some(store.reserve_ids(self.block)?);
        Ok(())
    }

    /// The store committed up to `through`: a reservation it covers
    /// becomes usable.
    pub fn on_committed(&mut self, through: Ticket) {
        if let Some((first, last, ticket)) = self.reserving
            && ticket <= through
        {
            self.reserving = None;
            self.ready = Some((first, last));
        }
    }
}

//! The outbound QoS 1 window: which packet ids are in flight, for which
//! push, and the next id to try. Eight bytes at rest: the entries live on
//! the heap only while something is in flight and are freed when the last
//! is acknowledged, so an idle connection carries no window at all; the
//! ids then start again at 1 (an id is free for reuse once its PUBACK is
//! processed, §2.3.1).

/// One QoS 1 PUBLISH sent and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Its packet id.
    pub packet_id: u16,
    /// The push id the caller attached.
    pub push_id: u64,
}

/// The entries, boxed so an empty window is one null pointer.
#[derive(Debug, Default)]
struct Entries {
    list: Vec<InFlight>,
    /// The next packet id to try (0 stands for 1).
    next: u16,
}

/// The packet ids in flight. Lookups are linear: the window is bounded by
/// `max_in_flight` (32 by default).
#[derive(Debug, Default)]
pub(super) struct Window {
    entries: Option<Box<Entries>>,
}

impl Window {
    /// How many are in flight.
    pub(super) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.list.len())
    }

    /// The packet id `push_id` is in flight under, if it is.
    pub(super) fn id_of(&self, push_id: u64) -> Option<u16> {
        self.iter()
            .find(|e| e.push_id == push_id)
            .map(|e| e.packet_id)
    }

    /// Records a QoS 1 PUBLISH of `push_id` as in flight under the next
    /// free packet id, which it returns. Ids run 1..=65535 and wrap,
    /// skipping ids in flight; the caller keeps fewer than 65535 in flight.
    pub(super) fn open(&mut self, push_id: u64) -> u16 {
        let entries = self.entries.get_or_insert_with(Box::default);
        let packet_id = loop {
            let id = entries.next.max(1);
            entries.next = id.checked_add(1).unwrap_or(1);
            if !entries.list.iter().any(|e| e.packet_id == id) {
                break id;
            }
        };
        entries.list.push(InFlight { packet_id, push_id });
        packet_id
    }

    /// Takes `packet_id` out of the window: its push id, or `None` if it
    /// was not in flight. Frees the heap part when the window empties.
    pub(super) fn remove(&mut self, packet_id: u16) -> Option<u64> {
        let entries = self.entries.as_mut()?;
        let at = entries.list.iter().position(|e| e.packet_id == packet_id)?;
        // Order of the rest does not matter: ids are looked up, not scanned in order.
        let gone = entries.list.swap_remove(at);
        if entries.list.is_empty() {
            self.entries = None;
        }
        Some(gone.push_id)
    }

    /// Everything in flight, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.entries.iter().flat_map(|e| e.list.iter())
    }
}

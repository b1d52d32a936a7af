//! Rebuilding a store from its segment files' bytes, oldest first.
//!
//! The rules:
//! - a record cut short by the end of its file, or a bad record after which
//!   no valid record follows anywhere in the file (a torn or zero-filled
//!   tail of a write that never completed), is a **torn tail**: the
//!   segment is to be truncated at its offset, which is reported with the
//!   path ([`Verdict::Truncate`], [`TornTail`]);
//! - a bad record followed by a valid one is **corruption in the middle**:
//!   recovery stops with [`RecoveryError::Corrupt`] naming the path and
//!   offset; nothing is silently dropped;
//! - a record whose checksum holds but whose body does not parse, or a
//!   file that does not start with the segment header, is refused the same
//!   way.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::error::RecoveryError;
use super::inbox::{Entry, Inboxes};
use super::log::SegmentInfo;
use super::record::{Flaw, HEADER_LEN, Record, SEGMENT_MAGIC};
use super::settings::StoreSettings;
use super::store_core::StoreCore;

/// What to do with a segment file after [`Recovery::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte of it is a good record.
    Whole,
    /// Its tail is torn: truncate the file to `len` bytes.
    Truncate {
        /// The length to keep.
        len: u64,
    },
}

/// A torn tail found (and to be cut off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the torn record: the file's new length.
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Records applied.
    pub records: u64,
    /// Pushes pending after recovery.
    pub pushes: u64,
    /// Users with pending pushes.
    pub users: usize,
    /// Torn tails cut off.
    pub repaired: Vec<TornTail>,
    /// Every push id up to this may have been used before.
    pub id_floor: u64,
}

/// A store being rebuilt: [`Recovery::feed`] each segment in order, then
/// [`Recovery::finish`].
#[derive(Debug)]
pub struct Recovery {
    settings: StoreSettings,
    inboxes: Inboxes,
    segments: VecDeque<SegmentInfo>,
    floor: u64,
    report: RecoveryReport,
}

impl Recovery {
    /// Nothing read yet.
    pub fn new(settings: StoreSettings) -> Self {
        Self {
            settings,
            inboxes: Inboxes::default(),
            segments: VecDeque::new(),
            floor: 0,
            report: RecoveryReport::default(),
        }
    }

    /// Applies segment `seq` (from file `path`, named in errors) whose
    /// contents are `bytes`. Segments must come in increasing order.
    pub fn feed(&mut self, seq: u32, path: &Path, bytes: &[u8]) -> Result<Verdict, RecoveryError> {
        if let Some(prev) = self.segments.back().map(|s| s.seq)
            && seq <= prev
        {
            return Err(RecoveryError::OutOfOrder {
                path: path.to_path_buf(),
                seq,
                previous: prev,
            });
        }
        let corrupt = |offset: usize, why: String| RecoveryError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            why,
        };
        if u32::try_from(bytes.len()).is_err() {
            return Err(corrupt(0, "a segment is never larger than 4 GiB".into()));
        }
        self.report.segments += 1;
        let magic = SEGMENT_MAGIC.len();
        if bytes.len() < magic {
            if SEGMENT_MAGIC.starts_with(bytes) {
                // Created, header never written whole.
                return Ok(self.torn(seq, path, bytes, 0));
            }
            return Err(corrupt(0, "not a store segment (bad header)".into()));
        }
        if bytes[..magic] != SEGMENT_MAGIC {
            return Err(corrupt(0, "not a store segment (bad header)".into()));
        }
        self.segments.push_back(SegmentInfo::recovered(seq, 0));
        let mut at = magic;
        while at < bytes.len() {
            match Record::decode(&bytes[at..]) {
                Ok((record, len)) => {
                    self.apply(seq, at, len, &record);
                    self.report.records += 1;
                    at += len;
                }
                Err(flaw @ Flaw::Malformed(_)) => return Err(corrupt(at, flaw.to_string())),
                Err(flaw) => {
                    if let Some(next) = next_valid_record(&bytes[at + 1..]) {
                        return Err(corrupt(
                            at,
                            format!(
                                "{flaw}, and a valid record follows at offset {}",
                                at + 1 + next
                            ),
                        ));
                    }
                    return Ok(self.torn(seq, path, bytes, at));
                }
            }
        }
        if let Some(s) = self.segments.back_mut() {
            s.len = at as u64;
        }
        Ok(Verdict::Whole)
    }

    /// Records a torn tail of segment `seq` at `offset`.
    fn torn(&mut self, seq: u32, path: &Path, bytes: &[u8], offset: usize) -> Verdict {
        match self.segments.back_mut() {
            Some(s) if s.seq == seq => s.len = offset as u64,
            // A file whose header is torn holds nothing: keep it as an
            // empty segment only if it got its header.
            _ if offset >= SEGMENT_MAGIC.len() => {
                self.segments
                    .push_back(SegmentInfo::recovered(seq, offset as u64));
            }
            _ => {}
        }
        self.report.repaired.push(TornTail {
            path: path.to_path_buf(),
            offset: offset as u64,
            dropped: (bytes.len() - offset) as u64,
        });
        Verdict::Truncate { len: offset as u64 }
    }

    fn apply(&mut self, seq: u32, offset: usize, len: usize, record: &Record<'_>) {
        match *record {
            Record::Stored {
                id,
                expires_unix_ms,
                deliveries,
                user,
                ..
            } => {
                self.floor = self.floor.max(id);
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                let offset = u32::try_from(offset).unwrap_or(u32::MAX);
                // A second copy of a push is compaction's move: it wins,
                // keeping the higher delivery count.
                let moved = self.inboxes.remove(user, id);
                if let Some(old) = moved {
                    self.drop_live(old.segment, old.len);
                }
                let entry = Entry {
                    id,
                    // 0 is the expiry index's "none"; no record has it.
                    expires_unix_ms: expires_unix_ms.max(1),
                    segment: seq,
                    offset,
                    len,
                    deliveries: moved.map_or(deliveries, |m| m.deliveries.max(deliveries)),
                    flags: 0,
                };
                self.inboxes.insert(user, entry);
                if let Some(s) = self.segments.back_mut() {
                    s.live_pushes += 1;
                    s.live_bytes += u64::from(len);
                }
            }
            Record::Removed { id, user, .. }
            | Record::DeadLettered { id, user }
            | Record::Expired { id, user } => {
                if let Some(old) = self.inboxes.remove(user, id) {
                    self.drop_live(old.segment, old.len);
                }
            }
            Record::Delivered {
                id,
                deliveries,
                user,
            } => {
                if let Some(e) = self.inboxes.entry_mut(user, id) {
                    e.deliveries = e.deliveries.max(deliveries);
                }
            }
            Record::HighWater { mark } => self.floor = self.floor.max(mark),
        }
    }

    fn drop_live(&mut self, seq: u32, len: u32) {
        if let Ok(i) = self.segments.binary_search_by_key(&seq, |s| s.seq)
            && let Some(s) = self.segments.get_mut(i)
        {
            s.live_pushes = s.live_pushes.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(len));
        }
    }

    /// The rebuilt store (appending to a new segment after the last) and
    /// what was found. Pushes whose TTL passed while the gateway was down
    /// expire at the store's first tick.
    pub fn finish(mut self) -> (StoreCore, RecoveryReport) {
        self.report.pushes = self.inboxes.pushes();
        self.report.users = self.inboxes.users();
        self.report.id_floor = self.floor;
        let core = StoreCore::from_parts(self.settings, self.inboxes, self.segments, self.floor);
        (core, self.report)
    }
}

/// Offset in `bytes` of the first valid record, if any: is a bad record
/// followed by good ones (corruption) or by nothing (a torn tail)? Only
/// offsets with a known kind byte and a length that fits are checksummed,
/// so a long garbage tail costs little more than one pass.
fn next_valid_record(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| {
        let rest = &bytes[i..];
        let plausible = rest.get(..HEADER_LEN + 1).is_some_and(|h| {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            (1..=6).contains(&h[HEADER_LEN]) && len >= 1 && HEADER_LEN + len <= rest.len()
        });
        plausible && Record::decode(rest).is_ok()
    })
}

//! The append-only segmented log and its group commit, sans-IO.
//!
//! Appends are encoded into memory at once and get the [`Ticket`] of the
//! next commit. One commit is in flight at a time: when the executor is
//! idle, [`Log::start_commit`] turns everything appended since the last
//! one into `Create`/`SyncDir`/`Append`/`Sync` ops; once every op of it
//! completed, all its tickets are durable. Whatever is appended while a
//! commit is in flight waits for the next: under load, one `fdatasync`
//! covers many appends.

use std::collections::VecDeque;

use protocol::time::Millis;
use tuning::config::Durability;

use super::error::StoreFailure;
use super::ops::{OpDone, OpId, StoreOp, StoreOpKind, Ticket};
use super::record::{Record, SEGMENT_MAGIC};

/// One segment file as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its number (files are named by it).
    pub seq: u32,
    /// Bytes written or queued.
    pub len: u64,
    /// Pushes whose live record is in it.
    pub live_pushes: u32,
    /// Bytes of those records.
    pub live_bytes: u64,
    /// It may be deleted only once this ticket is durable (the next
    /// segment's header, the rewritten copies of its records).
    pub hold: Ticket,
}

impl SegmentInfo {
    /// A segment found on disk (recovery): nothing holds it.
    pub fn recovered(seq: u32, len: u64) -> Self {
        Self {
            seq,
            len,
            live_pushes: 0,
            live_bytes: 0,
            hold: Ticket(0),
        }
    }
}

/// Where a record was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Segment number.
    pub segment: u32,
    /// Offset in it.
    pub offset: u32,
    /// Record length.
    pub len: u32,
}

/// Bytes appended to one segment, not yet handed to the executor.
#[derive(Debug)]
struct Chunk {
    segment: u32,
    offset: u64,
    bytes: Vec<u8>,
}

/// The commit in flight.
#[derive(Debug)]
struct Commit {
    ticket: Ticket,
    first: OpId,
    /// What each op of the commit does (to name a failure), by id order.
    ops: Vec<(&'static str, u32)>,
    outstanding: usize,
    started: Millis,
}

/// What a completion meant to the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// Not an op of a commit (a read or a removal: the core's).
    NotMine,
    /// An op of the commit in flight; the commit goes on.
    Pending,
    /// The last op of the commit: every append up to `through` is durable.
    Committed {
        /// The commit's ticket.
        through: Ticket,
        /// How long the commit took.
        took_ms: u64,
    },
    /// An op of the commit failed: the log takes no more appends.
    Failed(StoreFailure),
}

/// The log: its segments, what waits to be written, the commit in flight.
#[derive(Debug)]
pub struct Log {
    durability: Durability,
    segment_bytes: u64,
    segments: VecDeque<SegmentInfo>,
    pending: Vec<Chunk>,
    creates: Vec<u32>,
    open: Ticket,
    committed: Ticket,
    in_flight: Option<Commit>,
    queue: Vec<StoreOp>,
    next_op: u64,
    floor: u64,
    failed: Option<StoreFailure>,
    /// Every byte up to (segment, offset) has been handed to the executor
    /// (so a read queued now comes after its write).
    submitted: (u32, u64),
}

impl Log {
    /// A log over `segments` (oldest first) whose ids are used up to
    /// `floor`; appends go to a new segment after the last.
    pub fn new(
        durability: Durability,
        segment_bytes: u32,
        segments: VecDeque<SegmentInfo>,
        floor: u64,
    ) -> Self {
        let submitted = segments.back().map_or((0, 0), |s| (s.seq, s.len));
        let mut log = Self {
            durability,
            segment_bytes: u64::from(segment_bytes.max(4096)),
            segments,
            pending: Vec::new(),
            creates: Vec::new(),
            open: Ticket(1),
            committed: Ticket(0),
            in_flight: None,
            queue: Vec::new(),
            next_op: 1,
            floor,
            failed: None,
            submitted,
        };
        log.roll();
        log
    }

    /// Starts the next segment: queued for creation, its header and a
    /// high-water record first (so deleting older segments never loses
    /// the id floor).
    fn roll(&mut self) {
        let seq = self.segments.back().map_or(1, |s| s.seq.saturating_add(1));
        if let Some(prev) = self.segments.back_mut() {
            // The predecessor may go only once this header is durable.
            prev.hold = prev.hold.max(self.open);
        }
        let mut bytes = SEGMENT_MAGIC.to_vec();
        Record::HighWater { mark: self.floor }.encode(&mut bytes);
        let len = bytes.len() as u64;
        self.creates.push(seq);
        self.pending.push(Chunk {
            segment: seq,
            offset: 0,
            bytes,
        });
        self.segments.push_back(SegmentInfo {
            seq,
            len,
            live_pushes: 0,
            live_bytes: 0,
            hold: Ticket(0),
        });
    }

    /// Appends `record`; its location and the ticket that says when it is
    /// durable.
    pub fn append(&mut self, record: &Record<'_>) -> Result<(Location, Ticket), StoreFailure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let size = record.encoded_len() as u64;
        let header =
            SEGMENT_MAGIC.len() as u64 + Record::HighWater { mark: 0 }.encoded_len() as u64;
        if self
            .segments
            .back()
            .is_some_and(|s| s.len > header && s.len + size > self.segment_bytes)
        {
            self.roll();
        }
        match record {
            Record::Stored { id, .. } => self.floor = self.floor.max(*id),
            Record::HighWater { mark } => self.floor = self.floor.max(*mark),
            _ => {}
        }
        let Some(active) = self.segments.back_mut() else {
            return Err(self.fail("append", 0, "no active segment".into()));
        };
        let location = Location {
            segment: active.seq,
            offset: u32::try_from(active.len).unwrap_or(u32::MAX),
            len: u32::try_from(size).unwrap_or(u32::MAX),
        };
        let offset = active.len;
        active.len += size;
        match self.pending.last_mut() {
            Some(c) if c.segment == location.segment => record.encode(&mut c.bytes),
            _ => {
                let mut bytes = Vec::with_capacity(size as usize);
                record.encode(&mut bytes);
                self.pending.push(Chunk {
                    segment: location.segment,
                    offset,
                    bytes,
                });
            }
        }
        Ok((location, self.open))
    }

    /// Turns what was appended into one commit's ops, unless a commit is
    /// in flight or nothing waits.
    pub fn start_commit(&mut self, now: Millis) {
        if self.in_flight.is_some() || self.failed.is_some() || self.pending.is_empty() {
            return;
        }
        let fsync = self.durability == Durability::Fsync;
        let first = OpId(self.next_op);
        let mut ops = Vec::new();
        let creates = std::mem::take(&mut self.creates);
        for &segment in &creates {
            self.push_op(StoreOpKind::Create { segment });
            ops.push(("create", segment));
        }
        if fsync && !creates.is_empty() {
            self.push_op(StoreOpKind::SyncDir);
            ops.push(("directory sync", 0));
        }
        let mut synced: Vec<u32> = Vec::new();
        for chunk in std::mem::take(&mut self.pending) {
            if !synced.contains(&chunk.segment) {
                synced.push(chunk.segment);
            }
            ops.push(("append", chunk.segment));
            self.push_op(StoreOpKind::Append {
                segment: chunk.segment,
                offset: chunk.offset,
                bytes: chunk.bytes,
            });
        }
        if fsync {
            for segment in synced {
                self.push_op(StoreOpKind::Sync { segment });
                ops.push(("fdatasync", segment));
            }
        }
        if let Some(active) = self.segments.back() {
            self.submitted = (active.seq, active.len);
        }
        self.in_flight = Some(Commit {
            ticket: self.open,
            first,
            outstanding: ops.len(),
            ops,
            started: now,
        });
        self.open = Ticket(self.open.0 + 1);
    }

    /// Whether the bytes of segment `seq` up to `end` were handed to the
    /// executor (a read of them queued now is performed after the write).
    pub fn submitted(&self, seq: u32, end: u64) -> bool {
        (seq, end) <= self.submitted
    }

    /// Queues an op outside any commit (a read, a removal); its id.
    pub fn push_op(&mut self, kind: StoreOpKind) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.queue.push(StoreOp { id, kind });
        id
    }

    /// Moves the queued ops to `into`, in order.
    pub fn take_ops(&mut self, into: &mut Vec<StoreOp>) {
        into.append(&mut self.queue);
    }

    /// An op completed.
    pub fn on_done(&mut self, now: Millis, id: OpId, done: &OpDone) -> Completion {
        let Some(c) = &mut self.in_flight else {
            return Completion::NotMine;
        };
        let Some(&(op, segment)) =
            id.0.checked_sub(c.first.0)
                .and_then(|i| c.ops.get(usize::try_from(i).ok()?))
        else {
            return Completion::NotMine;
        };
        if let OpDone::Failed(e) = done {
            let why = e.to_string();
            self.in_flight = None;
            return Completion::Failed(self.fail(op, segment, why));
        }
        c.outstanding = c.outstanding.saturating_sub(1);
        if c.outstanding > 0 {
            return Completion::Pending;
        }
        let (through, took_ms) = (c.ticket, now.since(c.started));
        self.in_flight = None;
        self.committed = through;
        Completion::Committed { through, took_ms }
    }

    fn fail(&mut self, op: &'static str, segment: u32, why: String) -> StoreFailure {
        let f = StoreFailure { op, segment, why };
        self.failed = Some(f.clone());
        f
    }

    /// Why the log stopped, if it did.
    pub fn failure(&self) -> Option<&StoreFailure> {
        self.failed.as_ref()
    }

    /// Whether anything is appended and not yet durable.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || !self.pending.is_empty()
    }

    /// Every id up to this may have been used.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &VecDeque<SegmentInfo> {
        &self.segments
    }

    /// Segment `seq`.
    pub fn segment_mut(&mut self, seq: u32) -> Option<&mut SegmentInfo> {
        let i = self.segments.binary_search_by_key(&seq, |s| s.seq).ok()?;
        self.segments.get_mut(i)
    }

    /// Counts a record of `len` bytes in segment `seq` as live.
    pub fn add_live(&mut self, seq: u32, len: u32) {
        if let Some(s) = self.segment_mut(seq) {
            s.live_pushes += 1;
            s.live_bytes += u64::from(len);
        }
    }

    /// Counts a record of `len` bytes in segment `seq` as dead.
    pub fn drop_live(&mut self, seq: u32, len: u32) {
        if let Some(s) = self.segment_mut(seq) {
            s.live_pushes = s.live_pushes.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(len));
        }
    }

    /// Holds segment `seq` until `ticket` is durable.
    pub fn hold(&mut self, seq: u32, ticket: Ticket) {
        if let Some(s) = self.segment_mut(seq) {
            s.hold = s.hold.max(ticket);
        }
    }

    /// Removes the oldest segment if nothing in it is needed: no live
    /// push, not the active one, and whatever holds it is durable. Only
    /// the oldest goes, so a removal record never outlives its push's
    /// `Stored` record on disk.
    pub fn remove_dead_front(&mut self) -> Option<u32> {
        let front = self.segments.front()?;
        let deletable =
            self.segments.len() > 1 && front.live_pushes == 0 && front.hold <= self.committed;
        if !deletable {
            return None;
        }
        let seq = front.seq;
        self.segments.pop_front();
        self.push_op(StoreOpKind::Remove { segment: seq });
        Some(seq)
    }

    /// Bytes of every segment.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
}

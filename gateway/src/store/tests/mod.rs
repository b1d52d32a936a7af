//! Tests of the store core with simulated time and an in-memory disk that
//! knows what a power cut keeps: the rig plays the executor.

mod core_tests;
mod recovery_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use protocol::time::Millis;

use super::{
    Appended, NewPush, OpDone, Recovery, RecoveryReport, StoreCore, StoreEvent, StoreOp,
    StoreOpKind, StoreSettings, Verdict,
};
use crate::time::Time;

/// Wall clock at monotonic 0.
pub const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;

/// The time `ms` after the start.
pub fn at(ms: u64) -> Time {
    Time {
        now: Millis(ms),
        unix_ms: EPOCH_UNIX_MS + ms,
    }
}

/// Files in memory: what the OS holds, and what an `fsync` made survive a
/// power cut.
#[derive(Debug, Default, Clone)]
pub struct MemDisk {
    pub files: BTreeMap<u32, Vec<u8>>,
    pub synced: BTreeMap<u32, Vec<u8>>,
    synced_names: BTreeSet<u32>,
    /// The next op of this kind fails (once).
    pub fail: Option<&'static str>,
}

impl MemDisk {
    pub fn perform(&mut self, op: &StoreOp) -> OpDone {
        let name = match op.kind {
            StoreOpKind::Create { .. } => "create",
            StoreOpKind::SyncDir => "syncdir",
            StoreOpKind::Append { .. } => "append",
            StoreOpKind::Sync { .. } => "sync",
            StoreOpKind::Read { .. } => "read",
            StoreOpKind::Remove { .. } => "remove",
        };
        if self.fail == Some(name) {
            self.fail = None;
            return OpDone::Failed(std::io::Error::other("injected failure"));
        }
        match &op.kind {
            StoreOpKind::Create { segment } => {
                assert!(
                    self.files.insert(*segment, Vec::new()).is_none(),
                    "segment {segment} created twice"
                );
            }
            StoreOpKind::SyncDir => {
                self.synced_names = self.files.keys().copied().collect();
                self.synced.retain(|k, _| self.files.contains_key(k));
            }
            StoreOpKind::Append {
                segment,
                offset,
                bytes,
            } => {
                let file = self
                    .files
                    .get_mut(segment)
                    .expect("append to a missing file");
                assert_eq!(file.len() as u64, *offset, "appends are at the end");
                file.extend_from_slice(bytes);
            }
            StoreOpKind::Sync { segment } => {
                let file = self.files[segment].clone();
                self.synced.insert(*segment, file);
            }
            StoreOpKind::Read {
                segment,
                offset,
                len,
            } => {
                let Some(file) = self.files.get(segment) else {
                    return OpDone::Failed(std::io::Error::other("no such segment"));
                };
                let (a, b) = (*offset as usize, *offset as usize + *len as usize);
                return match file.get(a..b) {
                    Some(bytes) => OpDone::Read(bytes.to_vec()),
                    None => OpDone::Failed(std::io::Error::other("short read")),
                };
            }
            StoreOpKind::Remove { segment } => {
                self.files.remove(segment);
            }
        }
        OpDone::Done
    }

    /// What a restart finds: after a power cut only what was synced (and
    /// named by a directory sync); after a SIGKILL what the OS holds.
    pub fn image(&self, power_cut: bool) -> BTreeMap<u32, Vec<u8>> {
        if !power_cut {
            return self.files.clone();
        }
        self.synced_names
            .iter()
            .filter(|s| self.files.contains_key(s))
            .map(|s| (*s, self.synced.get(s).cloned().unwrap_or_default()))
            .collect()
    }
}

/// A store core, its disk, its clock and what it said.
pub struct Rig {
    pub core: StoreCore,
    pub disk: MemDisk,
    pub now: Time,
    pub events: Vec<StoreEvent>,
}

impl Rig {
    pub fn new(settings: StoreSettings) -> Self {
        Self {
            core: StoreCore::new(settings),
            disk: MemDisk::default(),
            now: at(0),
            events: Vec::new(),
        }
    }

    /// Appends a push of `payload` for `user`.
    pub fn push(&mut self, user: &str, id: u64, payload: &[u8]) -> Appended {
        self.try_push(user, id, payload, None).expect("append")
    }

    pub fn try_push(
        &mut self,
        user: &str,
        id: u64,
        payload: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<Appended, super::AppendError> {
        self.core.append(
            self.now,
            NewPush {
                id,
                user,
                ttl_ms,
                payload,
            },
        )
    }

    /// The ops the core wants performed now.
    pub fn take_ops(&mut self) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        self.core.take_ops(self.now, &mut ops);
        ops
    }

    /// Performs `ops` on the disk and reports each back.
    pub fn complete(&mut self, ops: Vec<StoreOp>) {
        for op in ops {
            let done = self.disk.perform(&op);
            self.core.on_op_done(self.now, op.id, done);
        }
        self.collect();
    }

    /// Performs everything until the core is quiet.
    pub fn settle(&mut self) {
        loop {
            let ops = self.take_ops();
            if ops.is_empty() {
                break;
            }
            self.complete(ops);
        }
        self.collect();
    }

    /// Moves the clocks on by `ms` and ticks.
    pub fn advance(&mut self, ms: u64) {
        self.now = Time {
            now: self.now.now.saturating_add(ms),
            unix_ms: self.now.unix_ms + ms,
        };
        self.core.on_tick(self.now);
        self.collect();
    }

    fn collect(&mut self) {
        self.core.take_events(&mut self.events);
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<StoreEvent> {
        self.collect();
        std::mem::take(&mut self.events)
    }

    /// The ids of `user`'s pending pushes.
    pub fn pending_ids(&self, user: &str) -> Vec<u64> {
        self.core.pending(user).map(|p| p.id).collect()
    }

    /// A gateway started again on this disk (after a power cut or a
    /// SIGKILL), with the torn tails truncated the way the loader does.
    pub fn restart(&self, power_cut: bool) -> (Rig, RecoveryReport) {
        let mut image = self.disk.image(power_cut);
        let (core, report) = recover(self.core.settings().clone(), &mut image).expect("recovery");
        let disk = MemDisk {
            files: image.clone(),
            synced: image.clone(),
            synced_names: image.keys().copied().collect(),
            fail: None,
        };
        let rig = Rig {
            core,
            disk,
            now: self.now,
            events: Vec::new(),
        };
        (rig, report)
    }
}

/// The path recovery names segment `seq` by in these tests.
pub fn mem_path(seq: u32) -> PathBuf {
    PathBuf::from(format!("mem/{seq:010}.seg"))
}

/// Recovers from `image`, repairing it as the loader repairs files.
pub fn recover(
    settings: StoreSettings,
    image: &mut BTreeMap<u32, Vec<u8>>,
) -> Result<(StoreCore, RecoveryReport), super::RecoveryError> {
    let mut recovery = Recovery::new(settings);
    let seqs: Vec<u32> = image.keys().copied().collect();
    for seq in seqs {
        let bytes = image[&seq].clone();
        match recovery.feed(seq, &mem_path(seq), &bytes)? {
            Verdict::Whole => {}
            Verdict::Truncate { len: 0 } => {
                image.remove(&seq);
            }
            Verdict::Truncate { len } => {
                if let Some(f) = image.get_mut(&seq) {
                    f.truncate(len as usize);
                }
            }
        }
    }
    Ok(recovery.finish())
}

/// Settings for the tests: short timeouts, small segments.
pub fn settings() -> StoreSettings {
    StoreSettings {
        ack_timeout_ms: 100,
        ack_timeout_max_ms: 400,
        max_deliveries: 3,
        ttl_ms: 60_000,
        segment_bytes: 4096,
        ..StoreSettings::default()
    }
}

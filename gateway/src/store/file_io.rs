//! The store on real files: a blocking executor of the core's ops, meant
//! to run on a writer thread of its own so a shard never waits for a disk,
//! and the loader that recovers a store directory at start-up.
//!
//! Layout: one directory per shard store (`settings::shard_dir`), holding
//! segment files `0000000001.seg`, `0000000002.seg`, … (see `record.rs`
//! for what is in them). Other files in the directory are left alone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::RecoveryError;
use super::ops::{OpDone, OpId, StoreOp, StoreOpKind};
use super::recovery::{Recovery, RecoveryReport, Verdict};
use super::settings::StoreSettings;
use super::store_core::StoreCore;

/// The file of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}.seg"))
}

/// The segment number a file name stands for, if it is a segment's.
fn segment_seq(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Performs the core's ops on the files of one store directory, in the
/// order given, blocking. Segment files stay open for appends and reads.
#[derive(Debug)]
pub struct FileExecutor {
    dir: PathBuf,
    files: HashMap<u32, File>,
}

impl FileExecutor {
    /// An executor for the store in `dir` (which [`load_dir`] made).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: HashMap::new(),
        }
    }

    /// Performs `op`; what to hand to [`StoreCore::on_op_done`].
    pub fn perform(&mut self, op: StoreOp) -> (OpId, OpDone) {
        let done = match self.run(op.kind) {
            Ok(Some(bytes)) => OpDone::Read(bytes),
            Ok(None) => OpDone::Done,
            Err(e) => OpDone::Failed(e),
        };
        (op.id, done)
    }

    fn run(&mut self, kind: StoreOpKind) -> io::Result<Option<Vec<u8>>> {
        match kind {
            StoreOpKind::Create { segment } => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(segment_path(&self.dir, segment))?;
                self.files.insert(segment, file);
            }
            StoreOpKind::SyncDir => File::open(&self.dir)?.sync_all()?,
            StoreOpKind::Append {
                segment,
                offset,
                bytes,
            } => self.file(segment)?.write_all_at(&bytes, offset)?,
            StoreOpKind::Sync { segment } => self.file(segment)?.sync_data()?,
            StoreOpKind::Read {
                segment,
                offset,
                len,
            } => {
                let mut buf = vec![0; len as usize];
                self.file(segment)?.read_exact_at(&mut buf, offset)?;
                return Ok(Some(buf));
            }
            StoreOpKind::Remove { segment } => {
                self.files.remove(&segment);
                std::fs::remove_file(segment_path(&self.dir, segment))?;
            }
        }
        Ok(None)
    }

    fn file(&mut self, segment: u32) -> io::Result<&File> {
        if !self.files.contains_key(&segment) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment_path(&self.dir, segment))?;
            self.files.insert(segment, file);
        }
        self.files
            .get(&segment)
            .ok_or_else(|| io::Error::other("segment file not open"))
    }
}

/// Recovers the store in `dir` (created if missing): every segment read
/// in order and fed to [`Recovery`]; a torn tail is cut off the file (an
/// empty remainder is deleted) and listed in the report; corruption in the
/// middle of a file is refused with its path and offset.
pub fn load_dir(
    dir: &Path,
    settings: StoreSettings,
) -> Result<(StoreCore, RecoveryReport), RecoveryError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoveryError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let item = item.map_err(io_err(dir))?;
        if let Some(seq) = item.file_name().to_str().and_then(segment_seq) {
            found.push((seq, item.path()));
        }
    }
    found.sort();
    let mut recovery = Recovery::new(settings);
    for (seq, path) in found {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        match recovery.feed(seq, &path, &bytes)? {
            Verdict::Whole => {}
            Verdict::Truncate { len: 0 } => {
                tracing::warn!(path = %path.display(), "store: segment without a whole header, removed");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
            Verdict::Truncate { len } => {
                tracing::warn!(path = %path.display(), offset = len, dropped = bytes.len() as u64 - len, "store: torn tail cut off");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(len).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
        }
    }
    Ok(recovery.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewPush, StoreEvent};
    use crate::time::Time;
    use protocol::time::Millis;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "gateway-store-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn at(ms: u64) -> Time {
        Time {
            now: Millis(ms),
            unix_ms: 1_700_000_000_000 + ms,
        }
    }

    /// Performs everything the core asks until it is quiet.
    fn settle(core: &mut StoreCore, exec: &mut FileExecutor, now: Time) -> Vec<StoreEvent> {
        let mut ops = Vec::new();
        loop {
            core.take_ops(now, &mut ops);
            if ops.is_empty() {
                break;
            }
            for op in ops.drain(..) {
                let (id, done) = exec.perform(op);
                core.on_op_done(now, id, done);
            }
        }
        let mut events = Vec::new();
        core.take_events(&mut events);
        events
    }

    fn store_some(dir: &Path, users: &[&str]) {
        let (mut core, _) = load_dir(dir, StoreSettings::default()).unwrap();
        let mut exec = FileExecutor::new(dir);
        for (i, user) in users.iter().enumerate() {
            core.append(
                at(0),
                NewPush {
                    id: 10 + i as u64,
                    user,
                    ttl_ms: None,
                    payload: format!("payload {i}").as_bytes(),
                },
            )
            .unwrap();
        }
        let events = settle(&mut core, &mut exec, at(1));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, StoreEvent::Committed { .. }))
        );
    }

    #[test]
    fn real_files_round_trip_and_read_back() {
        let tmp = TempDir::new("round-trip");
        store_some(&tmp.0, &["alice", "bob", "alice"]);
        let (mut core, report) = load_dir(&tmp.0, StoreSettings::default()).unwrap();
        assert_eq!((report.pushes, report.users), (3, 2));
        assert!(report.repaired.is_empty());
        assert!(report.id_floor >= 12);
        let ids: Vec<u64> = core.pending("alice").map(|p| p.id).collect();
        assert_eq!(ids, [10, 12]);
        let mut exec = FileExecutor::new(&tmp.0);
        assert!(core.load("alice", 12));
        let events = settle(&mut core, &mut exec, at(5));
        let payload = events.iter().find_map(|e| match e {
            StoreEvent::Loaded {
                id: 12, payload, ..
            } => Some(payload.clone()),
            _ => None,
        });
        assert_eq!(payload.as_deref(), Some(&b"payload 2"[..]));
    }

    #[test]
    fn a_truncated_file_is_cut_back_to_its_last_whole_record() {
        let tmp = TempDir::new("torn");
        store_some(&tmp.0, &["alice", "bob"]);
        let path = segment_path(&tmp.0, 1);
        let full = std::fs::metadata(&path).unwrap().len();
        // Cut the last record (bob's) in half.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 5).unwrap();
        drop(file);
        let (core, report) = load_dir(&tmp.0, StoreSettings::default()).unwrap();
        assert_eq!(report.repaired.len(), 1, "{report:?}");
        let torn = &report.repaired[0];
        assert_eq!(torn.path, path);
        assert!(torn.offset < full - 5);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), torn.offset);
        assert_eq!(core.pending_count("alice"), 1);
        assert_eq!(core.pending_count("bob"), 0);
        // Once repaired, the next start finds nothing to repair.
        let (_, again) = load_dir(&tmp.0, StoreSettings::default()).unwrap();
        assert!(again.repaired.is_empty(), "{again:?}");
        assert_eq!(again.pushes, 1);
    }

    #[test]
    fn corruption_in_the_middle_is_refused_with_path_and_offset() {
        let tmp = TempDir::new("corrupt");
        store_some(&tmp.0, &["alice", "bob", "carol"]);
        let path = segment_path(&tmp.0, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside the first push record (after the header and high-water).
        let offset = 8 + 17 + 12;
        bytes[offset] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = load_dir(&tmp.0, StoreSettings::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("offset 25"), "{msg}");
        assert!(
            matches!(err, RecoveryError::Corrupt { offset: 25, .. }),
            "{err:?}"
        );
        // Nothing was changed on disk.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn compaction_deletes_dead_segment_files() {
        let tmp = TempDir::new("compaction");
        let settings = StoreSettings {
            segment_bytes: 4096,
            ..StoreSettings::default()
        };
        let (mut core, _) = load_dir(&tmp.0, settings.clone()).unwrap();
        let mut exec = FileExecutor::new(&tmp.0);
        let payload = [3u8; 700];
        for id in 1..=30 {
            let push = NewPush {
                id,
                user: "alice",
                ttl_ms: None,
                payload: &payload,
            };
            core.append(at(0), push).unwrap();
        }
        settle(&mut core, &mut exec, at(1));
        let segments = || std::fs::read_dir(&tmp.0).unwrap().count();
        let before = segments();
        assert!(before >= 5, "{before} segment files");
        for id in 1..=30 {
            assert!(core.ack("alice", id));
        }
        settle(&mut core, &mut exec, at(2));
        assert_eq!(segments(), 1, "only the active segment is left");
        let (core, report) = load_dir(&tmp.0, settings).unwrap();
        assert_eq!((report.pushes, core.stats().pushes), (0, 0));
        assert!(report.id_floor >= 30);
    }

    #[test]
    fn names_that_are_not_segments_are_ignored() {
        assert_eq!(segment_seq("0000000042.seg"), Some(42));
        assert_eq!(segment_seq("42.seg"), None);
        assert_eq!(segment_seq("0000000042.seg.tmp"), None);
        assert_eq!(segment_seq("00000000x2.seg"), None);
    }
}

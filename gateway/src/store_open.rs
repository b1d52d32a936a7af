//! Opening the durable store at start-up, before any shard runs: the
//! directory locked against a second gateway, its layout checked against
//! the shard count, each shard's store recovered, and a block of push ids
//! reserved durably so that ids never repeat across restarts. This is the
//! only place the store's files are touched outside the writer threads,
//! and it may block: nothing is served yet.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tuning::config::StoreConfig;

use crate::clock::Clock;
use crate::store::{
    FileExecutor, RecoveryError, StoreCore, StoreEvent, StoreSettings, load_dir, shard_dir,
};

/// Push ids reserved per start: every id a run hands out is below the
/// next start's first id. 2^40 ids is 250 days at 50,000 pushes/s, and
/// 8,192 restarts stay below 2^53 (ids are exact in JavaScript numbers).
pub const ID_BLOCK: u64 = 1 << 40;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file or directory of the store could not be used.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// Which.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another gateway holds the directory.
    #[error("{path} is in use by another gateway (its lock is held); give each gateway its own [store] dir or --data-dir", path = path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The store was written with another shard count: users would be on
    /// the wrong shards.
    #[error("{path} holds the inboxes of a gateway with {was} shards, this one has {now}; start with --shards {was}, or move the directory away to start empty", path = path.display())]
    Layout {
        /// The directory.
        path: PathBuf,
        /// Shards it was written with.
        was: usize,
        /// Shards now.
        now: usize,
    },
    /// A shard's store could not be recovered.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The id reservation could not be made durable.
    #[error("cannot reserve push ids in {path}: {why}", path = path.display())]
    Reserve {
        /// The shard store's directory.
        path: PathBuf,
        /// What failed.
        why: String,
    },
}

/// The stores of every shard, opened.
#[derive(Debug)]
pub struct OpenStores {
    /// One per shard, in shard order.
    pub stores: Vec<StoreCore>,
    /// Their directories.
    pub dirs: Vec<PathBuf>,
    /// The first push id of this run (above every id reserved before).
    pub first_id: u64,
    /// The directory's lock, held while the gateway runs.
    pub lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating if missing) the store of `shards` shards under
/// `cfg.dir`.
pub fn open_stores(cfg: &StoreConfig, shards: usize) -> Result<OpenStores, OpenError> {
    let dir = cfg.dir.as_path();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock = lock_dir(dir)?;
    check_layout(dir, shards)?;
    let mut stores = Vec::with_capacity(shards);
    let mut dirs = Vec::with_capacity(shards);
    let mut floor = 0;
    for i in 0..shards {
        let path = shard_dir(dir, i);
        let (store, report) = load_dir(&path, StoreSettings::for_shard(cfg, shards))?;
        for torn in &report.repaired {
            tracing::warn!(
                shard = i,
                path = %torn.path.display(),
                offset = torn.offset,
                dropped_bytes = torn.dropped,
                "store file had a torn tail (an append cut short by a crash): cut at the last whole record"
            );
        }
        if report.pushes > 0 || !report.repaired.is_empty() {
            tracing::info!(
                shard = i,
                pushes = report.pushes,
                users = report.users,
                segments = report.segments,
                repaired = report.repaired.len(),
                path = %path.display(),
                "store recovered"
            );
        }
        floor = floor.max(report.id_floor);
        stores.push(store);
        dirs.push(path);
    }
    let first_id = match (stores.first_mut(), dirs.first()) {
        (Some(store), Some(path)) => reserve(store, path, floor)?,
        _ => floor + 1,
    };
    Ok(OpenStores {
        stores,
        dirs,
        first_id,
        lock,
    })
}

/// Takes the directory's lock (`LOCK`, an advisory `flock`).
fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on a descriptor we own; the result is checked.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(OpenError::Locked {
                path: dir.to_path_buf(),
            });
        }
        return Err(OpenError::Io { path, source: e });
    }
    Ok(file)
}

/// Checks (or, on a new directory, writes) `LAYOUT`: the shard count the
/// inboxes were kept for (a user's inbox lives on its owner shard).
fn check_layout(dir: &Path, shards: usize) -> Result<(), OpenError> {
    let path = dir.join("LAYOUT");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let was = text
                .trim()
                .strip_prefix("shards=")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| OpenError::Io {
                    path: path.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, "expected shards=N"),
                })?;
            if was != shards {
                return Err(OpenError::Layout {
                    path: dir.to_path_buf(),
                    was,
                    now: shards,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let tmp = dir.join("LAYOUT.tmp");
            std::fs::write(&tmp, format!("shards={shards}\n")).map_err(io_err(&tmp))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(io_err(dir))
        }
        Err(e) => Err(OpenError::Io { path, source: e }),
    }
}

/// Reserves [`ID_BLOCK`] ids above `floor` (the highest id any shard's
/// store has seen or reserved) in `store`, durably, before anything is
/// served; the first of them.
fn reserve(store: &mut StoreCore, path: &Path, floor: u64) -> Result<u64, OpenError> {
    let failed = |why: String| OpenError::Reserve {
        path: path.to_path_buf(),
        why,
    };
    let count = floor
        .saturating_sub(store.id_floor())
        .saturating_add(ID_BLOCK);
    let (_, _, ticket) = store
        .reserve_ids(count)
        .map_err(|e| failed(e.to_string()))?;
    let t = Clock::start().time();
    let mut exec = FileExecutor::new(path);
    let mut ops = Vec::new();
    let mut events = Vec::new();
    // Each round's completions may queue more (a commit, a new segment).
    for _ in 0..8 {
        store.take_ops(t, &mut ops);
        if ops.is_empty() {
            break;
        }
        for op in ops.drain(..) {
            let (id, done) = exec.perform(op);
            store.on_op_done(t, id, done);
        }
        store.take_events(&mut events);
        for e in events.drain(..) {
            match e {
                StoreEvent::Committed { through } if through >= ticket => {
                    return Ok(floor.saturating_add(1));
                }
                StoreEvent::Failed(f) => return Err(failed(f.to_string())),
                _ => {}
            }
        }
    }
    Err(failed("the reservation was not committed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gateway-store-open-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn ids_of_a_restart_start_above_the_last_reservation() {
        let dir = temp("ids");
        let cfg = StoreConfig {
            dir: dir.clone(),
            ..StoreConfig::default()
        };
        let first = open_stores(&cfg, 2).unwrap();
        assert_eq!(first.first_id, 1);
        drop(first);
        let second = open_stores(&cfg, 2).unwrap();
        assert!(second.first_id > ID_BLOCK, "{}", second.first_id);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_gateway_and_another_shard_count_are_refused() {
        let dir = temp("refusals");
        let cfg = StoreConfig {
            dir: dir.clone(),
            ..StoreConfig::default()
        };
        let held = open_stores(&cfg, 2).unwrap();
        let again = open_stores(&cfg, 2).unwrap_err();
        assert!(matches!(again, OpenError::Locked { .. }), "{again}");
        drop(held);
        let other = open_stores(&cfg, 3).unwrap_err();
        assert!(
            matches!(other, OpenError::Layout { was: 2, now: 3, .. }),
            "{other}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

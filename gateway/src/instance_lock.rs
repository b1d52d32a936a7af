//! One gateway per address: an exclusive `flock` on a lock file per listen
//! address, taken before the listener joins a SO_REUSEPORT group.
//!
//! SO_REUSEPORT lets every socket of the same user bind the same address,
//! so a second gateway process would silently join the first one's group
//! and take half its connections. The lock file
//! (`$XDG_RUNTIME_DIR/gateway-<ip>-<port>.lock`, else under `/tmp`) holds
//! the pid of the gateway that owns the address; the kernel drops the lock
//! when that process exits, however it exits, so a stale file never blocks.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an address could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another live process holds the address's lock.
    #[error(
        "another gateway{} already serves {addr} (lock file {}); stop it or choose another address",
        pid.map_or(String::new(), |p| format!(" (pid {p})")),
        path.display()
    )]
    Held {
        /// The address.
        addr: SocketAddr,
        /// The other process, when its lock file says.
        pid: Option<u32>,
        /// The lock file.
        path: PathBuf,
    },
}

enum Attempt {
    Locked(InstanceLock),
    Unusable,
    Stale,
}

/// An address this process owns for as long as the value lives; dropping
/// it removes the lock file (still locked, so nobody can take the name
/// in between) and releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    addr: SocketAddr,
    path: PathBuf,
    _file: File,
}

/// The directory lock files go to: `$XDG_RUNTIME_DIR` when it names a
/// directory, else `/tmp`.
pub fn lock_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The lock file of `addr` under `dir` (`gateway-127.0.0.1-7100.lock`; the
/// colons of an IPv6 address become `_`).
pub fn lock_path(dir: &Path, addr: SocketAddr) -> PathBuf {
    let ip = addr.ip().to_string().replace(':', "_");
    dir.join(format!("gateway-{ip}-{}.lock", addr.port()))
}

impl InstanceLock {
    /// Locks `addr` (a bound address: not port 0) in [`lock_dir`].
    ///
    /// `Ok(None)` when no lock file can be opened there (an unwritable
    /// directory, a file of another user): the gateway then runs without
    /// the guard, as before, and says so in the log.
    pub fn acquire(addr: SocketAddr) -> Result<Option<Self>, LockError> {
        Self::acquire_in(&lock_dir(), addr)
    }

    /// [`InstanceLock::acquire`] with the lock file under `dir`.
    pub fn acquire_in(dir: &Path, addr: SocketAddr) -> Result<Option<Self>, LockError> {
        let path = lock_path(dir, addr);
        // A holder removes its file on exit: a lock taken on a file that
        // was unlinked (or replaced) meanwhile guards nothing, so retry.
        for _ in 0..8 {
            match Self::try_once(&path, addr)? {
                Attempt::Locked(lock) => return Ok(Some(lock)),
                Attempt::Unusable => return Ok(None),
                Attempt::Stale => continue,
            }
        }
        tracing::warn!(%addr, path = %path.display(), "the instance lock file keeps changing, running without it");
        Ok(None)
    }

    fn try_once(path: &Path, addr: SocketAddr) -> Result<Attempt, LockError> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            // Someone else's file: flock needs no write access.
            .or_else(|_| File::open(&path));
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%addr, path = %path.display(), "cannot open the instance lock file, running without it: {e}");
                return Ok(Attempt::Unusable);
            }
        };
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    addr,
                    pid: text.trim().parse().ok(),
                    path,
                });
            }
            tracing::warn!(%addr, path = %path.display(), "cannot lock the instance lock file, running without it: {err}");
            return Ok(Attempt::Unusable);
        }
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            return Ok(Attempt::Stale);
        }
        // Ours now: say who we are (best effort; a read-only file stays as is).
        let pid = std::process::id();
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{pid}"));
        Ok(Attempt::Locked(Self {
            addr,
            path,
            _file: file,
        }))
    }

    /// The locked address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("gw-lock-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn a_second_lock_on_the_same_address_names_the_first() {
        let dir = temp_dir("twice");
        let addr: SocketAddr = "127.0.0.1:7100".parse().unwrap();
        let first = InstanceLock::acquire_in(&dir, addr).unwrap().unwrap();
        assert_eq!(first.addr(), addr);
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks are per open file description: a second open in the
        // same process conflicts just like another process would.
        let err = InstanceLock::acquire_in(&dir, addr).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:7100"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // Another address is free; the first is free again once dropped.
        let other: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        assert!(InstanceLock::acquire_in(&dir, other).unwrap().is_some());
        let path = first.path().to_path_buf();
        drop(first);
        assert!(!path.exists(), "the lock file is removed on drop");
        assert!(InstanceLock::acquire_in(&dir, addr).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ipv6_paths_have_no_colons() {
        let p = lock_path(Path::new("/run"), "[::1]:7100".parse().unwrap());
        assert_eq!(p, Path::new("/run/gateway-__1-7100.lock"));
    }

    #[test]
    fn an_unusable_directory_runs_without_the_guard() {
        let addr: SocketAddr = "127.0.0.1:7100".parse().unwrap();
        let none = InstanceLock::acquire_in(Path::new("/nonexistent/dir"), addr).unwrap();
        assert!(none.is_none());
    }
}

//! One gateway per address: an exclusive `flock` on a lock file per listen
//! address, taken before the listener joins a SO_REUSEPORT group.
//!
//! SO_REUSEPORT lets every socket of the same user bind the same address,
//! so a second gateway process would silently join the first one's group
//! and take half its connections. The lock file
//! (`$XDG_RUNTIME_DIR/gateway-<ip>-<port>.lock`, else under `/tmp`) holds
//! the pid and address of the gateway that owns the address; the kernel
//! drops the lock when that process exits, however it exits, so a stale
//! file never blocks.
//!
//! A wildcard address (`0.0.0.0:7100`, `[::]:7100`) covers every address
//! of its port, and SO_REUSEPORT lets `127.0.0.1:7100` bind beside it (and
//! take its loopback traffic). So each gateway also locks the port file
//! `gateway-any-<port>.lock`: exclusively for a wildcard address, shared
//! for a specific one. Two specific addresses on one port coexist; a
//! wildcard and anything else on its port do not.

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
    /// Another live process holds the address's (or its port's) lock.
    #[error(
        "another gateway{} already serves {}{} (lock file {}); stop it or choose another address",
        pid.map_or(String::new(), |p| format!(" (pid {p})")),
        other.unwrap_or(*addr),
        other.filter(|o| o != addr).map_or(String::new(), |_| format!(", which overlaps {addr}")),
        path.display()
    )]
    Held {
        /// The address asked for.
        addr: SocketAddr,
        /// The address the other gateway serves, when its lock file says.
        other: Option<SocketAddr>,
        /// The other process, when its lock file says.
        pid: Option<u32>,
        /// The lock file.
        path: PathBuf,
    },
}

/// One locked file; removed on drop when held exclusively.
#[derive(Debug)]
struct Locked {
    path: PathBuf,
    exclusive: bool,
    _file: File,
}

impl Drop for Locked {
    fn drop(&mut self) {
        // Still locked: nobody can take the name in between. A shared
        // lock's file may be in use by others and stays.
        if self.exclusive {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Attempt {
    Locked(Locked),
    /// Someone holds it: the `pid addr` its file says, if any.
    Busy(Option<u32>, Option<SocketAddr>),
    Unusable,
    Stale,
}

/// An address this process owns for as long as the value lives; dropping
/// it removes its lock file (still locked, so nobody can take the name
/// in between) and releases the locks.
#[derive(Debug)]
pub struct InstanceLock {
    addr: SocketAddr,
    path: PathBuf,
    _files: Vec<Locked>,
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

/// The port-wide lock file of `port` under `dir` (`gateway-any-7100.lock`).
pub fn port_lock_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("gateway-any-{port}.lock"))
}

/// `pid addr` as a lock file holds them.
fn parse_owner(text: &str) -> (Option<u32>, Option<SocketAddr>) {
    let mut it = text.split_whitespace();
    let pid = it.next().and_then(|p| p.parse().ok());
    let addr = it.next().and_then(|a| a.parse().ok());
    (pid, addr)
}

/// Takes the lock of `path` (exclusive or shared), retrying when the file
/// was unlinked or replaced meanwhile (a lock on it would guard nothing).
fn lock(path: &Path, exclusive: bool, addr: SocketAddr) -> Attempt {
    for _ in 0..8 {
        match lock_once(path, exclusive, addr) {
            Attempt::Stale => continue,
            other => return other,
        }
    }
    tracing::warn!(%addr, path = %path.display(), "the instance lock file keeps changing, running without it");
    Attempt::Unusable
}

fn lock_once(path: &Path, exclusive: bool, addr: SocketAddr) -> Attempt {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        // Someone else's file: flock needs no write access.
        .or_else(|_| File::open(path));
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%addr, path = %path.display(), "cannot open the instance lock file, running without it: {e}");
            return Attempt::Unusable;
        }
    };
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let (pid, other) = parse_owner(&text);
            return Attempt::Busy(pid, other);
        }
        tracing::warn!(%addr, path = %path.display(), "cannot lock the instance lock file, running without it: {err}");
        return Attempt::Unusable;
    }
    let same = match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if !same {
        return Attempt::Stale;
    }
    if exclusive {
        // Ours now: say who we are (best effort; a read-only file stays as is).
        let pid = std::process::id();
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{pid} {addr}"));
    }
    Attempt::Locked(Locked {
        path: path.to_path_buf(),
        exclusive,
        _file: file,
    })
}

/// Who serves a specific address of `port` (for a wildcard that found the
/// port taken): the `pid addr` of the first address lock file of that
/// port that is locked now.
fn owner_on_port(dir: &Path, port: u16) -> (Option<u32>, Option<SocketAddr>) {
    let suffix = format!("-{port}.lock");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (None, None);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("gateway-")
            || !name.ends_with(&suffix)
            || name.starts_with("gateway-any-")
        {
            continue;
        }
        let Ok(mut f) = File::open(e.path()) else {
            continue;
        };
        // SAFETY: flock on a descriptor we own; a shared probe, released at once.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        if !free {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            return parse_owner(&text);
        }
    }
    (None, None)
}

impl InstanceLock {
    /// Locks `addr` (a bound address: not port 0) in [`lock_dir`].
    ///
    /// `Ok(None)` when no lock file can be used there (an unwritable
    /// directory, a file of another user): the gateway then runs without
    /// the guard, as before, and says so in the log.
    pub fn acquire(addr: SocketAddr) -> Result<Option<Self>, LockError> {
        Self::acquire_in(&lock_dir(), addr)
    }

    /// [`InstanceLock::acquire`] with the lock files under `dir`.
    pub fn acquire_in(dir: &Path, addr: SocketAddr) -> Result<Option<Self>, LockError> {
        let wildcard = addr.ip().is_unspecified();
        let port_path = port_lock_path(dir, addr.port());
        let port = match lock(&port_path, wildcard, addr) {
            Attempt::Locked(l) => l,
            Attempt::Busy(pid, other) => {
                // Shared holders (specific addresses) write nothing, so a
                // wildcard asks their address files first; an exclusive
                // holder (a wildcard) wrote its own line.
                let (pid, other) = if wildcard {
                    match owner_on_port(dir, addr.port()) {
                        (None, _) => (pid, other),
                        found => found,
                    }
                } else {
                    (pid, other)
                };
                return Err(LockError::Held {
                    addr,
                    other,
                    pid,
                    path: port_path,
                });
            }
            Attempt::Unusable | Attempt::Stale => return Ok(None),
        };
        if wildcard {
            // The port lock is this address's lock.
            return Ok(Some(Self {
                addr,
                path: port_path,
                _files: vec![port],
            }));
        }
        let path = lock_path(dir, addr);
        match lock(&path, true, addr) {
            Attempt::Locked(l) => Ok(Some(Self {
                addr,
                path,
                _files: vec![l, port],
            })),
            Attempt::Busy(pid, other) => Err(LockError::Held {
                addr,
                other,
                pid,
                path,
            }),
            Attempt::Unusable | Attempt::Stale => Ok(None),
        }
    }

    /// The locked address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its lock file.
    pub fn path(&self) -> &Path {
        &self.path
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
        assert_eq!(text.trim(), format!("{} {addr}", std::process::id()));
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
    fn a_wildcard_and_a_specific_address_of_one_port_exclude_each_other() {
        let dir = temp_dir("wild");
        let any: SocketAddr = "0.0.0.0:7200".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:7200".parse().unwrap();
        let lo2: SocketAddr = "127.0.0.2:7200".parse().unwrap();
        let pid = format!("pid {}", std::process::id());
        {
            let _w = InstanceLock::acquire_in(&dir, any).unwrap().unwrap();
            let msg = InstanceLock::acquire_in(&dir, lo).unwrap_err().to_string();
            assert!(
                msg.contains("already serves 0.0.0.0:7200, which overlaps 127.0.0.1:7200"),
                "{msg}"
            );
            assert!(msg.contains(&pid), "{msg}");
            let msg = InstanceLock::acquire_in(&dir, any).unwrap_err().to_string();
            assert!(msg.contains("already serves 0.0.0.0:7200 ("), "{msg}");
        }
        // Two specific addresses share a port; a wildcard then cannot join.
        let _a = InstanceLock::acquire_in(&dir, lo).unwrap().unwrap();
        let _b = InstanceLock::acquire_in(&dir, lo2).unwrap().unwrap();
        let msg = InstanceLock::acquire_in(&dir, any).unwrap_err().to_string();
        assert!(msg.contains("which overlaps 0.0.0.0:7200"), "{msg}");
        assert!(msg.contains(&pid), "{msg}");
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

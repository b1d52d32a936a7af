//! Live facts: what the tuner learns from system calls rather than files
//! (resource limits, the page size, an io_uring probe ring). Behind a trait
//! so tests inject fakes.

use std::io;

use serde::Serialize;

use crate::host::HostError;
use crate::uring::{self, RingProbe};

/// A resource-limit value meaning "no limit".
pub const UNLIMITED: u64 = u64::MAX;

/// A soft/hard resource-limit pair; [`UNLIMITED`] stands for infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// The limit in force.
    pub soft: u64,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub hard: u64,
}

/// `n` with thousands separators (`39,872`), or `unlimited`.
pub fn fmt_count(n: u64) -> String {
    if n == UNLIMITED {
        return "unlimited".into();
    }
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a limit value: a number, or `unlimited`.
pub fn fmt_limit(value: u64) -> String {
    if value == UNLIMITED {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

/// Facts read through system calls on the running process.
pub trait LiveFacts {
    /// `RLIMIT_NOFILE` of this process.
    fn rlimit_nofile(&self) -> Result<Rlimit, HostError>;
    /// `RLIMIT_MEMLOCK` of this process, in bytes.
    fn rlimit_memlock(&self) -> Result<Rlimit, HostError>;
    /// The page size the kernel accounts `tcp_mem` in.
    fn page_size(&self) -> u64;
    /// Sets up a small io_uring ring and probes what it supports.
    fn ring_probe(&self) -> RingProbe;
}

/// The real system: `getrlimit`, `sysconf` and a real probe ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFacts;

fn getrlimit(resource: libc::__rlimit_resource_t, call: &'static str) -> Result<Rlimit, HostError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct for the duration of the call.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    if rc != 0 {
        return Err(HostError::Syscall {
            call,
            source: io::Error::last_os_error(),
        });
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            UNLIMITED
        } else {
            v
        }
    };
    Ok(Rlimit {
        soft: conv(lim.rlim_cur),
        hard: conv(lim.rlim_max),
    })
}

impl LiveFacts for OsFacts {
    fn rlimit_nofile(&self) -> Result<Rlimit, HostError> {
        getrlimit(libc::RLIMIT_NOFILE, "getrlimit(RLIMIT_NOFILE)")
    }

    fn rlimit_memlock(&self) -> Result<Rlimit, HostError> {
        getrlimit(libc::RLIMIT_MEMLOCK, "getrlimit(RLIMIT_MEMLOCK)")
    }

    fn page_size(&self) -> u64 {
        // SAFETY: sysconf has no memory-safety preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
    }

    fn ring_probe(&self) -> RingProbe {
        uring::probe_live()
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit (what
/// an unprivileged process may do) and returns the new pair. The gateway
/// calls this before sizing its direct-descriptor tables.
pub fn raise_nofile_soft_to_hard() -> Result<Rlimit, HostError> {
    let current = OsFacts.rlimit_nofile()?;
    if current.soft == current.hard {
        return Ok(current);
    }
    let to_raw = |v: u64| {
        if v == UNLIMITED {
            libc::RLIM_INFINITY
        } else {
            v
        }
    };
    let lim = libc::rlimit {
        rlim_cur: to_raw(current.hard),
        rlim_max: to_raw(current.hard),
    };
    // SAFETY: `lim` is a valid rlimit struct for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc != 0 {
        return Err(HostError::Syscall {
            call: "setrlimit(RLIMIT_NOFILE)",
            source: io::Error::last_os_error(),
        });
    }
    OsFacts.rlimit_nofile()
}

/// Fixed facts, for tests and for replaying a report from another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFacts {
    /// See [`LiveFacts::rlimit_nofile`].
    pub nofile: Rlimit,
    /// See [`LiveFacts::rlimit_memlock`].
    pub memlock: Rlimit,
    /// See [`LiveFacts::page_size`].
    pub page_size: u64,
    /// See [`LiveFacts::ring_probe`].
    pub ring: RingProbe,
}

impl LiveFacts for StaticFacts {
    fn rlimit_nofile(&self) -> Result<Rlimit, HostError> {
        Ok(self.nofile)
    }

    fn rlimit_memlock(&self) -> Result<Rlimit, HostError> {
        Ok(self.memlock)
    }

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn ring_probe(&self) -> RingProbe {
        self.ring.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_limits_are_readable() {
        let nofile = OsFacts.rlimit_nofile().unwrap();
        assert!(nofile.soft <= nofile.hard);
        assert!(OsFacts.rlimit_memlock().is_ok());
        assert!(OsFacts.page_size() >= 4096);
    }

    #[test]
    fn limits_format() {
        assert_eq!(fmt_limit(UNLIMITED), "unlimited");
        assert_eq!(fmt_count(39_872), "39,872");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_000_000), "1,000,000");
        assert_eq!(fmt_count(UNLIMITED), "unlimited");
        assert_eq!(fmt_limit(20000), "20000");
    }
}

//! Which driver runs the shards (`[shard] driver`): io_uring when the host
//! gives it every feature the io_uring driver needs, else epoll when the
//! config allows the fallback. The decision is pure (tests feed it fake
//! [`UringFeatures`]); the gateway logs its reason at start-up and
//! `gateway-tune check` reports it as the `shard.driver` finding.

use std::fmt;

use crate::config::DriverChoice;
use crate::report::{Finding, Severity};
use crate::uring::{RingProbe, UringFeatures};

/// A driver that can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The io_uring driver (the fast path).
    IoUring,
    /// The epoll driver (runs wherever Linux runs).
    Epoll,
}

impl Driver {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The driver chosen and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverDecision {
    /// What was asked for.
    pub choice: DriverChoice,
    /// What will run.
    pub driver: Driver,
    /// Why, for the log and the check.
    pub why: String,
}

/// `driver = "io_uring"` on a host without a usable io_uring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("driver = \"io_uring\" but io_uring is unavailable: {reason}")]
pub struct DriverUnavailable {
    /// What is missing, in one line.
    pub reason: String,
}

/// Why io_uring cannot run the shards here, in one line; `None` when it can.
pub fn uring_unavailable(uring: &UringFeatures) -> Option<String> {
    if let RingProbe::SetupFailed { errno } = uring.probe {
        let name = errno_name(errno);
        let hint = match errno {
            libc::EPERM => " (blocked by seccomp or kernel.io_uring_disabled?)",
            libc::ENOSYS => " (kernel without io_uring, or a sandbox hiding it?)",
            libc::ENOMEM => " (RLIMIT_MEMLOCK too low?)",
            _ => "",
        };
        return Some(format!("io_uring_setup: {name}{hint}"));
    }
    let missing: Vec<String> = uring
        .features
        .iter()
        .filter(|s| s.feature.required() && !s.available)
        .map(|s| format!("{} ({})", s.feature.name(), s.detail))
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// Decides the driver for `choice` on a host with `uring`.
pub fn decide(
    choice: DriverChoice,
    uring: &UringFeatures,
) -> Result<DriverDecision, DriverUnavailable> {
    let unavailable = uring_unavailable(uring);
    let (driver, why) = match (choice, unavailable) {
        (DriverChoice::Epoll, _) => (
            Driver::Epoll,
            "driver = \"epoll\" (config or --driver)".into(),
        ),
        (DriverChoice::IoUring, Some(reason)) => return Err(DriverUnavailable { reason }),
        (DriverChoice::IoUring, None) => (
            Driver::IoUring,
            "driver = \"io_uring\": every feature it needs is present".into(),
        ),
        (DriverChoice::Auto, None) => (
            Driver::IoUring,
            "auto: io_uring has every feature the driver needs".into(),
        ),
        (DriverChoice::Auto, Some(reason)) => (
            Driver::Epoll,
            format!("auto: io_uring unavailable ({reason}), falling back to epoll"),
        ),
    };
    Ok(DriverDecision {
        choice,
        driver,
        why,
    })
}

/// The `shard.driver` finding of a check.
pub fn finding(decision: &Result<DriverDecision, DriverUnavailable>) -> Finding {
    match decision {
        Ok(d) => Finding::new(
            "shard.driver",
            format!("{} ({})", d.driver, d.choice.as_str()),
            "io_uring",
            if d.driver == Driver::IoUring || d.choice == DriverChoice::Epoll {
                Severity::Ok
            } else {
                Severity::Warn
            },
            format!("{} will run the shards: {}", d.driver, d.why),
        ),
        Err(e) => Finding::new(
            "shard.driver",
            "io_uring (unavailable)",
            "io_uring, or driver = \"auto\" to fall back to epoll",
            Severity::Block,
            e.to_string(),
        ),
    }
}

/// `EPERM`, `ENOSYS`, ... for the common errnos, else the number.
fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EACCES => "EACCES".into(),
        other => format!("errno {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uring::{KernelVersion, evaluate};

    fn blocked() -> UringFeatures {
        evaluate(
            Some(KernelVersion::new(6, 8)),
            Some(0),
            RingProbe::SetupFailed { errno: libc::EPERM },
        )
    }

    fn full() -> UringFeatures {
        evaluate(
            Some(KernelVersion::new(6, 8)),
            Some(0),
            RingProbe::all_supported(),
        )
    }

    #[test]
    fn auto_falls_back_to_epoll_and_says_why() {
        let d = decide(DriverChoice::Auto, &blocked()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.driver, Driver::Epoll);
        assert!(
            d.why.contains("io_uring_setup: EPERM (blocked by seccomp"),
            "{}",
            d.why
        );
        assert_eq!(finding(&Ok(d)).severity, Severity::Warn);
        let d = decide(DriverChoice::Auto, &full()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.driver, Driver::IoUring);
    }

    #[test]
    fn io_uring_without_it_is_refused_in_one_line() {
        let e = decide(DriverChoice::IoUring, &blocked()).err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.starts_with(
                "driver = \"io_uring\" but io_uring is unavailable: io_uring_setup: EPERM"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert_eq!(
            finding(&decide(DriverChoice::IoUring, &blocked())).severity,
            Severity::Block
        );
    }

    #[test]
    fn an_old_kernel_names_what_it_lacks() {
        let old = evaluate(
            Some(KernelVersion::new(5, 15)),
            Some(0),
            RingProbe::all_supported(),
        );
        let reason = uring_unavailable(&old).unwrap_or_default();
        assert!(reason.contains("recv-multishot"), "{reason}");
        let d = decide(DriverChoice::Epoll, &full()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            d.driver,
            Driver::Epoll,
            "epoll when asked, even with io_uring"
        );
    }
}

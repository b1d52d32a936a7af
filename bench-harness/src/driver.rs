//! Which driver the harness's shards run on (`--driver`): the gateway's own
//! probe and decision (`tuning::check::io_uring_features`,
//! `tuning::driver::decide`), so that the harness falls back to epoll
//! exactly where the gateway would, and says why in one line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tuning::config::DriverChoice;
use tuning::uring::UringFeatures;

use crate::engine::Driver;

/// `--driver io_uring` on a host where io_uring cannot run the shards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--driver io_uring, but io_uring is unavailable: {reason}")]
pub struct DriverUnavailable {
    /// What is missing, in one line (the gateway's own wording).
    pub reason: String,
}

/// The driver for `choice` on a host with `uring`, and, when `auto` fell
/// back to epoll, the line that says why.
///
/// # Errors
/// `--driver io_uring` where io_uring is unavailable.
pub fn pick(
    choice: DriverChoice,
    uring: &UringFeatures,
) -> Result<(Driver, Option<String>), DriverUnavailable> {
    let d = tuning::driver::decide(choice, uring)
        .map_err(|e| DriverUnavailable { reason: e.reason })?;
    let fell_back = choice == DriverChoice::Auto && d.driver == tuning::driver::Driver::Epoll;
    Ok((d.driver.into(), fell_back.then_some(d.why)))
}

/// [`pick`] on this host: io_uring is probed once per process (a probe
/// ring, as the gateway does at start-up); the fallback line goes to
/// stderr once.
///
/// # Errors
/// `--driver io_uring` where io_uring is unavailable.
pub fn choose(choice: DriverChoice) -> Result<Driver, DriverUnavailable> {
    static FEATURES: OnceLock<UringFeatures> = OnceLock::new();
    static TOLD: AtomicBool = AtomicBool::new(false);
    if choice == DriverChoice::Epoll {
        return Ok(Driver::Epoll);
    }
    let uring = FEATURES.get_or_init(|| {
        tuning::check::io_uring_features(&tuning::host::HostRoot::system(), &tuning::facts::OsFacts)
    });
    let (driver, why) = pick(choice, uring)?;
    if let Some(why) = why
        && !TOLD.swap(true, Ordering::Relaxed)
    {
        eprintln!("gateway-bench: {why}");
    }
    Ok(driver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuning::uring::{KernelVersion, RingProbe, evaluate};

    fn host(probe: RingProbe) -> UringFeatures {
        evaluate(Some(KernelVersion::new(6, 8)), Some(0), probe)
    }

    #[test]
    fn auto_falls_back_to_epoll_with_the_reason() {
        let blocked = host(RingProbe::SetupFailed { errno: libc::EPERM });
        let (d, why) = pick(DriverChoice::Auto, &blocked).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d, Driver::Epoll);
        let why = why.unwrap_or_default();
        assert!(
            why.contains("io_uring_setup: EPERM (blocked by seccomp"),
            "{why}"
        );
        assert!(why.contains("falling back to epoll"), "{why}");
        let (d, why) = pick(DriverChoice::Auto, &host(RingProbe::all_supported()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d, why), (Driver::IoUring, None));
    }

    #[test]
    fn io_uring_where_it_is_denied_is_one_line_naming_the_cause() {
        let blocked = host(RingProbe::SetupFailed { errno: libc::EPERM });
        let e = pick(DriverChoice::IoUring, &blocked)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "--driver io_uring, but io_uring is unavailable: io_uring_setup: EPERM \
             (blocked by seccomp or kernel.io_uring_disabled?)"
        );
        let (d, why) = pick(DriverChoice::Epoll, &host(RingProbe::all_supported()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d, why), (Driver::Epoll, None), "epoll when asked, no note");
    }
}

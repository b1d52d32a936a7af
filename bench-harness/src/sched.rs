//! How the harness's own threads are scheduled (`--sched`).
//!
//! On a box where the harness shares the cores with the system under
//! test, every delivery the target sends over loopback wakes a harness
//! thread, and the kernel lets a freshly woken thread preempt the sender
//! on its way back to user space. A target that sends with one syscall per
//! connection (an epoll server, mosquitto) is then preempted between
//! sends; one that submits a batch of sends in one call (io_uring) is not.
//! With clients on other machines, as in production, neither happens. So
//! `--sched batch` runs the harness's load threads (connections and
//! publishers) as `SCHED_BATCH`: a woken harness thread waits for the
//! target's time slice to end instead of preempting it, and the target is
//! measured without the artefact. The default, `normal`, changes nothing.

use serde::{Deserialize, Serialize};

/// The scheduling policy of the harness's load threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Sched {
    /// The default policy (`SCHED_OTHER`): woken threads may preempt.
    #[default]
    Normal,
    /// `SCHED_BATCH`: woken threads do not preempt the target.
    Batch,
}

/// The policy could not be set.
#[derive(Debug, thiserror::Error)]
#[error("cannot set the harness threads' scheduling policy to {policy}: {source}")]
pub struct SchedError {
    /// The policy asked for.
    pub policy: &'static str,
    /// The OS error.
    pub source: std::io::Error,
}

impl Sched {
    /// The option's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Batch => "batch",
        }
    }

    /// Applies the policy to the calling thread (threads it spawns later
    /// inherit it). `Normal` leaves the thread as it is.
    pub fn apply_to_this_thread(self) -> Result<(), SchedError> {
        let policy = match self {
            Self::Normal => return Ok(()),
            Self::Batch => libc::SCHED_BATCH,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a live struct.
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(SchedError {
                policy: self.as_str(),
                source: std::io::Error::last_os_error(),
            })
        }
    }
}

/// The calling thread's policy, as `sched_getscheduler` reports it.
#[cfg(test)]
fn current_policy() -> i32 {
    // SAFETY: plain syscall on the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_applies_to_its_thread_only() {
        let before = current_policy();
        let inside = std::thread::spawn(|| {
            Sched::Batch
                .apply_to_this_thread()
                .map(|()| current_policy())
        })
        .join()
        .map_err(|_| "thread panicked");
        assert!(
            matches!(inside, Ok(Ok(p)) if p == libc::SCHED_BATCH),
            "{inside:?}"
        );
        assert_eq!(current_policy(), before, "the spawning thread is untouched");
    }

    #[test]
    fn normal_changes_nothing() {
        let inside = std::thread::spawn(|| {
            let before = current_policy();
            Sched::Normal
                .apply_to_this_thread()
                .map(|()| (before, current_policy()))
        })
        .join()
        .map_err(|_| "thread panicked");
        assert!(matches!(inside, Ok(Ok((a, b))) if a == b), "{inside:?}");
    }

    #[test]
    fn spelled_as_the_option() {
        assert_eq!(Sched::Batch.as_str(), "batch");
        assert_eq!(
            serde_json::to_string(&Sched::Batch).ok().as_deref(),
            Some("\"batch\"")
        );
    }
}

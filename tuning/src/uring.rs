//! io_uring availability: the kernel version, `kernel.io_uring_disabled`, a
//! probe ring and an opcode probe for every feature the gateway uses
//! (DESIGN.md §1). The probe ([`probe_live`]) is a live syscall; the verdict
//! ([`evaluate`]) is pure so tests feed it fakes.

use std::collections::BTreeSet;
use std::fmt;

use io_uring::{IoUring, Probe, opcode};
use serde::Serialize;

use crate::report::{Finding, Severity};

/// What a probe ring found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingProbe {
    /// `io_uring_setup` failed with this errno.
    SetupFailed {
        /// The errno (`EPERM`, `ENOSYS`, `ENOMEM`, ...).
        errno: i32,
    },
    /// The ring was set up.
    Ready {
        /// Opcodes `IORING_REGISTER_PROBE` reports as supported; `None` when
        /// the kernel cannot probe (before 5.6).
        opcodes: Option<BTreeSet<u8>>,
        /// Registering a provided-buffer ring (`IORING_REGISTER_PBUF_RING`):
        /// `Err(errno)` when refused.
        buf_ring: Result<(), i32>,
        /// Registering a sparse direct-descriptor table: `Err(errno)` when refused.
        sparse_files: Result<(), i32>,
    },
}

impl RingProbe {
    /// A probe where everything succeeded and every opcode exists.
    pub fn all_supported() -> Self {
        Self::Ready {
            opcodes: Some((0..=u8::MAX).collect()),
            buf_ring: Ok(()),
            sparse_files: Ok(()),
        }
    }
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Sets up an 8-entry ring and probes opcodes, a provided-buffer ring and a
/// sparse direct-descriptor table. Everything it registers is torn down.
pub fn probe_live() -> RingProbe {
    let ring: IoUring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => {
            return RingProbe::SetupFailed {
                errno: errno_of(&e),
            };
        }
    };
    let mut probe = Probe::new();
    let opcodes = ring
        .submitter()
        .register_probe(&mut probe)
        .ok()
        .map(|()| (0..=u8::MAX).filter(|&op| probe.is_supported(op)).collect());
    let sparse_files = ring
        .submitter()
        .register_files_sparse(16)
        .map_err(|e| errno_of(&e));
    let buf_ring = probe_buf_ring(&ring);
    drop(ring);
    RingProbe::Ready {
        opcodes,
        buf_ring,
        sparse_files,
    }
}

fn probe_buf_ring(ring: &IoUring) -> Result<(), i32> {
    const PAGE: usize = 4096;
    let layout = std::alloc::Layout::from_size_align(PAGE, PAGE).map_err(|_| libc::EINVAL)?;
    // SAFETY: the layout has a non-zero size.
    let mem = unsafe { std::alloc::alloc_zeroed(layout) };
    if mem.is_null() {
        return Err(libc::ENOMEM);
    }
    // SAFETY: `mem` is a zeroed, page-aligned page holding 8 ring entries of
    // 16 bytes; it stays allocated until after the ring is unregistered below.
    let result = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(mem as u64, 8, 0x7fff, 0)
    }
    .map_err(|e| errno_of(&e));
    if result.is_ok() {
        // If unregistering fails the kernel may still use the page until the
        // ring is closed: leak the 4 KiB page rather than free memory in use.
        if ring.submitter().unregister_buf_ring(0x7fff).is_err() {
            return result;
        }
    }
    // SAFETY: allocated above with the same layout; no longer registered.
    unsafe { std::alloc::dealloc(mem, layout) };
    result
}

/// A kernel version (`major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KernelVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch (0 when absent).
    pub patch: u32,
}

impl KernelVersion {
    /// `major.minor.0`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            patch: 0,
        }
    }

    /// Parses a release string such as `6.8.0-45-generic` or `5.19`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut nums = release.trim().split(['.', '-', '+', '_']).map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = nums.next()??;
        let minor = nums.next()??;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// An io_uring capability the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Feature {
    /// Multishot accept into direct descriptors.
    AcceptMulti,
    /// Multishot recv with provided buffers.
    RecvMulti,
    /// Provided-buffer rings (`IORING_REGISTER_PBUF_RING`).
    BufRing,
    /// Sparse direct-descriptor tables.
    SparseFiles,
    /// Incremental consumption of provided buffers (optional).
    BufRingInc,
    /// Single-shot accept (peer addresses for admission rules; the
    /// control listener).
    Accept,
    /// Single-shot receive (control listener, backend connections).
    Recv,
    /// Send on fixed files.
    Send,
    /// Half-closing a client after its final Kick or Error.
    Shutdown,
    /// Connecting to backends.
    Connect,
    /// Bounding a backend connect in time.
    LinkTimeout,
    /// Timeouts (timer wheel tick).
    Timeout,
    /// Cancelling in-flight requests.
    AsyncCancel,
    /// Closing direct descriptors.
    Close,
    /// Read (eventfd doorbells).
    Read,
}

impl Feature {
    /// Every feature, in report order.
    pub const ALL: [Feature; 15] = [
        Feature::AcceptMulti,
        Feature::RecvMulti,
        Feature::BufRing,
        Feature::BufRingInc,
        Feature::SparseFiles,
        Feature::Accept,
        Feature::Recv,
        Feature::Send,
        Feature::Shutdown,
        Feature::Connect,
        Feature::LinkTimeout,
        Feature::Timeout,
        Feature::AsyncCancel,
        Feature::Close,
        Feature::Read,
    ];

    /// Short name used in report keys (`io_uring.op.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AcceptMulti => "accept-multishot",
            Self::RecvMulti => "recv-multishot",
            Self::BufRing => "buf-ring",
            Self::SparseFiles => "sparse-files",
            Self::BufRingInc => "buf-ring-inc",
            Self::Accept => "accept",
            Self::Recv => "recv",
            Self::Send => "send",
            Self::Shutdown => "shutdown",
            Self::Connect => "connect",
            Self::LinkTimeout => "link-timeout",
            Self::Timeout => "timeout",
            Self::AsyncCancel => "async-cancel",
            Self::Close => "close",
            Self::Read => "read",
        }
    }

    /// The opcode the probe must report, if the feature is an opcode.
    pub fn opcode(self) -> Option<u8> {
        Some(match self {
            Self::AcceptMulti => opcode::AcceptMulti::CODE,
            Self::RecvMulti => opcode::RecvMulti::CODE,
            Self::Accept => opcode::Accept::CODE,
            Self::Recv => opcode::Recv::CODE,
            Self::Send => opcode::Send::CODE,
            Self::Shutdown => opcode::Shutdown::CODE,
            Self::Connect => opcode::Connect::CODE,
            Self::LinkTimeout => opcode::LinkTimeout::CODE,
            Self::Timeout => opcode::Timeout::CODE,
            Self::AsyncCancel => opcode::AsyncCancel::CODE,
            Self::Close => opcode::Close::CODE,
            Self::Read => opcode::Read::CODE,
            Self::BufRing | Self::BufRingInc | Self::SparseFiles => return None,
        })
    }

    /// The first kernel with the feature as the gateway uses it (the opcode
    /// may be older; the flag the gateway sets is not).
    pub fn min_kernel(self) -> KernelVersion {
        match self {
            Self::AcceptMulti | Self::BufRing | Self::SparseFiles => KernelVersion::new(5, 19),
            Self::RecvMulti => KernelVersion::new(6, 0),
            Self::BufRingInc => KernelVersion::new(6, 12),
            Self::Accept
            | Self::Connect
            | Self::LinkTimeout
            | Self::AsyncCancel
            | Self::Timeout => KernelVersion::new(5, 5),
            Self::Recv | Self::Send | Self::Close | Self::Read => KernelVersion::new(5, 6),
            Self::Shutdown => KernelVersion::new(5, 11),
        }
    }

    /// Whether the gateway refuses to start without it.
    pub fn required(self) -> bool {
        !matches!(self, Self::BufRingInc)
    }

    /// What the gateway uses it for.
    pub fn purpose(self) -> &'static str {
        match self {
            Self::AcceptMulti => {
                "multishot accept into direct descriptors (IORING_OP_ACCEPT, 5.19)"
            }
            Self::RecvMulti => "multishot recv from the provided buffer ring (IORING_OP_RECV, 6.0)",
            Self::BufRing => {
                "provided buffer ring = the shard's buffer pool (register_buf_ring, 5.19)"
            }
            Self::SparseFiles => "sparse direct-descriptor table for client sockets (5.19)",
            Self::BufRingInc => {
                "a small frame uses only its bytes of a receive buffer (IOU_PBUF_RING_INC, 6.12); optional: without it every receive takes a whole buffer and idle connections cost more"
            }
            Self::Accept => {
                "single-shot accepts when admission rules need peer addresses, and the control listener (IORING_OP_ACCEPT)"
            }
            Self::Recv => "control listener and backend connections (IORING_OP_RECV)",
            Self::Send => "fixed-file sends (IORING_OP_SEND)",
            Self::Shutdown => {
                "half-close after a final Kick or Error so the client reads it (IORING_OP_SHUTDOWN, 5.11)"
            }
            Self::Connect => {
                "connections to backends: auth webhook, uplinks, presence events (IORING_OP_CONNECT)"
            }
            Self::LinkTimeout => "connect timeouts to backends (IORING_OP_LINK_TIMEOUT)",
            Self::Timeout => "timer wheel tick (IORING_OP_TIMEOUT)",
            Self::AsyncCancel => "cancelling multishot requests on close/shutdown",
            Self::Close => "closing direct descriptors (IORING_OP_CLOSE)",
            Self::Read => "cross-shard doorbells on eventfds (IORING_OP_READ)",
        }
    }
}

/// Whether one feature is usable, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureStatus {
    /// The feature.
    pub feature: Feature,
    /// Usable on this host.
    pub available: bool,
    /// What was found (empty when available).
    pub detail: String,
}

/// The io_uring verdict for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringFeatures {
    /// Kernel version, if `osrelease` was readable.
    pub kernel: Option<KernelVersion>,
    /// `kernel.io_uring_disabled` (0, 1 or 2); `None` on kernels without it.
    pub disabled: Option<u64>,
    /// What the probe ring found.
    pub probe: RingProbe,
    /// Per-feature status, in [`Feature::ALL`] order.
    pub features: Vec<FeatureStatus>,
}

/// Why `io_uring_setup` failed, in words an SRE can act on.
pub fn setup_error_hint(errno: i32, disabled: Option<u64>) -> String {
    match errno {
        libc::EPERM => format!(
            "io_uring_setup refused with EPERM: io_uring is disabled for this process \
             (kernel.io_uring_disabled={}) or blocked by a container seccomp profile \
             (Docker >= 25 and containerd defaults block io_uring); allow io_uring_setup/\
             io_uring_enter/io_uring_register in the profile or set kernel.io_uring_disabled=0",
            disabled.map_or("?".into(), |d| d.to_string())
        ),
        libc::ENOSYS => "io_uring_setup returned ENOSYS: the kernel lacks CONFIG_IO_URING or a \
                         seccomp filter (container sandbox such as gVisor) hides the syscall"
            .into(),
        libc::ENOMEM => "io_uring_setup returned ENOMEM: before 5.12 rings count against \
                         RLIMIT_MEMLOCK; raise LimitMEMLOCK"
            .into(),
        other => format!(
            "io_uring_setup failed: {}",
            std::io::Error::from_raw_os_error(other)
        ),
    }
}

/// Decides which features are usable from the kernel version, the sysctl and
/// the probe.
pub fn evaluate(
    kernel: Option<KernelVersion>,
    disabled: Option<u64>,
    probe: RingProbe,
) -> UringFeatures {
    let features = Feature::ALL
        .iter()
        .map(|&feature| {
            let detail = feature_problem(feature, kernel, disabled, &probe);
            FeatureStatus {
                feature,
                available: detail.is_none(),
                detail: detail.unwrap_or_default(),
            }
        })
        .collect();
    UringFeatures {
        kernel,
        disabled,
        probe,
        features,
    }
}

fn feature_problem(
    feature: Feature,
    kernel: Option<KernelVersion>,
    disabled: Option<u64>,
    probe: &RingProbe,
) -> Option<String> {
    let (opcodes, buf_ring, sparse) = match probe {
        RingProbe::SetupFailed { errno } => return Some(setup_error_hint(*errno, disabled)),
        RingProbe::Ready {
            opcodes,
            buf_ring,
            sparse_files,
        } => (opcodes, buf_ring, sparse_files),
    };
    let min = feature.min_kernel();
    if let Some(k) = kernel.filter(|&k| k < min) {
        return Some(format!("kernel {k} is older than {min}"));
    }
    if let Some(code) = feature.opcode() {
        match opcodes {
            None => return Some("kernel cannot probe opcodes (IORING_REGISTER_PROBE)".into()),
            Some(set) if !set.contains(&code) => {
                return Some(format!("opcode {code} not supported by the kernel"));
            }
            Some(_) => {}
        }
    }
    let refused = |what: &str, errno: i32| {
        Some(format!(
            "{what} refused: {}",
            std::io::Error::from_raw_os_error(errno)
        ))
    };
    match (feature, buf_ring, sparse) {
        (Feature::BufRing | Feature::BufRingInc | Feature::RecvMulti, Err(e), _) => {
            refused("register_buf_ring", *e)
        }
        (Feature::SparseFiles | Feature::AcceptMulti, _, Err(e)) => {
            refused("register_files_sparse", *e)
        }
        _ => None,
    }
}

impl UringFeatures {
    /// Whether a probe ring could be set up at all.
    pub fn ring_usable(&self) -> bool {
        matches!(self.probe, RingProbe::Ready { .. })
    }

    /// Whether `feature` is usable.
    pub fn has(&self, feature: Feature) -> bool {
        self.features
            .iter()
            .any(|s| s.feature == feature && s.available)
    }

    /// Required features that are not usable.
    pub fn missing_required(&self) -> Vec<Feature> {
        self.features
            .iter()
            .filter(|s| s.feature.required() && !s.available)
            .map(|s| s.feature)
            .collect()
    }

    /// The findings for a report: kernel, sysctl, setup, one per feature.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let need = KernelVersion::new(6, 0);
        out.push(match self.kernel {
            Some(k) if k >= need => Finding::new("io_uring.kernel", k.to_string(), ">= 6.0", Severity::Ok, "multishot recv with a provided buffer ring needs 6.0"),
            Some(k) => Finding::new("io_uring.kernel", k.to_string(), ">= 6.0", Severity::Block, "multishot accept (5.19) and multishot recv with a provided buffer ring (6.0) are required; upgrade the kernel"),
            None => Finding::new("io_uring.kernel", "unknown", ">= 6.0", Severity::Warn, "kernel.osrelease unreadable; relying on the opcode probe"),
        });
        let (sev, why) = match self.disabled {
            None | Some(0) => (Severity::Ok, "io_uring enabled for every process".to_owned()),
            Some(1) if self.ring_usable() => (Severity::Warn, "io_uring is limited to root and kernel.io_uring_group; this process may use it, an unprivileged gateway user must be in that group".to_owned()),
            Some(1) => (Severity::Block, "io_uring is limited to root and kernel.io_uring_group; add the gateway user to that group or set 0".to_owned()),
            Some(v) => (Severity::Block, format!("io_uring_disabled={v} disables io_uring for everyone; set kernel.io_uring_disabled=0")),
        };
        out.push(Finding::new(
            "kernel.io_uring_disabled",
            self.disabled.map_or("absent".into(), |d| d.to_string()),
            "0",
            sev,
            why,
        ));
        out.push(match &self.probe {
            RingProbe::Ready { .. } => Finding::new(
                "io_uring.setup",
                "ok",
                "ok",
                Severity::Ok,
                "a probe ring was set up (not blocked by seccomp or sysctl)",
            ),
            RingProbe::SetupFailed { errno } => Finding::new(
                "io_uring.setup",
                format!("failed ({})", std::io::Error::from_raw_os_error(*errno)),
                "ok",
                Severity::Block,
                setup_error_hint(*errno, self.disabled),
            ),
        });
        if !self.ring_usable() {
            return out;
        }
        for s in &self.features {
            let f = s.feature;
            let (current, sev, why) = if s.available {
                ("present", Severity::Ok, f.purpose().to_owned())
            } else if f.required() {
                (
                    "missing",
                    Severity::Block,
                    format!("{}: {}", f.purpose(), s.detail),
                )
            } else {
                (
                    "missing",
                    Severity::Warn,
                    format!("{}: {} (falls back to plain send)", f.purpose(), s.detail),
                )
            };
            out.push(Finding::new(
                format!("io_uring.op.{}", f.name()),
                current,
                if f.required() {
                    "present"
                } else {
                    "present (optional)"
                },
                sev,
                why,
            ));
        }
        out
    }
}

#[cfg(test)]
#[path = "uring_tests.rs"]
mod tests;

//! Reading the host through a root path: `/` in production, a temporary tree
//! in tests. Every file the tuner reads or writes goes through [`HostRoot`].

use std::io;
use std::path::{Path, PathBuf};

/// Why the host could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file, as seen from the real root.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A file's content is not what the kernel writes there.
    #[error("{path}: cannot parse {what}: `{text}`")]
    Parse {
        /// The file.
        path: String,
        /// What was expected.
        what: &'static str,
        /// The offending text (trimmed).
        text: String,
    },
    /// A live system call failed.
    #[error("{call}: {source}")]
    Syscall {
        /// The call, e.g. `getrlimit(RLIMIT_NOFILE)`.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// The root of the host file system the tuner reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// The real host: `/`.
    pub fn system() -> Self {
        Self::new("/")
    }

    /// A host rooted at `root` (a fake `/proc` and `/sys` tree in tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `abs` (an absolute host path like `/proc/meminfo`) under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// The file behind a dotted sysctl key (`net.core.somaxconn` →
    /// `/proc/sys/net/core/somaxconn`).
    pub fn sysctl_path(&self, key: &str) -> PathBuf {
        self.path(&format!("/proc/sys/{}", key.replace('.', "/")))
    }

    /// Reads a file; `Ok(None)` when it does not exist.
    pub fn read(&self, abs: &str) -> Result<Option<String>, HostError> {
        read_opt(&self.path(abs))
    }

    /// Reads a sysctl as its whitespace-separated integers; `Ok(None)` when
    /// the key does not exist on this kernel.
    pub fn sysctl(&self, key: &str) -> Result<Option<Vec<u64>>, HostError> {
        let path = self.sysctl_path(key);
        match read_opt(&path)? {
            None => Ok(None),
            Some(text) => parse_ints(&text)
                .map(Some)
                .ok_or_else(|| parse_error(&path, "integers", &text)),
        }
    }

    /// Whether a sysctl key exists on this kernel.
    pub fn has_sysctl(&self, key: &str) -> bool {
        self.sysctl_path(key).exists()
    }

    /// Writes a sysctl (values joined by tabs, as the kernel prints them).
    pub fn write_sysctl(&self, key: &str, values: &[u64]) -> Result<(), HostError> {
        let path = self.sysctl_path(key);
        let text = format_values(values);
        std::fs::write(&path, format!("{text}\n")).map_err(|source| io_error(&path, source))
    }

    /// The kernel release (`/proc/sys/kernel/osrelease`), e.g. `6.8.0-45-generic`.
    pub fn kernel_release(&self) -> Result<Option<String>, HostError> {
        Ok(self
            .read("/proc/sys/kernel/osrelease")?
            .map(|s| s.trim().to_owned()))
    }

    /// Online CPUs, from `/sys/devices/system/cpu/online`, else the
    /// `processor` lines of `/proc/cpuinfo`.
    pub fn online_cpus(&self) -> Result<Vec<usize>, HostError> {
        let online = "/sys/devices/system/cpu/online";
        if let Some(text) = self.read(online)? {
            return parse_cpu_list(&text)
                .ok_or_else(|| parse_error(&self.path(online), "a CPU list", &text));
        }
        let cpuinfo = "/proc/cpuinfo";
        let text = self.read(cpuinfo)?.ok_or_else(|| HostError::Io {
            path: self.path(cpuinfo).display().to_string(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "neither it nor /sys/devices/system/cpu/online exists",
            ),
        })?;
        let mut cpus = Vec::new();
        for line in text.lines() {
            let mut kv = line.splitn(2, ':');
            if kv.next().map(str::trim) == Some("processor") {
                let value = kv.next().unwrap_or("").trim();
                let cpu = value
                    .parse()
                    .map_err(|_| parse_error(&self.path(cpuinfo), "a processor number", value))?;
                cpus.push(cpu);
            }
        }
        Ok(cpus)
    }

    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub fn mem_total_bytes(&self) -> Result<Option<u64>, HostError> {
        let Some(text) = self.read("/proc/meminfo")? else {
            return Ok(None);
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("MemTotal:") {
                let kib = rest.trim().trim_end_matches("kB").trim();
                let kib: u64 = kib.parse().map_err(|_| {
                    parse_error(&self.path("/proc/meminfo"), "MemTotal in kB", rest)
                })?;
                return Ok(Some(kib.saturating_mul(1024)));
            }
        }
        Ok(None)
    }
}

fn read_opt(path: &Path) -> Result<Option<String>, HostError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, source)),
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> HostError {
    HostError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn parse_error(path: &Path, what: &'static str, text: &str) -> HostError {
    HostError::Parse {
        path: path.display().to_string(),
        what,
        text: text.trim().to_owned(),
    }
}

/// Parses whitespace-separated unsigned integers (`"4096\t87380\t6291456"`).
pub fn parse_ints(text: &str) -> Option<Vec<u64>> {
    let values: Option<Vec<u64>> = text.split_whitespace().map(|v| v.parse().ok()).collect();
    values.filter(|v| !v.is_empty())
}

/// Formats sysctl values the way the kernel prints them (tab-separated).
pub fn format_values(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("\t")
}

/// Parses a kernel CPU list (`0-3,8,10-11`); `None` when malformed. An empty
/// (or whitespace-only) list is an empty set.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Formats CPUs as a compact kernel CPU list (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeHost;

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
    }

    #[test]
    fn sysctls_read_write_and_missing() {
        let host = FakeHost::new();
        host.sysctl("net.ipv4.tcp_mem", "1\t2\t3");
        let root = host.root();
        assert_eq!(
            root.sysctl("net.ipv4.tcp_mem").unwrap(),
            Some(vec![1, 2, 3])
        );
        assert_eq!(root.sysctl("net.core.somaxconn").unwrap(), None);
        root.write_sysctl("net.ipv4.tcp_mem", &[4, 5, 6]).unwrap();
        assert_eq!(
            root.sysctl("net.ipv4.tcp_mem").unwrap(),
            Some(vec![4, 5, 6])
        );
        host.sysctl("fs.nr_open", "lots");
        assert!(root.sysctl("fs.nr_open").is_err());
    }

    #[test]
    fn online_cpus_fall_back_to_cpuinfo() {
        let host = FakeHost::new();
        host.file(
            "/proc/cpuinfo",
            "processor\t: 0\nmodel\t: x\n\nprocessor\t: 1\n",
        );
        assert_eq!(host.root().online_cpus().unwrap(), vec![0, 1]);
        host.file("/sys/devices/system/cpu/online", "0-5\n");
        assert_eq!(host.root().online_cpus().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn meminfo_and_release() {
        let host = FakeHost::new();
        assert_eq!(host.root().mem_total_bytes().unwrap(), None);
        host.file(
            "/proc/meminfo",
            "MemTotal:       24683656 kB\nMemFree: 1 kB\n",
        );
        host.sysctl("kernel.osrelease", "6.8.0-45-generic\n");
        assert_eq!(
            host.root().mem_total_bytes().unwrap(),
            Some(24683656 * 1024)
        );
        assert_eq!(
            host.root().kernel_release().unwrap().as_deref(),
            Some("6.8.0-45-generic")
        );
    }
}

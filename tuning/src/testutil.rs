//! Fake `/proc` and `/sys` trees for tests.

use std::path::Path;

use crate::facts::{Rlimit, StaticFacts};
use crate::host::HostRoot;
use crate::uring::RingProbe;

/// A temporary host root that tests fill with the files they need.
pub(crate) struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    /// An empty root.
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A 4-CPU, 16 GiB host with stock kernel 6.8 sysctls.
    pub(crate) fn stock() -> Self {
        let host = Self::new();
        host.sysctl("kernel.osrelease", "6.12.0-45-generic");
        host.sysctl("kernel.io_uring_disabled", "0");
        host.sysctl("fs.nr_open", "1048576");
        host.sysctl("fs.file-max", "9223372036854775807");
        host.sysctl("net.core.somaxconn", "4096");
        host.sysctl("net.ipv4.tcp_max_syn_backlog", "1024");
        host.sysctl("net.core.netdev_max_backlog", "1000");
        host.sysctl("net.ipv4.tcp_mem", "189000\t252000\t378000");
        host.sysctl("net.ipv4.tcp_rmem", "4096\t131072\t6291456");
        host.sysctl("net.ipv4.tcp_wmem", "4096\t16384\t4194304");
        host.sysctl("net.ipv4.ip_local_port_range", "32768\t60999");
        host.file("/sys/devices/system/cpu/online", "0-3\n");
        host.file("/proc/meminfo", "MemTotal:       16384000 kB\n");
        host.file(
            "/proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n",
        );
        host.file("/proc/self/cgroup", "0::/system.slice/gateway.service\n");
        host.file(
            "/sys/fs/cgroup/system.slice/gateway.service/cpu.max",
            "max 100000\n",
        );
        host.file(
            "/proc/interrupts",
            "           CPU0       CPU1       CPU2       CPU3\n \
             24:   1   0   0   0  IO-APIC   5-edge      ACPI:Ged\n",
        );
        host
    }

    /// The root to hand to the code under test.
    pub(crate) fn root(&self) -> HostRoot {
        HostRoot::new(self.dir.path())
    }

    /// The real path of the root.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` at host path `abs`, creating directories.
    pub(crate) fn file(&self, abs: &str, content: &str) {
        let path = self.root().path(abs);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Sets a sysctl file.
    pub(crate) fn sysctl(&self, key: &str, content: &str) {
        self.file(&format!("/proc/sys/{}", key.replace('.', "/")), content);
    }

    /// Removes a host file.
    pub(crate) fn remove(&self, abs: &str) {
        std::fs::remove_file(self.root().path(abs)).unwrap();
    }
}

/// Live facts of a healthy 6.8 host: io_uring fully available, generous limits.
pub(crate) fn healthy_facts() -> StaticFacts {
    StaticFacts {
        nofile: Rlimit {
            soft: 1 << 20,
            hard: 1 << 20,
        },
        memlock: Rlimit {
            soft: 64 << 20,
            hard: 64 << 20,
        },
        page_size: 4096,
        ring: RingProbe::all_supported(),
    }
}

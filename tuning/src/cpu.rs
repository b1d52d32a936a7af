//! CPU placement checks: online CPUs, the cgroup CPU quota, `isolcpus`, and
//! NIC interrupts landing on shard CPUs.

use std::collections::BTreeSet;

use crate::host::{HostRoot, format_cpu_list, parse_cpu_list};
use crate::report::{Finding, Mode, Severity};

/// CPU findings for shards placed on `shard_cpus` (`None` = not pinned).
pub fn cpu_findings(root: &HostRoot, shard_cpus: &[Option<usize>], mode: Mode) -> Vec<Finding> {
    let online = match root.online_cpus() {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::new(
                "cpus.online",
                "unreadable",
                "-",
                Severity::Warn,
                e.to_string(),
            )];
        }
    };
    let pinned: BTreeSet<usize> = shard_cpus.iter().flatten().copied().collect();
    let mut out = vec![online_finding(&online, shard_cpus, &pinned, mode)];
    out.push(quota_finding(root, shard_cpus.len()));
    out.push(isolcpus_finding(root, &pinned));
    out.push(irq_finding(root, &online, &pinned));
    out
}

fn online_finding(
    online: &[usize],
    shard_cpus: &[Option<usize>],
    pinned: &BTreeSet<usize>,
    mode: Mode,
) -> Finding {
    let shards = shard_cpus.len();
    let current = format!("{} ({})", online.len(), format_cpu_list(online));
    let offline: Vec<usize> = pinned
        .iter()
        .copied()
        .filter(|c| !online.contains(c))
        .collect();
    let placed = format!(
        "shards on CPUs {}",
        format_cpu_list(&pinned.iter().copied().collect::<Vec<_>>())
    );
    if !offline.is_empty() {
        let sev = if mode == Mode::Startup {
            Severity::Block
        } else {
            Severity::Warn
        };
        return Finding::new(
            "cpus.online",
            current,
            placed,
            sev,
            format!(
                "CPU(s) {} are not online: pinning those shards fails; fix shard.cpus / --cores",
                format_cpu_list(&offline)
            ),
        );
    }
    if shards > online.len() || pinned.len() < shard_cpus.iter().flatten().count() {
        return Finding::new(
            "cpus.online",
            current,
            format!("<= 1 shard per CPU ({} shards)", shards),
            Severity::Warn,
            "shards share cores: thread-per-core needs one shard per CPU",
        );
    }
    Finding::new(
        "cpus.online",
        current,
        placed,
        Severity::Ok,
        format!("{shards} shard(s), one per CPU"),
    )
}

/// The CPU quota of this process's cgroup, in CPUs (`None` = unlimited),
/// and the file it came from.
pub fn cgroup_cpu_quota(root: &HostRoot) -> Option<(f64, String)> {
    let cgroups = root
        .read("/proc/self/cgroup")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut candidates = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if ctrls.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/cpu.max"));
        } else if ctrls.split(',').any(|c| c == "cpu") {
            candidates.push(format!("/sys/fs/cgroup/{ctrls}{path}/cpu.cfs_quota_us"));
        }
    }
    candidates.push("/sys/fs/cgroup/cpu.max".into());
    candidates.push("/sys/fs/cgroup/cpu/cpu.cfs_quota_us".into());
    candidates.push("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us".into());
    for file in candidates {
        let Some(text) = root.read(&file).ok().flatten() else {
            continue;
        };
        let (quota, period) = if file.ends_with("cpu.max") {
            let mut it = text.split_whitespace();
            let quota = it.next().unwrap_or("max").to_owned();
            (quota, it.next().unwrap_or("100000").to_owned())
        } else {
            let period_file = file.replace("cpu.cfs_quota_us", "cpu.cfs_period_us");
            let period = root
                .read(&period_file)
                .ok()
                .flatten()
                .unwrap_or_else(|| "100000".into());
            (text.trim().to_owned(), period.trim().to_owned())
        };
        return match (quota.parse::<f64>(), period.parse::<f64>()) {
            (Ok(q), Ok(p)) if q > 0.0 && p > 0.0 => Some((q / p, file)),
            _ => None,
        };
    }
    None
}

fn quota_finding(root: &HostRoot, shards: usize) -> Finding {
    match cgroup_cpu_quota(root) {
        None => Finding::new(
            "cgroup.cpu_quota",
            "unlimited",
            format!(">= {shards} CPUs"),
            Severity::Ok,
            "no CFS quota throttles the shards",
        ),
        Some((cpus, file)) => Finding::new(
            "cgroup.cpu_quota",
            format!("{cpus:.2} CPUs"),
            format!(">= {shards} CPUs"),
            if cpus + 1e-9 >= shards as f64 {
                Severity::Ok
            } else {
                Severity::Warn
            },
            format!(
                "{file}: busy shards beyond the quota are throttled for whole periods (latency spikes); run fewer shards or raise the quota"
            ),
        ),
    }
}

/// CPUs isolated with `isolcpus=` on the kernel command line.
pub fn isolated_cpus(root: &HostRoot) -> Vec<usize> {
    let cmdline = root
        .read("/proc/cmdline")
        .ok()
        .flatten()
        .unwrap_or_default();
    for arg in cmdline.split_whitespace() {
        if let Some(value) = arg.strip_prefix("isolcpus=") {
            let list: Vec<&str> = value
                .split(',')
                .filter(|p| !p.starts_with(|c: char| c.is_ascii_alphabetic()))
                .collect();
            return parse_cpu_list(&list.join(",")).unwrap_or_default();
        }
    }
    Vec::new()
}

fn isolcpus_finding(root: &HostRoot, pinned: &BTreeSet<usize>) -> Finding {
    let isolated: BTreeSet<usize> = isolated_cpus(root).into_iter().collect();
    let iso_list = format_cpu_list(&isolated.iter().copied().collect::<Vec<_>>());
    let key = "kernel.isolcpus";
    if isolated.is_empty() {
        return Finding::new(
            key,
            "none",
            "optional",
            Severity::Ok,
            "no isolated CPUs; shards share cores with the rest of the system",
        );
    }
    let on: Vec<usize> = pinned.intersection(&isolated).copied().collect();
    if on.len() == pinned.len() && !pinned.is_empty() {
        Finding::new(
            key,
            iso_list,
            "shard CPUs",
            Severity::Ok,
            "every shard runs on an isolated CPU",
        )
    } else if on.is_empty() {
        Finding::new(
            key,
            iso_list.clone(),
            "shard CPUs",
            Severity::Warn,
            format!(
                "CPUs {iso_list} are isolated but run no shard: pin shards there (--cores {iso_list})"
            ),
        )
    } else {
        Finding::new(
            key,
            iso_list,
            "shard CPUs",
            Severity::Warn,
            "some shards run on isolated CPUs and some do not: latency differs by shard",
        )
    }
}

/// Names that identify the host's NICs in `/proc/interrupts`: interface
/// names, their device names and the PCI address of the device's parent.
fn nic_tokens(root: &HostRoot) -> Vec<String> {
    let mut tokens = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.path("/sys/class/net")) else {
        return tokens;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let device = entry.path().join("device");
        if name == "lo" || !device.exists() {
            continue;
        }
        let is_link = device
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if let Some(real) = is_link
            .then(|| std::fs::canonicalize(&device).ok())
            .flatten()
        {
            for part in [real.file_name(), real.parent().and_then(|p| p.file_name())]
                .into_iter()
                .flatten()
            {
                tokens.push(part.to_string_lossy().into_owned());
            }
        }
        tokens.push(name);
    }
    tokens.retain(|t| !t.is_empty() && !t.starts_with("pci"));
    tokens
}

fn mentions(line: &str, token: &str) -> bool {
    line.match_indices(token).any(|(i, _)| {
        let after = line[i + token.len()..].chars().next();
        let before = line[..i].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric())
            && !before.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// NIC interrupts: (irq, name, CPUs it may run on).
pub fn nic_irqs(root: &HostRoot) -> Vec<(u32, String, Vec<usize>)> {
    let tokens = nic_tokens(root);
    let text = root
        .read("/proc/interrupts")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let Some((irq, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(irq) = irq.parse::<u32>() else {
            continue;
        };
        let desc: Vec<&str> = rest
            .split_whitespace()
            .skip_while(|w| w.parse::<u64>().is_ok())
            .collect();
        let name = desc.last().copied().unwrap_or_default();
        if name.ends_with("-config") || !tokens.iter().any(|t| mentions(&desc.join(" "), t)) {
            continue;
        }
        let file = format!("/proc/irq/{irq}/smp_affinity_list");
        if let Some(cpus) = root
            .read(&file)
            .ok()
            .flatten()
            .and_then(|t| parse_cpu_list(&t))
        {
            out.push((irq, name.to_owned(), cpus));
        }
    }
    out
}

fn irq_finding(root: &HostRoot, online: &[usize], pinned: &BTreeSet<usize>) -> Finding {
    let key = "irq.nic_affinity";
    let irqs = nic_irqs(root);
    if irqs.is_empty() {
        return Finding::new(
            key,
            "no NIC IRQs found",
            "off shard CPUs",
            Severity::Ok,
            "nothing to move",
        );
    }
    let overlapping: Vec<String> = irqs
        .iter()
        .filter(|(_, _, cpus)| cpus.iter().any(|c| pinned.contains(c)))
        .map(|(irq, name, cpus)| format!("{irq} {name} -> {}", format_cpu_list(cpus)))
        .collect();
    let free: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| !pinned.contains(c))
        .collect();
    let current = format!(
        "{} NIC IRQs, {} on shard CPUs",
        irqs.len(),
        overlapping.len()
    );
    if overlapping.is_empty() {
        Finding::new(
            key,
            current,
            "off shard CPUs",
            Severity::Ok,
            "NIC interrupts run on CPUs without shards",
        )
    } else if free.is_empty() {
        Finding::new(
            key,
            current,
            "off shard CPUs",
            Severity::Ok,
            format!(
                "unavoidable: every online CPU runs a shard ({}); with more cores leave one for IRQs",
                overlapping.join("; ")
            ),
        )
    } else {
        Finding::new(
            key,
            current,
            format!("CPUs {}", format_cpu_list(&free)),
            Severity::Warn,
            format!(
                "softirq work steals time from shards: {}; write {} to /proc/irq/N/smp_affinity_list (stop irqbalance)",
                overlapping.join("; "),
                format_cpu_list(&free)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeHost;

    fn find<'a>(f: &'a [Finding], key: &str) -> &'a Finding {
        f.iter().find(|x| x.key == key).unwrap()
    }

    fn pinned(cpus: &[usize]) -> Vec<Option<usize>> {
        cpus.iter().copied().map(Some).collect()
    }

    #[test]
    fn online_and_offline_shard_cpus() {
        let host = FakeHost::stock();
        let f = cpu_findings(&host.root(), &pinned(&[0, 1, 2, 3]), Mode::Host);
        assert_eq!(find(&f, "cpus.online").severity, Severity::Ok);
        assert_eq!(find(&f, "cpus.online").current, "4 (0-3)");
        let f = cpu_findings(&host.root(), &pinned(&[0, 7]), Mode::Startup);
        assert_eq!(find(&f, "cpus.online").severity, Severity::Block);
        assert!(find(&f, "cpus.online").why.contains("CPU(s) 7"));
        let f = cpu_findings(&host.root(), &pinned(&[0, 0, 1]), Mode::Host);
        assert_eq!(find(&f, "cpus.online").severity, Severity::Warn);
    }

    #[test]
    fn cgroup_v2_quota() {
        let host = FakeHost::stock();
        let f = cpu_findings(&host.root(), &pinned(&[0, 1]), Mode::Host);
        assert_eq!(find(&f, "cgroup.cpu_quota").current, "unlimited");
        host.file(
            "/sys/fs/cgroup/system.slice/gateway.service/cpu.max",
            "150000 100000\n",
        );
        let f = cpu_findings(&host.root(), &pinned(&[0, 1]), Mode::Host);
        let q = find(&f, "cgroup.cpu_quota");
        assert_eq!(
            (q.current.as_str(), q.severity),
            ("1.50 CPUs", Severity::Warn)
        );
        let f = cpu_findings(&host.root(), &pinned(&[0]), Mode::Host);
        assert_eq!(find(&f, "cgroup.cpu_quota").severity, Severity::Ok);
    }

    #[test]
    fn cgroup_v1_quota() {
        let host = FakeHost::stock();
        host.file(
            "/proc/self/cgroup",
            "4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n",
        );
        host.file(
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
            "200000\n",
        );
        host.file(
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us",
            "50000\n",
        );
        let (cpus, file) = cgroup_cpu_quota(&host.root()).unwrap();
        assert_eq!(cpus, 4.0);
        assert!(file.contains("docker/abc"));
        host.file(
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
            "-1\n",
        );
        assert_eq!(cgroup_cpu_quota(&host.root()), None);
    }

    #[test]
    fn isolcpus_with_flags() {
        let host = FakeHost::stock();
        host.file(
            "/proc/cmdline",
            "root=/dev/sda isolcpus=nohz,domain,2-3 quiet\n",
        );
        assert_eq!(isolated_cpus(&host.root()), vec![2, 3]);
        let f = cpu_findings(&host.root(), &pinned(&[2, 3]), Mode::Host);
        assert_eq!(find(&f, "kernel.isolcpus").severity, Severity::Ok);
        let f = cpu_findings(&host.root(), &pinned(&[0, 1]), Mode::Host);
        let iso = find(&f, "kernel.isolcpus");
        assert_eq!(iso.severity, Severity::Warn);
        assert!(iso.why.contains("--cores 2-3"), "{}", iso.why);
        let f = cpu_findings(&host.root(), &pinned(&[1, 2]), Mode::Host);
        assert!(find(&f, "kernel.isolcpus").why.contains("some shards"));
    }

    fn nic_host() -> FakeHost {
        let host = FakeHost::stock();
        host.file(
            "/proc/interrupts",
            "           CPU0       CPU1       CPU2       CPU3\n \
             24:   1   0   0   0  IO-APIC   5-edge      ACPI:Ged\n \
             37:   0   0   0   0  PCI-MSIX-0000:00:03.0   0-edge      virtio2-config\n \
             38:  10   0   0   0  PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n \
             39:   0  20   0   0  PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n \
             40:   0   0   0   0  PCI-MSIX-0000:00:04.0   0-edge      virtio20-input.0\n \
             41:   0   0   0   5  IR-PCI-MSI 524288-edge  eth1-TxRx-0\n",
        );
        for (irq, cpus) in [(38, "0"), (39, "1"), (40, "0-3"), (41, "3")] {
            host.file(&format!("/proc/irq/{irq}/smp_affinity_list"), cpus);
        }
        host.file(
            "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/x",
            "",
        );
        std::fs::create_dir_all(host.dir().join("sys/class/net/eth0")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:03.0/virtio2",
            host.dir().join("sys/class/net/eth0/device"),
        )
        .unwrap();
        std::fs::create_dir_all(host.dir().join("sys/class/net/eth1/device")).unwrap();
        std::fs::create_dir_all(host.dir().join("sys/class/net/lo")).unwrap();
        host
    }

    #[test]
    fn nic_irqs_are_found_by_interface_device_and_pci_address() {
        let host = nic_host();
        let irqs = nic_irqs(&host.root());
        let ids: Vec<u32> = irqs.iter().map(|i| i.0).collect();
        assert_eq!(ids, vec![38, 39, 41], "{irqs:?}");
        assert_eq!(irqs[0].1, "virtio2-input.0");
        assert_eq!(irqs[2].2, vec![3]);
    }

    #[test]
    fn irq_overlap_warns_only_when_avoidable() {
        let host = nic_host();
        let f = cpu_findings(&host.root(), &pinned(&[0, 1]), Mode::Host);
        let irq = find(&f, "irq.nic_affinity");
        assert_eq!(irq.severity, Severity::Warn);
        assert!(irq.why.contains("38 virtio2-input.0 -> 0"), "{}", irq.why);
        assert_eq!(irq.recommended, "CPUs 2-3");
        let f = cpu_findings(&host.root(), &pinned(&[0, 1, 2, 3]), Mode::Host);
        let irq = find(&f, "irq.nic_affinity");
        assert_eq!(irq.severity, Severity::Ok);
        assert!(irq.why.contains("unavoidable"));
        let f = cpu_findings(&host.root(), &pinned(&[3]), Mode::Host);
        assert_eq!(find(&f, "irq.nic_affinity").severity, Severity::Warn);
        host.file("/proc/irq/41/smp_affinity_list", "0");
        let f = cpu_findings(&host.root(), &pinned(&[2, 3]), Mode::Host);
        assert_eq!(find(&f, "irq.nic_affinity").severity, Severity::Ok);
    }
}

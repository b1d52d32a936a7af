//! Tests of the host and start-up checks against fake trees.

use super::*;
use crate::derive::{DeriveInput, derive_config};
use crate::facts::{Rlimit, StaticFacts};
use crate::testutil::{FakeHost, healthy_facts};
use crate::uring::RingProbe;

fn target(n: u64, cpus: usize) -> CheckTarget {
    let d = derive_config(&DeriveInput {
        target_conns: n,
        cpus: (0..cpus).collect(),
        mem_total_bytes: 16 << 30,
    })
    .unwrap();
    CheckTarget::from_derived(&d)
}

fn nofile(soft: u64, hard: u64) -> StaticFacts {
    StaticFacts {
        nofile: Rlimit { soft, hard },
        ..healthy_facts()
    }
}

fn sev(r: &Report, key: &str) -> Severity {
    r.get(key)
        .unwrap_or_else(|| panic!("no {key} in {r:#?}"))
        .severity
}

#[test]
fn a_tuned_host_passes() {
    let host = FakeHost::stock();
    host.sysctl("net.core.netdev_max_backlog", "16384");
    host.sysctl("net.ipv4.tcp_max_syn_backlog", "4096");
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(r.exit_code(), 0, "{}", r.to_table());
    for key in [
        "rlimit.nofile.soft",
        "rlimit.nofile.hard",
        "rlimit.memlock",
        "fs.nr_open",
        "fs.file-max",
        "net.core.somaxconn",
        "net.ipv4.tcp_mem",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.ip_local_port_range",
        "net.netfilter.nf_conntrack_max",
        "mem.total",
        "io_uring.kernel",
        "io_uring.setup",
        "io_uring.op.recv-multishot",
        "cpus.online",
        "cgroup.cpu_quota",
        "kernel.isolcpus",
        "irq.nic_affinity",
    ] {
        assert!(r.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn stock_sysctls_warn() {
    let host = FakeHost::stock();
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(sev(&r, "net.core.netdev_max_backlog"), Severity::Warn);
    assert_eq!(sev(&r, "net.ipv4.tcp_max_syn_backlog"), Severity::Warn);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn nofile_below_target_is_a_per_shard_warning_on_the_host_check() {
    let host = FakeHost::stock();
    let r = check(&host.root(), &nofile(20_000, 20_000), &target(100_000, 2));
    let f = r.get("rlimit.nofile.soft").unwrap();
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!(f.recommended, ">= 63552");
    assert!(f.why.contains("direct descriptors"), "{}", f.why);
    assert!(
        f.why.contains(
            "2 shards × 19,936 connections each (20,000 descriptors less 64 kept for \
             listeners, control sockets and spare slots) = 39,872 connections in all"
        ),
        "{}",
        f.why
    );
    assert_eq!(r.blocking().count(), 0, "{}", r.to_table());
    // a target that fits in the per-shard tables is fine
    let r = check(&host.root(), &nofile(20_000, 20_000), &target(30_000, 2));
    assert_eq!(sev(&r, "rlimit.nofile.soft"), Severity::Ok);
}

#[test]
fn startup_blocks_when_the_direct_table_exceeds_the_soft_limit() {
    let host = FakeHost::stock();
    let mut cfg = GatewayConfig::default();
    cfg.shard.max_connections = 30_000;
    let r = startup_check_with(&host.root(), &nofile(20_000, 20_000), &cfg, 4);
    let f = r.get("rlimit.nofile.soft").unwrap();
    assert_eq!(f.severity, Severity::Block);
    assert!(f.why.contains("shard.max_connections = 30000"), "{}", f.why);
    assert!(
        f.why.contains("shard.max_connections <= 19936"),
        "{}",
        f.why
    );
    assert!(f.why.contains("raise LimitNOFILE"), "{}", f.why);
    // the hard limit would allow it: say so
    let r = startup_check_with(&host.root(), &nofile(20_000, 65_536), &cfg, 4);
    assert!(
        r.get("rlimit.nofile.soft")
            .unwrap()
            .why
            .contains("raise_nofile_soft_to_hard")
    );
    cfg.shard.max_connections = 19_936;
    let r = startup_check_with(&host.root(), &nofile(20_000, 20_000), &cfg, 4);
    assert_eq!(sev(&r, "rlimit.nofile.soft"), Severity::Ok);
}

#[test]
fn without_io_uring_auto_falls_back_to_epoll_and_io_uring_blocks() {
    let host = FakeHost::stock();
    let facts = StaticFacts {
        ring: RingProbe::SetupFailed { errno: libc::EPERM },
        ..healthy_facts()
    };
    let mut cfg = GatewayConfig::default();
    cfg.shard.max_connections = 1000;
    let r = startup_check_with(&host.root(), &facts, &cfg, 4);
    assert_eq!(r.blocking().count(), 0, "{r:#?}");
    let driver = r.get("shard.driver").unwrap();
    assert_eq!(driver.severity, Severity::Warn);
    assert!(driver.current.starts_with("epoll"), "{driver:?}");
    assert!(driver.why.contains("io_uring_setup: EPERM"), "{driver:?}");
    assert!(
        r.get("io_uring.setup")
            .unwrap()
            .why
            .contains("the epoll driver runs instead")
    );
    // On epoll the descriptor limit counts for every shard together.
    let nofile = r.get("rlimit.nofile.soft").unwrap();
    assert!(nofile.why.contains("one process"), "{nofile:?}");
    cfg.shard.driver = crate::config::DriverChoice::IoUring;
    let r = startup_check_with(&host.root(), &facts, &cfg, 4);
    assert_eq!(r.exit_code(), 2);
    let keys: Vec<&str> = r.blocking().map(|f| f.key.as_str()).collect();
    assert!(keys.contains(&"shard.driver"), "{keys:?}");
    assert!(keys.contains(&"io_uring.setup"), "{keys:?}");
    assert!(r.get("io_uring.setup").unwrap().why.contains("seccomp"));
}

#[test]
fn an_epoll_gateway_over_the_process_descriptor_limit_is_warned() {
    let host = FakeHost::stock();
    let mut cfg = GatewayConfig::default();
    cfg.shard.driver = crate::config::DriverChoice::Epoll;
    cfg.shard.count = 2;
    cfg.shard.max_connections = 19_000;
    let r = startup_check_with(&host.root(), &nofile(20_000, 20_000), &cfg, 4);
    assert_eq!(sev(&r, "rlimit.nofile.soft"), Severity::Warn);
    assert_eq!(sev(&r, "shard.driver"), Severity::Ok);
    cfg.shard.max_connections = 9_900;
    let r = startup_check_with(&host.root(), &nofile(20_000, 20_000), &cfg, 4);
    assert_eq!(sev(&r, "rlimit.nofile.soft"), Severity::Ok);
}

#[test]
fn startup_blocks_on_old_kernel_and_offline_cpus() {
    let host = FakeHost::stock();
    host.sysctl("kernel.osrelease", "5.15.0-91-generic");
    let mut cfg = GatewayConfig::default();
    cfg.shard.max_connections = 1000;
    cfg.shard.cpus = vec![0, 9];
    cfg.shard.count = 2;
    cfg.shard.driver = crate::config::DriverChoice::IoUring;
    let r = startup_check_with(&host.root(), &healthy_facts(), &cfg, 4);
    let keys: Vec<&str> = r.blocking().map(|f| f.key.as_str()).collect();
    assert!(keys.contains(&"io_uring.kernel"), "{keys:?}");
    assert!(keys.contains(&"io_uring.op.recv-multishot"), "{keys:?}");
    assert!(keys.contains(&"cpus.online"), "{keys:?}");
    // On auto the old kernel only means epoll.
    cfg.shard.driver = crate::config::DriverChoice::Auto;
    let r = startup_check_with(&host.root(), &healthy_facts(), &cfg, 4);
    let keys: Vec<&str> = r.blocking().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["cpus.online"]);
}

#[test]
fn tcp_mem_against_per_connection_memory() {
    let host = FakeHost::stock(); // max 378000 pages, pressure 252000
    let facts = healthy_facts();
    let ok = check(&host.root(), &facts, &target(200_000, 4));
    assert_eq!(sev(&ok, "net.ipv4.tcp_mem"), Severity::Ok);
    let pressure = check(&host.root(), &facts, &target(300_000, 4));
    let f = pressure.get("net.ipv4.tcp_mem").unwrap();
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.why
            .contains("300,000 sockets × ~4 KiB each = 300,000 pages of 4,096 bytes"),
        "{}",
        f.why
    );
    assert!(f.why.contains("pressure"));
    let over = check(&host.root(), &facts, &target(400_000, 4));
    assert!(
        over.get("net.ipv4.tcp_mem")
            .unwrap()
            .why
            .contains("above max")
    );
    // 64 KiB pages: 16x fewer pages
    let big = StaticFacts {
        page_size: 65_536,
        ..healthy_facts()
    };
    let r = check(&host.root(), &big, &target(400_000, 4));
    assert_eq!(sev(&r, "net.ipv4.tcp_mem"), Severity::Ok);
    host.sysctl("net.ipv4.tcp_mem", "1 2");
    let r = check(&host.root(), &facts, &target(1000, 4));
    assert_eq!(sev(&r, "net.ipv4.tcp_mem"), Severity::Warn);
}

#[test]
fn buffer_defaults_port_range_and_file_limits() {
    let host = FakeHost::stock();
    host.sysctl("net.ipv4.tcp_rmem", "4096\t262144\t6291456");
    host.sysctl("net.ipv4.ip_local_port_range", "50000\t60000");
    host.sysctl("fs.nr_open", "1024");
    host.sysctl("fs.file-max", "100000");
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(sev(&r, "net.ipv4.tcp_rmem"), Severity::Warn);
    assert_eq!(sev(&r, "net.ipv4.tcp_wmem"), Severity::Ok);
    assert_eq!(sev(&r, "net.ipv4.ip_local_port_range"), Severity::Warn);
    assert_eq!(sev(&r, "fs.nr_open"), Severity::Warn);
    assert_eq!(r.get("fs.file-max").unwrap().recommended, ">= 165536");
    assert_eq!(sev(&r, "fs.file-max"), Severity::Warn);
    host.remove("/proc/sys/net/core/somaxconn");
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(r.get("net.core.somaxconn").unwrap().current, "absent");
}

#[test]
fn conntrack_only_when_loaded() {
    let host = FakeHost::stock();
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(
        r.get("net.netfilter.nf_conntrack_max").unwrap().current,
        "not loaded"
    );
    host.sysctl("net.netfilter.nf_conntrack_max", "65536");
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    let f = r.get("net.netfilter.nf_conntrack_max").unwrap();
    assert_eq!(
        (f.severity, f.recommended.as_str()),
        (Severity::Warn, ">= 125000")
    );
    host.remove("/proc/sys/net/netfilter/nf_conntrack_max");
    host.file(
        "/proc/modules",
        "nf_conntrack 180224 1 xt_conntrack, Live 0x0\n",
    );
    let r = check(&host.root(), &healthy_facts(), &target(100_000, 4));
    assert_eq!(sev(&r, "net.netfilter.nf_conntrack_max"), Severity::Warn);
}

#[test]
fn memlock_and_ram() {
    let host = FakeHost::stock();
    let low = StaticFacts {
        memlock: Rlimit {
            soft: 65_536,
            hard: 65_536,
        },
        ..healthy_facts()
    };
    let r = check(&host.root(), &low, &target(100_000, 4));
    assert_eq!(
        sev(&r, "rlimit.memlock"),
        Severity::Ok,
        "6.12 charges rings to memcg"
    );
    host.sysctl("kernel.osrelease", "5.10.0");
    let r = check(&host.root(), &low, &target(100_000, 4));
    assert_eq!(sev(&r, "rlimit.memlock"), Severity::Warn);
    // 16 GiB: 2M sockets x 4 KiB = 8 GiB is more than half of RAM
    let r = check(&host.root(), &healthy_facts(), &target(2_100_000, 4));
    assert_eq!(sev(&r, "mem.total"), Severity::Warn);
}

#[test]
fn target_from_config_sums_shards() {
    let cfg = GatewayConfig::from_toml(
        "[shard]\ncount = 2\nmax_connections = 10\n[[shard_override]]\nindex = 1\nmax_connections = 30\n",
        "inline",
    )
    .unwrap();
    let t = CheckTarget::from_config(&cfg, 4, Mode::Startup);
    assert_eq!(t.target_conns, 40);
    assert_eq!(t.max_connections_per_shard, 30);
    assert_eq!(t.shard_cpus, vec![Some(0), Some(1)]);
}

#[test]
fn io_uring_features_reads_release_and_sysctl() {
    let host = FakeHost::stock();
    host.sysctl("kernel.io_uring_disabled", "2");
    let u = io_uring_features(&host.root(), &healthy_facts());
    assert_eq!(u.kernel, Some(KernelVersion::new(6, 12)));
    assert_eq!(u.disabled, Some(2));
}

#[test]
fn startup_check_on_this_host() {
    // The real host, real syscalls: a small config must not be blocked
    // wherever a probe ring can be set up (the sandbox: DESIGN.md §6).
    let root = HostRoot::system();
    let mut cfg = GatewayConfig::default();
    cfg.shard.max_connections = 1000;
    cfg.shard.count = 1;
    cfg.shard.cpus = vec![0];
    let uring = io_uring_features(&root, &OsFacts);
    let r = startup_check(&root, &cfg, 1, &uring);
    if uring.missing_required().is_empty() {
        assert_eq!(r.blocking().count(), 0, "{}", r.to_table());
    } else {
        assert!(r.blocking().count() > 0);
    }
}

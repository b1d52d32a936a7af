//! The host check (`gateway-tune check`) and the gateway's start-up check.
//! Both read the host through a [`HostRoot`] and the live syscalls through
//! [`LiveFacts`], and produce a [`Report`]; nothing here fails, an
//! unreadable value becomes a warning.

use crate::config::{DriverChoice, GatewayConfig};
use crate::cpu;
use crate::derive::{DIRECT_TABLE_RESERVE, Derived, KERNEL_BYTES_PER_CONN, direct_table_size};
use crate::driver::{self, Driver};
use crate::facts::{LiveFacts, OsFacts, UNLIMITED, fmt_count, fmt_limit};
use crate::host::HostRoot;
use crate::ktls;
use crate::report::{Finding, Report, Severity};
use crate::uring::{self, KernelVersion, UringFeatures};

// How strictly a check judges lives in `report` beside the severities it
// picks between (the CPU part uses it too); re-exported so `check::Mode`
// stays a path.
pub use crate::report::Mode;

/// Packets queued per CPU between the NIC and the stack that absorb a
/// reconnect storm (`net.core.netdev_max_backlog`).
pub const NETDEV_BACKLOG: u64 = 16_384;

/// What the host is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    /// Client connections the host should hold.
    pub target_conns: u64,
    /// The CPU of each shard (one entry per shard; `None` = not pinned).
    pub shard_cpus: Vec<Option<usize>>,
    /// Largest `max_connections` of any shard.
    pub max_connections_per_shard: u32,
    /// Listener backlog.
    pub backlog: u32,
    /// Largest ring size of any shard (SQ entries).
    pub ring_entries: u32,
    /// Largest buffer count of any shard.
    pub buffer_count: u32,
    /// How to judge per-shard limits.
    pub mode: Mode,
    /// The driver the config asks for.
    pub driver: DriverChoice,
}

impl CheckTarget {
    /// The target a derived config was made for (host mode).
    pub fn from_derived(d: &Derived) -> Self {
        let mut t = Self::from_config(&d.config, d.input.cpus.len(), Mode::Host);
        t.target_conns = d.input.target_conns;
        t
    }

    /// The capacity of a concrete config: the sum of its shards'
    /// `max_connections`.
    pub fn from_config(cfg: &GatewayConfig, online_cpus: usize, mode: Mode) -> Self {
        let shards = cfg.resolve_shards(online_cpus);
        let max = |f: fn(&crate::config::ShardConfig) -> u32| {
            shards.iter().map(|s| f(&s.settings)).max().unwrap_or(0)
        };
        Self {
            target_conns: shards
                .iter()
                .map(|s| u64::from(s.settings.max_connections))
                .sum(),
            shard_cpus: shards.iter().map(|s| s.cpu).collect(),
            max_connections_per_shard: max(|s| s.max_connections),
            backlog: cfg.listen.backlog,
            ring_entries: max(|s| s.ring_entries),
            buffer_count: max(|s| s.buffer_count),
            mode,
            driver: cfg.shard.driver,
        }
    }

    fn shards(&self) -> u64 {
        self.shard_cpus.len().max(1) as u64
    }
}

/// The io_uring verdict: kernel version and `kernel.io_uring_disabled` from
/// `root`, a probe ring and opcode probe from `facts`. The gateway calls this
/// at start-up (through [`startup_check`]) and may use
/// [`UringFeatures::has`] to pick optional paths such as zero-copy send.
pub fn io_uring_features(root: &HostRoot, facts: &dyn LiveFacts) -> UringFeatures {
    let kernel = root
        .kernel_release()
        .ok()
        .flatten()
        .and_then(|r| KernelVersion::parse(&r));
    let disabled = root
        .sysctl("kernel.io_uring_disabled")
        .ok()
        .flatten()
        .and_then(|v| v.first().copied());
    uring::evaluate(kernel, disabled, facts.ring_probe())
}

/// The gateway's start-up check of `cfg` on the real host (`facts` =
/// [`OsFacts`]), with the io_uring verdict the gateway already took to
/// choose its driver (so the host is probed once). Log every
/// [`Report::warnings`] once; refuse to start on any [`Report::blocking`]
/// finding, with its `why`.
pub fn startup_check(
    root: &HostRoot,
    cfg: &GatewayConfig,
    online_cpus: usize,
    uring: &UringFeatures,
) -> Report {
    let target = CheckTarget::from_config(cfg, online_cpus, Mode::Startup);
    check_with_uring(root, &OsFacts, &target, uring)
}

/// [`startup_check`] with injected live facts.
pub fn startup_check_with(
    root: &HostRoot,
    facts: &dyn LiveFacts,
    cfg: &GatewayConfig,
    online_cpus: usize,
) -> Report {
    check(
        root,
        facts,
        &CheckTarget::from_config(cfg, online_cpus, Mode::Startup),
    )
}

/// Every check against `target`: limits, sysctls, io_uring, CPUs.
pub fn check(root: &HostRoot, facts: &dyn LiveFacts, target: &CheckTarget) -> Report {
    check_with_uring(root, facts, target, &io_uring_features(root, facts))
}

/// [`check`] with the io_uring verdict taken already.
pub fn check_with_uring(
    root: &HostRoot,
    facts: &dyn LiveFacts,
    target: &CheckTarget,
    uring: &UringFeatures,
) -> Report {
    let mut r = Report::default();
    let decision = driver::decide(target.driver, uring);
    let epoll = matches!(&decision, Ok(d) if d.driver == Driver::Epoll);
    r.push(driver::finding(&decision));
    if epoll {
        r.extend(epoll_nofile_findings(facts, target));
    } else {
        r.extend(nofile_findings(facts, target));
    }
    r.extend(sysctl_findings(root, facts, target));
    let mut ring_findings = vec![memlock_finding(facts, target, uring.kernel)];
    ring_findings.extend(uring.findings());
    for mut f in ring_findings {
        // What io_uring lacks does not stop an epoll gateway: a warning for
        // the host check, and at start-up nothing beyond the one
        // `shard.driver` line.
        if epoll && f.severity != Severity::Ok {
            f.severity = if target.mode == Mode::Startup {
                Severity::Ok
            } else {
                Severity::Warn
            };
            f.why = format!("{} (the epoll driver runs instead)", f.why);
        }
        r.push(f);
    }
    r.extend(cpu::cpu_findings(root, &target.shard_cpus, target.mode));
    r.push(ktls::ktls_finding(&ktls::ktls_offer(root)));
    r
}

/// Descriptors an epoll gateway keeps besides client sockets: per shard
/// its epoll instance, listeners, doorbell, control and backend sockets;
/// plus the process's own.
pub fn epoll_fd_reserve(shards: u64) -> u64 {
    64 + 16 * shards
}

/// The `RLIMIT_NOFILE` soft limit an epoll gateway needs: every client
/// connection of every shard is a descriptor of the one process.
fn epoll_nofile_findings(facts: &dyn LiveFacts, t: &CheckTarget) -> Vec<Finding> {
    let lim = match facts.rlimit_nofile() {
        Ok(l) => l,
        Err(e) => return vec![unreadable("rlimit.nofile", e)],
    };
    let shards = t.shards();
    let conns = shards.saturating_mul(u64::from(t.max_connections_per_shard));
    let need = conns.saturating_add(epoll_fd_reserve(shards));
    let why = format!(
        "the epoll driver keeps every client connection as a descriptor of the one process,          so the limit counts for all shards together: {shards} shards × {} connections          (shard.max_connections) + {} for listeners, epoll, doorbells, control and backend          sockets = {} descriptors",
        fmt_count(u64::from(t.max_connections_per_shard)),
        epoll_fd_reserve(shards),
        fmt_count(need),
    );
    let severity = if lim.soft >= need {
        Severity::Ok
    } else {
        Severity::Warn
    };
    let advice = if lim.soft >= need {
        ": fits".to_owned()
    } else {
        format!(
            "; above the limit ({}), accepts fail with EMFILE once it is reached: raise              LimitNOFILE or lower shard.max_connections",
            fmt_limit(lim.soft)
        )
    };
    vec![Finding::new(
        "rlimit.nofile.soft",
        fmt_limit(lim.soft),
        format!(">= {need}"),
        severity,
        format!("{why}{advice}"),
    )]
}

fn unreadable(key: &str, err: impl std::fmt::Display) -> Finding {
    Finding::new(
        key,
        "unreadable",
        "-",
        Severity::Warn,
        format!("cannot check: {err}"),
    )
}

/// The `RLIMIT_NOFILE` soft limit each shard's direct-descriptor table needs.
fn nofile_findings(facts: &dyn LiveFacts, t: &CheckTarget) -> Vec<Finding> {
    let lim = match facts.rlimit_nofile() {
        Ok(l) => l,
        Err(e) => return vec![unreadable("rlimit.nofile", e)],
    };
    let table = direct_table_size(t.max_connections_per_shard);
    let shards = t.shards();
    let total = shards.saturating_mul(lim.soft.saturating_sub(DIRECT_TABLE_RESERVE));
    let each = if lim.soft == UNLIMITED {
        "any number of connections each (no descriptor limit)".to_owned()
    } else {
        format!(
            "{} connections each ({} descriptors less {DIRECT_TABLE_RESERVE} kept for listeners, \
             control sockets and spare slots)",
            fmt_count(lim.soft.saturating_sub(DIRECT_TABLE_RESERVE)),
            fmt_count(lim.soft),
        )
    };
    let per_shard = format!(
        "the gateway keeps client sockets as io_uring direct descriptors: each ring's table is \
         bounded by RLIMIT_NOFILE, so the limit counts per shard: {shards} shards × {each} = {} \
         connections in all; ",
        fmt_count(total),
    );
    let need = format!(
        "{} connections on {shards} shards are {} per shard (shard.max_connections), and \
         {} + {DIRECT_TABLE_RESERVE} = {} table entries per shard",
        fmt_count(t.target_conns),
        fmt_count(u64::from(t.max_connections_per_shard)),
        fmt_count(u64::from(t.max_connections_per_shard)),
        fmt_count(table),
    );
    let soft = if lim.soft >= table {
        Finding::new(
            "rlimit.nofile.soft",
            fmt_limit(lim.soft),
            format!(">= {table}"),
            Severity::Ok,
            format!("{per_shard}{need}: fits"),
        )
    } else if t.mode == Mode::Host {
        Finding::new(
            "rlimit.nofile.soft",
            fmt_limit(lim.soft),
            format!(">= {table}"),
            Severity::Warn,
            format!(
                "{per_shard}{need}; raise LimitNOFILE to at least {table} (the plan's systemd \
                 drop-in) or run more shards"
            ),
        )
    } else {
        let fix = if lim.hard >= table {
            format!(
                "call tuning::facts::raise_nofile_soft_to_hard() first (hard limit {}) or raise LimitNOFILE",
                fmt_limit(lim.hard)
            )
        } else {
            format!("raise LimitNOFILE (soft and hard) to >= {table}")
        };
        Finding::new(
            "rlimit.nofile.soft",
            fmt_limit(lim.soft),
            format!(">= {table}"),
            Severity::Block,
            format!(
                "shard.max_connections = {} needs a sparse direct-descriptor table of {table} entries per ring \
                 and the kernel refuses tables larger than RLIMIT_NOFILE (EMFILE): {fix}, or set \
                 shard.max_connections <= {}",
                t.max_connections_per_shard,
                lim.soft.saturating_sub(DIRECT_TABLE_RESERVE)
            ),
        )
    };
    let hard = Finding::new(
        "rlimit.nofile.hard",
        fmt_limit(lim.hard),
        format!(">= {table}"),
        if lim.hard >= table {
            Severity::Ok
        } else {
            Severity::Warn
        },
        "the ceiling the soft limit can be raised to without privileges; set with LimitNOFILE",
    );
    vec![soft, hard]
}

fn memlock_finding(
    facts: &dyn LiveFacts,
    t: &CheckTarget,
    kernel: Option<KernelVersion>,
) -> Finding {
    let lim = match facts.rlimit_memlock() {
        Ok(l) => l,
        Err(e) => return unreadable("rlimit.memlock", e),
    };
    // SQ (64 B) + CQ (2 x 16 B) + SQ index (4 B) per entry, buffer-ring slots of 16 B.
    let need = t.shards() * (u64::from(t.ring_entries) * 100 + u64::from(t.buffer_count) * 16);
    let accounted = kernel.is_none_or(|k| k < KernelVersion::new(5, 12));
    let (sev, why) = if lim.soft >= need {
        (
            Severity::Ok,
            format!(
                "bytes: {} shards × ({} ring entries × ~100 B + {} buffers × 16 B) = {} bytes of \
                 rings and buffer-ring descriptors fit",
                t.shards(),
                fmt_count(u64::from(t.ring_entries)),
                fmt_count(u64::from(t.buffer_count)),
                fmt_count(need),
            ),
        )
    } else if accounted {
        (
            Severity::Warn,
            "before 5.12 io_uring rings count against RLIMIT_MEMLOCK; raise LimitMEMLOCK"
                .to_owned(),
        )
    } else {
        (Severity::Ok, "since 5.12 rings are charged to the memory cgroup, not RLIMIT_MEMLOCK; registered buffers still count".to_owned())
    };
    Finding::new(
        "rlimit.memlock",
        fmt_limit(lim.soft),
        format!(">= {need}"),
        sev,
        why,
    )
}

fn at_least(key: &str, current: &[u64], want: u64, why: String) -> Finding {
    let cur = current.first().copied().unwrap_or(0);
    Finding::new(
        key,
        crate::host::format_values(current).replace('\t', " "),
        format!(">= {want}"),
        if cur >= want {
            Severity::Ok
        } else {
            Severity::Warn
        },
        why,
    )
}

fn sysctl_findings(root: &HostRoot, facts: &dyn LiveFacts, t: &CheckTarget) -> Vec<Finding> {
    let n = t.target_conns;
    let table = direct_table_size(t.max_connections_per_shard);
    let backlog = u64::from(t.backlog);
    let mut out = Vec::new();
    let mut each = |key: &str, f: &dyn Fn(&[u64]) -> Finding| {
        out.push(match root.sysctl(key) {
            Ok(Some(v)) => f(&v),
            Ok(None) => Finding::new(
                key,
                "absent",
                "-",
                Severity::Warn,
                "not present on this kernel",
            ),
            Err(e) => unreadable(key, e),
        });
    };
    each("fs.nr_open", &|v| {
        at_least(
            "fs.nr_open",
            v,
            table,
            "caps RLIMIT_NOFILE, so it bounds each shard's direct-descriptor table".into(),
        )
    });
    let files = n + 65_536;
    each("fs.file-max", &|v| {
        at_least(
            "fs.file-max",
            v,
            files,
            format!(
                "every socket is a kernel file even as a direct descriptor: {} clients + 65,536 for the rest of the system = {}",
                fmt_count(n),
                fmt_count(files)
            ),
        )
    });
    each("net.core.somaxconn", &|v| {
        at_least(
            "net.core.somaxconn",
            v,
            backlog,
            format!("the kernel silently clamps the listen backlog ({backlog}) to it"),
        )
    });
    each("net.ipv4.tcp_max_syn_backlog", &|v| {
        at_least(
            "net.ipv4.tcp_max_syn_backlog",
            v,
            backlog,
            "half-open connections per listener during a reconnect storm".into(),
        )
    });
    each("net.core.netdev_max_backlog", &|v| {
        at_least(
            "net.core.netdev_max_backlog",
            v,
            NETDEV_BACKLOG,
            "per-CPU packet queue; SYN floods of a reconnect storm overflow the stock 1000".into(),
        )
    });
    let page = facts.page_size().max(1);
    each("net.ipv4.tcp_mem", &|v| tcp_mem_finding(v, n, page));
    each("net.ipv4.tcp_rmem", &|v| {
        buffer_default_finding("net.ipv4.tcp_rmem", v, 131_072)
    });
    each("net.ipv4.tcp_wmem", &|v| {
        buffer_default_finding("net.ipv4.tcp_wmem", v, 16_384)
    });
    each("net.ipv4.ip_local_port_range", &port_range_finding);
    out.push(conntrack_finding(root, n));
    out.push(ram_finding(root, n));
    out
}

/// `tcp_mem` (pages: min, pressure, max) against `n` sockets of
/// [`KERNEL_BYTES_PER_CONN`].
fn tcp_mem_finding(v: &[u64], n: u64, page: u64) -> Finding {
    let need = (n * KERNEL_BYTES_PER_CONN).div_ceil(page);
    let current = crate::host::format_values(v).replace('\t', " ");
    let rec = format!("pressure >= {need}, max >= {}", need * 2);
    let (pressure, max) = match v {
        [_, p, m] => (*p, *m),
        _ => {
            return Finding::new(
                "net.ipv4.tcp_mem",
                current,
                rec,
                Severity::Warn,
                "expected three values (min pressure max)",
            );
        }
    };
    let base = format!(
        "{} sockets × ~4 KiB each = {} pages of {} bytes",
        fmt_count(n),
        fmt_count(need),
        fmt_count(page)
    );
    let (sev, why) = if max < need {
        (
            Severity::Warn,
            format!("{base}: above max, the kernel drops data and refuses buffers"),
        )
    } else if pressure < need {
        (
            Severity::Warn,
            format!("{base}: above pressure, the kernel squeezes every socket's buffers"),
        )
    } else {
        (
            Severity::Ok,
            format!("{base} fit below the pressure threshold"),
        )
    };
    Finding::new("net.ipv4.tcp_mem", current, rec, sev, why)
}

fn buffer_default_finding(key: &str, v: &[u64], max_default: u64) -> Finding {
    let current = crate::host::format_values(v).replace('\t', " ");
    let default = v.get(1).copied().unwrap_or(0);
    Finding::new(
        key,
        current,
        format!("default <= {max_default}"),
        if default <= max_default {
            Severity::Ok
        } else {
            Severity::Warn
        },
        "the default is each socket's starting buffer: small defaults keep idle connections cheap, autotuning grows busy ones",
    )
}

fn port_range_finding(v: &[u64]) -> Finding {
    let current = crate::host::format_values(v).replace('\t', " ");
    let width = match v {
        [lo, hi] if hi >= lo => hi - lo + 1,
        _ => 0,
    };
    Finding::new(
        "net.ipv4.ip_local_port_range",
        current,
        "1024 65535 on load generators",
        if width >= 28_000 {
            Severity::Ok
        } else {
            Severity::Warn
        },
        format!(
            "{width} ephemeral ports per source address and destination: bounds load generators and backend pools, not the gateway's listeners"
        ),
    )
}

fn conntrack_finding(root: &HostRoot, n: u64) -> Finding {
    let key = "net.netfilter.nf_conntrack_max";
    let want = n + n / 4;
    let loaded_module = root
        .read("/proc/modules")
        .ok()
        .flatten()
        .is_some_and(|m| m.lines().any(|l| l.starts_with("nf_conntrack ")));
    match root.sysctl(key) {
        Ok(Some(v)) => at_least(
            key,
            &v,
            want,
            format!(
                "conntrack is loaded: every connection takes an entry; {} connections + 25% for TIME_WAIT churn = {}, or exempt the port with NOTRACK",
                fmt_count(n),
                fmt_count(want)
            ),
        ),
        Ok(None) if loaded_module => Finding::new(
            key,
            "unreadable",
            format!(">= {want}"),
            Severity::Warn,
            "nf_conntrack is loaded but its sysctls are not visible (network namespace?)",
        ),
        Ok(None) => Finding::new(
            key,
            "not loaded",
            "-",
            Severity::Ok,
            "conntrack not loaded: no per-connection table to size",
        ),
        Err(e) => unreadable(key, e),
    }
}

fn ram_finding(root: &HostRoot, n: u64) -> Finding {
    let need = n * KERNEL_BYTES_PER_CONN;
    match root.mem_total_bytes() {
        Ok(Some(total)) => Finding::new(
            "mem.total",
            format!("{} MiB", total >> 20),
            format!(">= {} MiB", (need * 2) >> 20),
            if need * 2 <= total {
                Severity::Ok
            } else {
                Severity::Warn
            },
            format!(
                "{} sockets × ~4 KiB each = ~{} MiB of kernel memory; twice that keeps it under half of RAM",
                fmt_count(n),
                fmt_count(need >> 20)
            ),
        ),
        Ok(None) => Finding::new(
            "mem.total",
            "unknown",
            "-",
            Severity::Warn,
            "/proc/meminfo has no MemTotal",
        ),
        Err(e) => unreadable("mem.total", e),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;

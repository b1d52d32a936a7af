//! The tuning plan for a target: a sysctl.d file, a systemd drop-in and the
//! derived gateway config, every value with the reason for it. Raise-only:
//! a value already higher on the host is kept, never lowered.

use std::fmt::Write as _;

use crate::check::NETDEV_BACKLOG;
use crate::derive::{
    DeriveError, DeriveInput, Derived, KERNEL_BYTES_PER_CONN, derive_config, direct_table_size,
};
use crate::facts::{LiveFacts, UNLIMITED, fmt_limit};
use crate::host::{HostError, HostRoot, format_values};

/// Name of the sysctl.d file the plan writes.
pub const SYSCTL_FILE: &str = "90-gateway-tune.conf";
/// Name of the systemd drop-in the plan writes (into `gateway.service.d/`).
pub const DROPIN_FILE: &str = "90-gateway-tune.conf";
/// Name of the gateway config the plan writes.
pub const CONFIG_FILE: &str = "gateway.toml";

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The config cannot be derived for the target.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// The host could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// One sysctl the plan sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlSetting {
    /// Dotted key.
    pub key: &'static str,
    /// What the target needs, element by element.
    pub want: Vec<u64>,
    /// The host's value now, if the key exists.
    pub current: Option<Vec<u64>>,
    /// Why.
    pub why: String,
}

impl SysctlSetting {
    /// The value to set: element-wise the larger of current and wanted.
    pub fn target(&self) -> Vec<u64> {
        match &self.current {
            Some(cur) => raise_only(cur, &self.want),
            None => self.want.clone(),
        }
    }

    /// Whether the host's value is already at least what the target needs.
    pub fn already_enough(&self) -> bool {
        self.current.as_ref().is_some_and(|c| *c == self.target())
    }
}

/// Element-wise maximum of `current` and `want` (missing elements of either
/// side come from the other).
pub fn raise_only(current: &[u64], want: &[u64]) -> Vec<u64> {
    (0..current.len().max(want.len()))
        .map(|i| match (current.get(i), want.get(i)) {
            (Some(&c), Some(&w)) => c.max(w),
            (Some(&v), None) | (None, Some(&v)) => v,
            (None, None) => 0,
        })
        .collect()
}

/// A complete plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The derived gateway config.
    pub derived: Derived,
    /// Sysctls, in file order (only keys present on the host).
    pub sysctls: Vec<SysctlSetting>,
    /// `LimitNOFILE` for the drop-in.
    pub limit_nofile: u64,
    /// `LimitMEMLOCK` in bytes ([`UNLIMITED`] = `infinity`).
    pub limit_memlock: u64,
    /// Remarks for the sysctl file (settings deliberately left alone).
    pub remarks: Vec<String>,
}

/// Makes the plan for `input` on the host at `root`.
pub fn make_plan(
    root: &HostRoot,
    facts: &dyn LiveFacts,
    input: &DeriveInput,
) -> Result<Plan, PlanError> {
    let derived = derive_config(input)?;
    let n = input.target_conns;
    let shard = &derived.config.shard;
    let table = direct_table_size(shard.max_connections);
    let nofile_now = facts.rlimit_nofile().map(|l| l.hard).unwrap_or(0);
    let limit_nofile = table
        .div_ceil(1024)
        .saturating_mul(1024)
        .max(65_536)
        .max(nofile_now.min(UNLIMITED - 1));
    let page = facts.page_size().max(1);
    let need_pages = (n * KERNEL_BYTES_PER_CONN).div_ceil(page);
    let backlog = u64::from(derived.config.listen.backlog);

    let mut wanted: Vec<(&'static str, Vec<u64>, String)> = vec![
        (
            "fs.nr_open",
            vec![limit_nofile],
            format!(
                "RLIMIT_NOFILE cannot exceed it; LimitNOFILE={limit_nofile} bounds each shard's direct-descriptor table ({table} entries)"
            ),
        ),
        (
            "fs.file-max",
            vec![(n + n / 4 + 65_536).div_ceil(1024) * 1024],
            format!(
                "every socket is a kernel file, direct descriptor or not: {n} clients + 25% + 65536 for the system"
            ),
        ),
        (
            "net.core.somaxconn",
            vec![backlog],
            format!("the kernel clamps listen(2) backlogs to it; the config asks for {backlog}"),
        ),
        (
            "net.ipv4.tcp_max_syn_backlog",
            vec![backlog],
            "half-open connections per listener during a reconnect storm".into(),
        ),
        (
            "net.core.netdev_max_backlog",
            vec![NETDEV_BACKLOG],
            "per-CPU input packet queue; a reconnect storm overflows the stock 1000".into(),
        ),
        (
            "net.ipv4.tcp_mem",
            vec![need_pages, need_pages + need_pages / 2, need_pages * 2],
            format!(
                "pages of {page} B: {n} sockets x ~4 KiB = {need_pages} pages before pressure mode; max at twice that for bursts of queued data"
            ),
        ),
    ];
    if root.has_sysctl("net.netfilter.nf_conntrack_max") {
        wanted.push((
            "net.netfilter.nf_conntrack_max",
            vec![n + n / 4],
            format!("conntrack is loaded: one entry per connection, {n} + 25% for TIME_WAIT churn"),
        ));
    }
    let mut sysctls = Vec::new();
    for (key, want, why) in wanted {
        let Some(current) = root.sysctl(key)? else {
            continue;
        };
        sysctls.push(SysctlSetting {
            key,
            want,
            current: Some(current),
            why,
        });
    }
    let mut remarks = vec![
        "net.ipv4.tcp_rmem / tcp_wmem are left alone (raise-only plan); `check` warns when their defaults are large".into(),
        "net.ipv4.ip_local_port_range matters on load generators only; widen it there (e.g. 1024 65535)".into(),
    ];
    if let Some(ram) = input
        .mem_total_bytes
        .checked_div(page)
        .filter(|&p| need_pages * 2 > p / 2)
    {
        remarks.push(format!("warning: tcp_mem max ({} pages) is more than half of RAM ({ram} pages): the target is too big for this host", need_pages * 2));
    }
    let ring_bytes = u64::from(shard.ring_entries) * 100 + u64::from(shard.buffer_count) * 16;
    let memlock_need = (shard.count as u64 * ring_bytes).max(64 << 20);
    let memlock_now = facts.rlimit_memlock().map(|l| l.hard).unwrap_or(0);
    Ok(Plan {
        derived,
        sysctls,
        limit_nofile,
        limit_memlock: memlock_need.max(memlock_now),
        remarks,
    })
}

impl Plan {
    /// The sysctl.d file (`/etc/sysctl.d/90-gateway-tune.conf`).
    pub fn sysctl_conf(&self) -> String {
        let mut out = format!(
            "# /etc/sysctl.d/{SYSCTL_FILE}: written by gateway-tune for {} connections.\n\
             # Raise-only: a value already higher on this host is kept. Load with `sysctl --system`.\n",
            self.derived.input.target_conns
        );
        for s in &self.sysctls {
            let kept = if s.already_enough() {
                " (already this high on this host; kept)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "\n# {}{kept}\n{} = {}",
                s.why,
                s.key,
                format_values(&s.target()).replace('\t', " ")
            );
        }
        for r in &self.remarks {
            let _ = writeln!(out, "\n# {r}");
        }
        out
    }

    /// The systemd drop-in (`/etc/systemd/system/gateway.service.d/90-gateway-tune.conf`).
    pub fn systemd_dropin(&self) -> String {
        let shard = &self.derived.config.shard;
        let memlock = if self.limit_memlock == UNLIMITED {
            "infinity".to_owned()
        } else {
            self.limit_memlock.to_string()
        };
        format!(
            "# /etc/systemd/system/gateway.service.d/{DROPIN_FILE}: written by gateway-tune.\n\
             [Service]\n\
             # Client sockets are io_uring direct descriptors: each of the {} shards registers a\n\
             # table of max_connections + {} = {} entries, and the kernel caps each table at\n\
             # RLIMIT_NOFILE. Soft and hard are both set. Raise-only against this shell's hard limit.\n\
             LimitNOFILE={}\n\
             # Rings and provided-buffer rings; since 5.12 charged to the memory cgroup, still\n\
             # counted for registered buffers. At least 64 MiB, raise-only ({}).\n\
             LimitMEMLOCK={memlock}\n",
            shard.count,
            crate::derive::DIRECT_TABLE_RESERVE,
            direct_table_size(shard.max_connections),
            self.limit_nofile,
            fmt_limit(self.limit_memlock),
        )
    }

    /// The derived gateway config, commented.
    pub fn gateway_toml(&self) -> String {
        self.derived.to_toml()
    }

    /// All three files as `(file name, content)`.
    pub fn files(&self) -> [(&'static str, String); 3] {
        [
            (SYSCTL_FILE, self.sysctl_conf()),
            (
                "gateway.service.d-90-gateway-tune.conf",
                self.systemd_dropin(),
            ),
            (CONFIG_FILE, self.gateway_toml()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::facts::{Rlimit, StaticFacts};
    use crate::testutil::{FakeHost, healthy_facts};

    fn input(n: u64) -> DeriveInput {
        DeriveInput {
            target_conns: n,
            cpus: vec![0, 1],
            mem_total_bytes: 24 << 30,
        }
    }

    fn facts(nofile_hard: u64) -> StaticFacts {
        StaticFacts {
            nofile: Rlimit {
                soft: 20_000,
                hard: nofile_hard,
            },
            memlock: Rlimit {
                soft: 8 << 20,
                hard: 8 << 20,
            },
            ..healthy_facts()
        }
    }

    fn get<'a>(p: &'a Plan, key: &str) -> &'a SysctlSetting {
        p.sysctls.iter().find(|s| s.key == key).unwrap()
    }

    #[test]
    fn raise_only_merge() {
        assert_eq!(raise_only(&[5, 1, 9], &[3, 4, 4]), vec![5, 4, 9]);
        assert_eq!(raise_only(&[5], &[3, 4]), vec![5, 4]);
    }

    #[test]
    fn plan_values_for_100k() {
        let host = FakeHost::stock();
        let p = make_plan(&host.root(), &facts(20_000), &input(100_000)).unwrap();
        // per shard 63488 + 16 -> 64512 -> at least 65536
        assert_eq!(p.limit_nofile, 65_536);
        assert_eq!(p.limit_memlock, 64 << 20);
        assert_eq!(get(&p, "net.core.somaxconn").target(), vec![4096]);
        assert!(get(&p, "net.core.somaxconn").already_enough());
        assert_eq!(get(&p, "net.ipv4.tcp_max_syn_backlog").target(), vec![4096]);
        assert_eq!(
            get(&p, "net.core.netdev_max_backlog").target(),
            vec![16_384]
        );
        // stock 189000 252000 378000 vs wanted 100000 150000 200000: all kept
        assert_eq!(
            get(&p, "net.ipv4.tcp_mem").target(),
            vec![189_000, 252_000, 378_000]
        );
        assert_eq!(get(&p, "fs.nr_open").target(), vec![1_048_576]);
        assert!(
            p.sysctls
                .iter()
                .all(|s| s.key != "net.netfilter.nf_conntrack_max")
        );
    }

    #[test]
    fn plan_never_lowers_and_raises_what_is_short() {
        let host = FakeHost::stock();
        host.sysctl("net.core.somaxconn", "100000");
        host.sysctl("net.netfilter.nf_conntrack_max", "65536");
        let p = make_plan(&host.root(), &facts(2_000_000), &input(1_000_000)).unwrap();
        assert_eq!(get(&p, "net.core.somaxconn").target(), vec![100_000]);
        assert_eq!(
            get(&p, "net.netfilter.nf_conntrack_max").target(),
            vec![1_250_000]
        );
        assert_eq!(
            get(&p, "net.ipv4.tcp_mem").target(),
            vec![1_000_000, 1_500_000, 2_000_000]
        );
        assert_eq!(
            p.limit_nofile, 2_000_000,
            "raise-only against the current hard limit"
        );
        assert_eq!(
            get(&p, "fs.nr_open").target(),
            vec![2_000_000],
            "nr_open must admit LimitNOFILE"
        );
    }

    #[test]
    fn files_are_commented_and_the_config_parses() {
        let host = FakeHost::stock();
        let p = make_plan(&host.root(), &facts(20_000), &input(100_000)).unwrap();
        let conf = p.sysctl_conf();
        for line in conf
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(line.contains(" = "), "{line}");
        }
        assert!(conf.contains("# pages of 4096 B: 100000 sockets"), "{conf}");
        assert!(
            conf.contains("net.ipv4.tcp_mem = 189000 252000 378000"),
            "{conf}"
        );
        assert!(
            conf.contains("(already this high on this host; kept)"),
            "{conf}"
        );
        let dropin = p.systemd_dropin();
        assert!(dropin.contains("[Service]\n"), "{dropin}");
        assert!(dropin.contains("\nLimitNOFILE=65536\n"), "{dropin}");
        assert!(dropin.contains("\nLimitMEMLOCK=67108864\n"), "{dropin}");
        let cfg = GatewayConfig::from_toml(&p.gateway_toml(), "plan").unwrap();
        cfg.validate(2).unwrap();
        assert_eq!(cfg, p.derived.config);
        assert_eq!(p.files().len(), 3);
    }

    #[test]
    fn unlimited_memlock_stays_infinity() {
        let host = FakeHost::stock();
        let f = StaticFacts {
            memlock: Rlimit {
                soft: UNLIMITED,
                hard: UNLIMITED,
            },
            ..facts(20_000)
        };
        let p = make_plan(&host.root(), &f, &input(1000)).unwrap();
        assert!(p.systemd_dropin().contains("LimitMEMLOCK=infinity"));
    }

    #[test]
    fn oversized_targets_are_flagged() {
        let host = FakeHost::stock();
        let mut inp = input(1_000_000);
        inp.mem_total_bytes = 4 << 30;
        let p = make_plan(&host.root(), &facts(20_000), &inp).unwrap();
        assert!(p.sysctl_conf().contains("warning: tcp_mem max"));
    }
}

//! Per-core gateway config derivation: from a connection target, the shard
//! CPUs and the RAM, every per-shard setting with the reason for its value.

use std::fmt::Write as _;

use crate::config::GatewayConfig;

/// Entries the gateway registers in each ring's direct-descriptor table on
/// top of `max_connections` (listeners, control sockets, spare slots).
pub const DIRECT_TABLE_RESERVE: u64 = 64;
/// Largest direct-descriptor table the kernel allows (`IORING_MAX_FIXED_FILES`).
pub const MAX_DIRECT_TABLE: u64 = 1 << 20;
/// Kernel memory per idle TCP socket (DESIGN.md §6).
pub const KERNEL_BYTES_PER_CONN: u64 = 4096;
/// Most heartbeat pings one shard should have to answer per second.
pub const PINGS_PER_SHARD_PER_SEC: u64 = 20_000;

/// Size of the direct-descriptor table a shard registers for
/// `max_connections` clients; the kernel refuses tables larger than the
/// process's `RLIMIT_NOFILE` soft limit.
pub fn direct_table_size(max_connections: u32) -> u64 {
    u64::from(max_connections) + DIRECT_TABLE_RESERVE
}

/// What the derivation starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveInput {
    /// Client connections the host should hold.
    pub target_conns: u64,
    /// CPUs to run shards on, one shard per CPU.
    pub cpus: Vec<usize>,
    /// Physical memory in bytes.
    pub mem_total_bytes: u64,
}

/// Why a config cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveError {
    /// No CPU to run a shard on.
    #[error("no CPUs to place shards on")]
    NoCpus,
    /// More than the 1024 shards the config allows.
    #[error("{0} CPUs is more than the 1024 shards a gateway runs")]
    TooManyCpus(usize),
    /// A target of zero connections.
    #[error("--target-conns must be at least 1")]
    ZeroTarget,
    /// One shard would need a bigger direct-descriptor table than the kernel allows.
    #[error(
        "{per_shard} connections per shard exceed the kernel's direct-descriptor table \
         limit of {MAX_DIRECT_TABLE} (IORING_MAX_FIXED_FILES): use more cores or more hosts"
    )]
    PerShardTooLarge {
        /// Connections per shard the target needs.
        per_shard: u64,
    },
}

/// One derived value and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Dotted key (`shard.max_connections`).
    pub key: &'static str,
    /// Why this value.
    pub why: String,
}

/// A derived configuration and the reasons for its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// The configuration (defaults for everything not derived).
    pub config: GatewayConfig,
    /// Connections per shard the target needs before headroom.
    pub per_shard_need: u64,
    /// One note per derived key, in output order.
    pub notes: Vec<Note>,
    /// The inputs.
    pub input: DeriveInput,
}

fn next_pow2(v: u64) -> u64 {
    v.max(1).checked_next_power_of_two().unwrap_or(1 << 63)
}

fn floor_pow2(v: u64) -> u64 {
    if v == 0 {
        1
    } else {
        1 << (63 - v.leading_zeros())
    }
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

fn as_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Derives the per-core gateway configuration for `input`.
pub fn derive_config(input: &DeriveInput) -> Result<Derived, DeriveError> {
    let shards = input.cpus.len();
    if shards == 0 {
        return Err(DeriveError::NoCpus);
    }
    if shards > 1024 {
        return Err(DeriveError::TooManyCpus(shards));
    }
    if input.target_conns == 0 {
        return Err(DeriveError::ZeroTarget);
    }
    let n = input.target_conns;
    let s = shards as u64;
    let need = n.div_ceil(s);
    let cap = MAX_DIRECT_TABLE - DIRECT_TABLE_RESERVE;
    if need > cap {
        return Err(DeriveError::PerShardTooLarge { per_shard: need });
    }
    let mut cfg = GatewayConfig::default();
    let mut notes = Vec::new();
    let mut note = |key: &'static str, why: String| notes.push(Note { key, why });

    cfg.shard.count = shards;
    cfg.shard.cpus = input.cpus.clone();
    note(
        "shard.count",
        format!("one shard per listed CPU ({shards})"),
    );
    note(
        "shard.cpus",
        "shard i is pinned to cpus[i]: one thread per core, nothing shared".into(),
    );

    let max_conns = round_up(need + need / 4, 1024).clamp(1024, cap);
    cfg.shard.max_connections = as_u32(max_conns);
    note(
        "shard.max_connections",
        format!(
            "ceil({n} / {shards}) = {need} per shard + 25% headroom (SO_REUSEPORT spreads unevenly, \
             reconnects overlap closes), rounded up to 1024; also the size of the shard's \
             direct-descriptor table, so RLIMIT_NOFILE must be >= {}",
            max_conns + DIRECT_TABLE_RESERVE
        ),
    );

    let backlog = next_pow2(need / 64).clamp(4096, 65536).min(65535);
    cfg.listen.backlog = as_u32(backlog);
    note(
        "listen.backlog",
        format!(
            "absorbs a reconnect burst of ~1.5% of a shard's {need} clients between accepts \
             (min 4096, max 65535); net.core.somaxconn must be >= this or the kernel clamps it"
        ),
    );
    cfg.shard.max_handshakes = as_u32(backlog.min(max_conns));
    note(
        "shard.max_handshakes",
        "one backlog's worth of connections may be in the handshake at once".into(),
    );

    let ring = next_pow2(need / 32).clamp(1024, 16384);
    cfg.shard.ring_entries = as_u32(ring);
    note(
        "shard.ring_entries",
        format!(
            "submission queue sized for a burst of sends to ~3% of {need} clients per loop (1024..=16384)"
        ),
    );

    let buffer_size: u64 = 4096;
    cfg.shard.buffer_size = as_u32(buffer_size);
    note(
        "shard.buffer_size",
        "one page: most frames are small, larger ones span buffers".into(),
    );

    let ram_budget = input.mem_total_bytes / 20;
    let mut count = next_pow2(need / 16).clamp(1024, 32768);
    while count > 256 && s * count * buffer_size > ram_budget {
        count /= 2;
    }
    cfg.shard.buffer_count = as_u32(count);
    note(
        "shard.buffer_count",
        format!(
            "the provided buffer ring is shared by the shard's connections (idle ones hold none): \
             ~1/16 of {need} clients receiving at once, power of two <= 32768, all shards' pools \
             ({} MiB) within 5% of RAM",
            (s * count * buffer_size) >> 20
        ),
    );

    let max_frame = u64::from(cfg.protocol.max_frame);
    let total_slots = s * max_conns;
    let per_conn = (input.mem_total_bytes / 10) / total_slots.max(1);
    let outbound = floor_pow2(per_conn).clamp(2 * max_frame, 1 << 20);
    cfg.shard.outbound_queue_bytes = as_u32(outbound);
    note(
        "shard.outbound_queue_bytes",
        format!(
            "10% of RAM over {total_slots} connection slots, as a power of two, at least two \
             max-size frames ({} bytes) and at most 1 MiB; a cap, not a reservation",
            2 * max_frame
        ),
    );
    note(
        "shard.slow_consumer",
        "a full queue closes the connection; the client reconnects and resumes".into(),
    );

    let hb_min = round_up((need * 1000).div_ceil(PINGS_PER_SHARD_PER_SEC), 1000).max(5_000);
    let hb_default = 30_000u64.max(2 * hb_min);
    let hb_max = 300_000u64.max(hb_default);
    cfg.protocol.heartbeat_min_ms = as_u32(hb_min);
    cfg.protocol.heartbeat_default_ms = as_u32(hb_default);
    cfg.protocol.heartbeat_max_ms = as_u32(hb_max);
    note(
        "protocol.heartbeat_min_ms",
        format!(
            "{need} clients at this interval send at most {PINGS_PER_SHARD_PER_SEC} pings/s to a shard (min 5 s)"
        ),
    );
    note(
        "protocol.heartbeat_default_ms",
        "30 s, or twice the minimum when that is higher".into(),
    );
    note(
        "protocol.heartbeat_max_ms",
        "5 min: longer silences hide dead peers behind NATs".into(),
    );

    let tick = (hb_min / 50).clamp(10, 1000);
    cfg.shard.timer_tick_ms = as_u32(tick);
    note(
        "shard.timer_tick_ms",
        format!(
            "1/50 of the minimum heartbeat ({hb_min} ms): idle detection within 2%, few wheel turns"
        ),
    );

    Ok(Derived {
        config: cfg,
        per_shard_need: need,
        notes,
        input: input.clone(),
    })
}

impl Derived {
    /// The derived keys as TOML, each with a comment saying why. Keys not
    /// shown keep their defaults; [`GatewayConfig::from_toml`] reads it back.
    pub fn to_toml(&self) -> String {
        let table = toml::Table::try_from(&self.config).unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# gateway config derived by gateway-tune for {} connections on {} shard(s) \
             (CPUs {}), {} MiB RAM.\n# Keys not listed keep their defaults.",
            self.input.target_conns,
            self.input.cpus.len(),
            crate::host::format_cpu_list(&self.input.cpus),
            self.input.mem_total_bytes >> 20
        );
        for section in ["listen", "shard", "protocol"] {
            let _ = writeln!(out, "\n[{section}]");
            for note in self
                .notes
                .iter()
                .filter(|n| n.key.split('.').next() == Some(section))
            {
                let field = note.key.split('.').nth(1).unwrap_or_default();
                let value = table
                    .get(section)
                    .and_then(|s| s.get(field))
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let _ = writeln!(out, "# {}\n{field} = {value}", note.why);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn input(n: u64, cpus: usize, ram: u64) -> DeriveInput {
        DeriveInput {
            target_conns: n,
            cpus: (0..cpus).collect(),
            mem_total_bytes: ram,
        }
    }

    #[test]
    fn arithmetic_for_100k_on_two_cores() {
        let d = derive_config(&input(100_000, 2, 24 * GIB)).unwrap();
        let s = &d.config.shard;
        assert_eq!(d.per_shard_need, 50_000);
        assert_eq!(s.count, 2);
        assert_eq!(s.cpus, vec![0, 1]);
        // 50000 * 1.25 = 62500 -> next multiple of 1024
        assert_eq!(s.max_connections, 62_464 + 1024);
        assert_eq!(d.config.listen.backlog, 4096);
        assert_eq!(s.max_handshakes, 4096);
        assert_eq!(s.ring_entries, 2048);
        assert_eq!(s.buffer_count, 4096);
        assert_eq!(s.buffer_size, 4096);
        assert_eq!(s.outbound_queue_bytes, 131_072);
        assert_eq!(d.config.protocol.heartbeat_min_ms, 5_000);
        assert_eq!(d.config.protocol.heartbeat_default_ms, 30_000);
        assert_eq!(s.timer_tick_ms, 100);
        d.config.validate(2).unwrap();
    }

    #[test]
    fn large_targets_scale_every_knob() {
        let d = derive_config(&input(4_000_000, 4, 64 * GIB)).unwrap();
        let s = &d.config.shard;
        assert_eq!(d.per_shard_need, 1_000_000);
        assert_eq!(
            u64::from(s.max_connections),
            MAX_DIRECT_TABLE - DIRECT_TABLE_RESERVE
        );
        assert_eq!(d.config.listen.backlog, 16_384);
        assert_eq!(s.ring_entries, 16_384);
        // 4 shards * 32768 * 4 KiB = 512 MiB < 5% of 64 GiB (3.2 GiB)
        assert_eq!(s.buffer_count, 32_768);
        assert_eq!(d.config.protocol.heartbeat_min_ms, 50_000);
        assert_eq!(d.config.protocol.heartbeat_default_ms, 100_000);
        assert_eq!(s.timer_tick_ms, 1000);
        d.config.validate(4).unwrap();
    }

    #[test]
    fn small_ram_shrinks_buffer_pools() {
        let d = derive_config(&input(400_000, 4, 2 * GIB)).unwrap();
        let s = &d.config.shard;
        // 5% of 2 GiB = 102 MiB over 4 shards of 4 KiB buffers -> 4096 each (64 MiB)
        assert_eq!(s.buffer_count, 4096);
        assert!(4 * u64::from(s.buffer_count) * 4096 <= 2 * GIB / 20);
        d.config.validate(4).unwrap();
    }

    #[test]
    fn impossible_inputs_are_errors() {
        assert_eq!(derive_config(&input(10, 0, GIB)), Err(DeriveError::NoCpus));
        assert_eq!(
            derive_config(&input(0, 2, GIB)),
            Err(DeriveError::ZeroTarget)
        );
        assert!(matches!(
            derive_config(&input(10_000_000, 2, GIB)),
            Err(DeriveError::PerShardTooLarge {
                per_shard: 5_000_000
            })
        ));
    }

    #[test]
    fn toml_output_is_commented_and_accepted_by_the_gateway() {
        let mut inp = input(100_000, 2, 24 * GIB);
        inp.cpus = vec![2, 5];
        let d = derive_config(&inp).unwrap();
        let text = d.to_toml();
        assert!(
            text.contains("[shard]\n# one shard per listed CPU (2)\ncount = 2\n"),
            "{text}"
        );
        assert!(text.contains("cpus = [2, 5]"), "{text}");
        assert!(text.contains("slow_consumer = \"disconnect\""), "{text}");
        for n in &d.notes {
            let field = n.key.split('.').nth(1).unwrap();
            assert!(
                text.contains(&format!("\n{field} = ")),
                "{field} missing:\n{text}"
            );
        }
        let back = GatewayConfig::from_toml(&text, "derived").unwrap();
        assert_eq!(back, d.config);
        back.validate(8).unwrap();
        assert_eq!(back.resolve_shards(8)[1].cpu, Some(5));
    }

    #[test]
    fn pow2_helpers() {
        assert_eq!(next_pow2(0), 1);
        assert_eq!(next_pow2(1025), 2048);
        assert_eq!(floor_pow2(0), 1);
        assert_eq!(floor_pow2(20_000), 16_384);
        assert_eq!(round_up(62_500, 1024), 62_464 + 1024);
    }
}

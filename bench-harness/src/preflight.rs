//! Pre-flight arithmetic: can this host open the requested connections?
//!
//! Computes the source addresses, worker processes, descriptor slots and
//! kernel memory a run needs, and refuses with a message that names the
//! limit and what to change when the request cannot work. How many
//! connections one worker process holds depends on the driver: on io_uring
//! each shard's direct-descriptor table is bounded by RLIMIT_NOFILE, on
//! epoll every connection is a descriptor of the one process table.

use std::net::Ipv4Addr;

use crate::engine::Driver;

/// Ephemeral ports usable per (source address, destination) pair: Linux's
/// default `ip_local_port_range` is 32768–60999, about 28k ports.
pub const DEFAULT_PORTS_PER_SOURCE: u32 = 28_232;

/// Share of a source address's ports the plan fills at most: the kernel
/// searches the port range for a free (source, port, destination) tuple on
/// every connect, so a nearly full range makes each connect scan thousands
/// of ports. Spreading over more sources keeps connects O(1).
pub const SOURCE_FILL: f64 = 0.25;

/// Descriptors each harness process keeps for itself (pipes, listeners,
/// the ring, stdio, publishers).
pub const RESERVED_FDS: u32 = 64;

/// Kernel memory one loopback TCP connection costs on both ends (two
/// sockets, buffers idle): about 8 KB on this kind of box.
pub const KERNEL_BYTES_PER_LOOPBACK_PAIR: u64 = 8 * 1024;

/// Harness user-space memory per connection (session, buffers, bitmaps), generous.
pub const HARNESS_BYTES_PER_CONN: u64 = 2 * 1024;

/// What the host offers.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLimits {
    /// Soft RLIMIT_NOFILE of this process (bounds each ring's descriptor table).
    pub nofile: u32,
    /// Ports in `net.ipv4.ip_local_port_range`.
    pub ports_per_source: u32,
    /// `MemAvailable` in bytes.
    pub mem_available: u64,
}

/// What a run asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Connections to hold at once.
    pub connections: u32,
    /// Shard threads per worker process.
    pub shards: u32,
    /// Worker processes (0 = choose the fewest that fit).
    pub workers: u32,
    /// First source address (127.0.0.2 by default when several are needed).
    pub first_source: Ipv4Addr,
    /// Whether the target is on this host (loopback: its side of each
    /// connection costs kernel memory here too).
    pub target_is_local: bool,
    /// The driver the shards run on (sets what one process holds).
    pub driver: Driver,
}

/// A plan that fits the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Worker processes to start.
    pub workers: u32,
    /// Connections per worker (the last may hold fewer).
    pub per_worker: Vec<u32>,
    /// Source addresses to spread connections over.
    pub sources: Vec<Ipv4Addr>,
    /// Descriptor slots each shard registers.
    pub slots_per_shard: u32,
    /// Kernel memory expected, bytes.
    pub kernel_bytes: u64,
    /// Harness memory expected, bytes.
    pub harness_bytes: u64,
}

/// Why a request cannot run, with the limit and the remedy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// Nothing to do.
    #[error("connection count must be at least 1")]
    NoConnections,
    /// Shards must be at least one.
    #[error("--shards must be at least 1")]
    NoShards,
    /// The file-descriptor limit is too small even for one connection per shard.
    #[error(
        "pre-flight: RLIMIT_NOFILE is {nofile}: each shard needs {RESERVED_FDS} reserved descriptors plus its connections; raise `ulimit -n` (LimitNOFILE=)"
    )]
    NofileTooSmall {
        /// The limit seen.
        nofile: u32,
    },
    /// The requested workers cannot hold the connections.
    #[error(
        "pre-flight: {connections} connections need {needed} worker processes at {per_process} connections each \
         ({}), but --workers is {workers}: {}",
        capacity_basis(*.driver, *.shards, *.nofile),
        remedy(*.driver, *.needed)
    )]
    TooFewWorkers {
        /// The driver the shards run on.
        driver: Driver,
        /// Connections asked for.
        connections: u32,
        /// Workers needed.
        needed: u32,
        /// Workers given.
        workers: u32,
        /// Connections one process can hold.
        per_process: u32,
        /// Shards per process.
        shards: u32,
        /// RLIMIT_NOFILE.
        nofile: u32,
    },
    /// Not enough loopback source addresses in 127.0.0.0/8 from the first one.
    #[error(
        "pre-flight: {connections} connections need {needed} source addresses at {ports_per_source} ports each, \
         but only {available} fit in 127.0.0.0/8 from {first}: widen net.ipv4.ip_local_port_range or lower the count"
    )]
    SourceAddresses {
        /// Connections asked for.
        connections: u32,
        /// Addresses needed.
        needed: u32,
        /// Addresses available.
        available: u32,
        /// First address.
        first: Ipv4Addr,
        /// Ports per address.
        ports_per_source: u32,
    },
    /// Not enough memory.
    #[error(
        "pre-flight: {connections} connections need about {need_mb} MB (kernel ~{kernel_mb} MB + harness ~{harness_mb} MB) \
         but MemAvailable is {avail_mb} MB: lower the count or free memory"
    )]
    Memory {
        /// Connections asked for.
        connections: u32,
        /// MB needed in total.
        need_mb: u64,
        /// Kernel share.
        kernel_mb: u64,
        /// Harness share.
        harness_mb: u64,
        /// MB available.
        avail_mb: u64,
    },
}

/// Connections one process with `shards` shards can hold. On io_uring every
/// ring has its own direct-descriptor table bounded by RLIMIT_NOFILE; on
/// epoll every connection is a descriptor of the process's one table,
/// which also holds each shard's epoll set.
#[must_use]
pub fn per_process_capacity(driver: Driver, shards: u32, nofile: u32) -> u32 {
    match driver {
        Driver::IoUring => shards.saturating_mul(nofile.saturating_sub(RESERVED_FDS)),
        Driver::Epoll => nofile.saturating_sub(RESERVED_FDS).saturating_sub(shards),
    }
}

/// How [`per_process_capacity`] came about, for the refusal.
fn capacity_basis(driver: Driver, shards: u32, nofile: u32) -> String {
    match driver {
        Driver::IoUring => {
            format!("{shards} shards x RLIMIT_NOFILE {nofile} minus {RESERVED_FDS} reserved")
        }
        Driver::Epoll => format!(
            "epoll: one descriptor per connection, RLIMIT_NOFILE {nofile} minus {RESERVED_FDS} reserved \
             and {shards} epoll sets"
        ),
    }
}

/// What to change when too few workers were asked for.
fn remedy(driver: Driver, needed: u32) -> String {
    match driver {
        Driver::IoUring => {
            format!("raise --workers to {needed}, raise --shards, or raise RLIMIT_NOFILE")
        }
        Driver::Epoll => format!("raise --workers to {needed}, or raise RLIMIT_NOFILE"),
    }
}

/// Checks `req` against `host` and returns the plan, or the limit that blocks it.
pub fn plan(req: &Request, host: &HostLimits) -> Result<Plan, PreflightError> {
    if req.connections == 0 {
        return Err(PreflightError::NoConnections);
    }
    if req.shards == 0 {
        return Err(PreflightError::NoShards);
    }
    let per_process = per_process_capacity(req.driver, req.shards, host.nofile);
    if per_process == 0 {
        return Err(PreflightError::NofileTooSmall {
            nofile: host.nofile,
        });
    }
    let needed = req.connections.div_ceil(per_process);
    let workers = if req.workers == 0 {
        needed
    } else {
        req.workers
    };
    if workers < needed {
        return Err(PreflightError::TooFewWorkers {
            driver: req.driver,
            connections: req.connections,
            needed,
            workers,
            per_process,
            shards: req.shards,
            nofile: host.nofile,
        });
    }
    let ports = host.ports_per_source.max(1);
    let n_sources = req.connections.div_ceil(ports);
    // Spread wider than the minimum when the address space allows.
    let spread = (f64::from(req.connections) / (f64::from(ports) * SOURCE_FILL)).ceil() as u32;
    // 127.0.0.0/8 from the first address up to 127.255.255.254.
    let first = u32::from(req.first_source);
    let last = u32::from(Ipv4Addr::new(127, 255, 255, 254));
    let available = last.saturating_sub(first).saturating_add(1);
    if !req.first_source.is_loopback() || n_sources > available {
        return Err(PreflightError::SourceAddresses {
            connections: req.connections,
            needed: n_sources,
            available: if req.first_source.is_loopback() {
                available
            } else {
                0
            },
            first: req.first_source,
            ports_per_source: ports,
        });
    }
    let sources = (0..spread.clamp(n_sources, available))
        .map(|i| Ipv4Addr::from(first + i))
        .collect();
    let conns = u64::from(req.connections);
    let kernel_bytes = if req.target_is_local {
        conns * KERNEL_BYTES_PER_LOOPBACK_PAIR
    } else {
        conns * KERNEL_BYTES_PER_LOOPBACK_PAIR / 2
    };
    let harness_bytes = conns * HARNESS_BYTES_PER_CONN;
    let need = kernel_bytes + harness_bytes;
    if need > host.mem_available {
        let mb = |b: u64| b / (1024 * 1024);
        return Err(PreflightError::Memory {
            connections: req.connections,
            need_mb: mb(need),
            kernel_mb: mb(kernel_bytes),
            harness_mb: mb(harness_bytes),
            avail_mb: mb(host.mem_available),
        });
    }
    let base = req.connections / workers;
    let extra = req.connections % workers;
    let per_worker: Vec<u32> = (0..workers).map(|w| base + u32::from(w < extra)).collect();
    let max_worker = per_worker.iter().copied().max().unwrap_or(0);
    let slots_per_shard = max_worker.div_ceil(req.shards);
    Ok(Plan {
        workers,
        per_worker,
        sources,
        slots_per_shard,
        kernel_bytes,
        harness_bytes,
    })
}

/// The limits of this host, read from the OS.
pub fn host_limits() -> HostLimits {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        u32::try_from(rl.rlim_cur).unwrap_or(u32::MAX)
    } else {
        1024
    };
    let ports_per_source = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_port_range(&s))
        .unwrap_or(DEFAULT_PORTS_PER_SOURCE);
    let mem_available = crate::procfs::meminfo_kb("MemAvailable").map_or(u64::MAX, |kb| kb * 1024);
    HostLimits {
        nofile,
        ports_per_source,
        mem_available,
    }
}

/// Ports in an `ip_local_port_range` line ("32768\t60999").
#[must_use]
pub fn parse_port_range(text: &str) -> Option<u32> {
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    let lo = it.next()?.ok()?;
    let hi = it.next()?.ok()?;
    (hi >= lo).then(|| hi - lo + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostLimits {
        HostLimits {
            nofile: 20_000,
            ports_per_source: 28_232,
            mem_available: 24 << 30,
        }
    }

    fn req(connections: u32, shards: u32, workers: u32) -> Request {
        Request {
            connections,
            shards,
            workers,
            first_source: Ipv4Addr::new(127, 0, 0, 2),
            target_is_local: true,
            driver: Driver::IoUring,
        }
    }

    #[test]
    fn small_run_fits_one_worker_one_source() {
        let p = plan(&req(1000, 2, 0), &host()).unwrap();
        assert_eq!(p.workers, 1);
        assert_eq!(p.per_worker, vec![1000]);
        assert_eq!(p.sources, vec![Ipv4Addr::new(127, 0, 0, 2)]);
        assert_eq!(p.slots_per_shard, 500);
        assert_eq!(p.kernel_bytes, 1000 * 8192);
    }

    #[test]
    fn forty_thousand_need_two_sources_and_fit_two_shards() {
        // 2 shards x (20000 - 64) = 39872 per process.
        let p = plan(&req(40_000, 2, 0), &host()).unwrap();
        assert_eq!(p.workers, 2);
        assert_eq!(p.per_worker, vec![20_000, 20_000]);
        // 2 sources would do; 6 keep every port range at most a quarter full.
        assert_eq!(p.sources.len(), 6);
        assert_eq!(p.sources[0], Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(p.sources[5], Ipv4Addr::new(127, 0, 0, 7));
        assert_eq!(p.slots_per_shard, 10_000);
        let p = plan(&req(39_872, 2, 0), &host()).unwrap();
        assert_eq!(p.workers, 1);
    }

    #[test]
    fn too_few_workers_names_the_fix() {
        let e = plan(&req(100_000, 2, 1), &host()).unwrap_err();
        assert_eq!(
            e,
            PreflightError::TooFewWorkers {
                driver: Driver::IoUring,
                connections: 100_000,
                needed: 3,
                workers: 1,
                per_process: 39_872,
                shards: 2,
                nofile: 20_000
            }
        );
        assert!(e.to_string().contains("raise --workers to 3"));
    }

    #[test]
    fn epoll_holds_one_fd_table_per_process_whatever_the_shards() {
        let epoll = |n, shards, workers| Request {
            driver: Driver::Epoll,
            ..req(n, shards, workers)
        };
        // 20000 - 64 reserved - 2 epoll sets = 19934 per process, not 2 x 19936.
        assert_eq!(per_process_capacity(Driver::Epoll, 2, 20_000), 19_934);
        let p = plan(&epoll(19_934, 2, 0), &host()).unwrap();
        assert_eq!(p.workers, 1);
        let p = plan(&epoll(39_872, 2, 0), &host()).unwrap();
        assert_eq!(p.workers, 3, "io_uring would fit these in one");
        assert!(
            p.per_worker.iter().all(|&n| n <= 19_934),
            "{:?}",
            p.per_worker
        );
        assert_eq!(p.per_worker.iter().sum::<u32>(), 39_872);
        // More shards do not help on epoll, and the refusal says so.
        let e = plan(&epoll(40_000, 8, 2), &host()).unwrap_err();
        assert!(
            matches!(
                e,
                PreflightError::TooFewWorkers {
                    needed: 3,
                    per_process: 19_928,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("epoll: one descriptor per connection"),
            "{text}"
        );
        assert!(
            text.contains("raise --workers to 3, or raise RLIMIT_NOFILE"),
            "{text}"
        );
        assert!(!text.contains("--shards"), "{text}");
        // A table too small for one connection beside the reserve.
        let mut h = host();
        h.nofile = RESERVED_FDS + 2;
        assert_eq!(
            plan(&epoll(1, 2, 0), &h),
            Err(PreflightError::NofileTooSmall {
                nofile: RESERVED_FDS + 2
            })
        );
    }

    #[test]
    fn uneven_split_over_workers() {
        let p = plan(&req(10, 1, 3), &host()).unwrap();
        assert_eq!(p.per_worker, vec![4, 3, 3]);
        assert_eq!(p.slots_per_shard, 4);
    }

    #[test]
    fn memory_limit_refuses() {
        let mut h = host();
        h.mem_available = 100 << 20;
        let e = plan(&req(40_000, 2, 0), &h).unwrap_err();
        assert!(
            matches!(e, PreflightError::Memory { kernel_mb: 312, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("MemAvailable"));
    }

    #[test]
    fn source_space_is_bounded() {
        let mut r = req(1_000_000, 2, 30);
        r.first_source = Ipv4Addr::new(127, 255, 255, 250);
        let e = plan(&r, &host()).unwrap_err();
        assert!(
            matches!(
                e,
                PreflightError::SourceAddresses {
                    needed: 36,
                    available: 5,
                    ..
                }
            ),
            "{e}"
        );
        r.first_source = Ipv4Addr::new(10, 0, 0, 1);
        assert!(matches!(
            plan(&r, &host()),
            Err(PreflightError::SourceAddresses { .. })
        ));
    }

    #[test]
    fn tiny_nofile_and_zero_inputs() {
        let mut h = host();
        h.nofile = 10;
        assert_eq!(
            plan(&req(1, 1, 0), &h),
            Err(PreflightError::NofileTooSmall { nofile: 10 })
        );
        assert_eq!(
            plan(&req(0, 1, 0), &host()),
            Err(PreflightError::NoConnections)
        );
        assert_eq!(plan(&req(1, 0, 0), &host()), Err(PreflightError::NoShards));
    }

    #[test]
    fn port_range_parses() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28_232));
        assert_eq!(parse_port_range("1024 1024"), Some(1));
        assert_eq!(parse_port_range("9 1"), None);
        assert_eq!(parse_port_range("x"), None);
    }
}

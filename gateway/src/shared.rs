//! State every shard and the main thread can see: the published counters,
//! the doorbells, the shutdown flag, the cross-shard mailboxes, the push
//! id source and the metrics renderer.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shard_router::mailbox::{Doorbell, Mailboxes};
use shard_router::messages::Message;

use crate::census::Census;
use crate::metrics::MetricsHub;
use crate::push_ids::PushIds;
use crate::stats::{PublishedStats, SESSIONS};

/// State every shard and the main thread can see: read-mostly, written
/// only by its owner (each stats slot by its shard, the flag by main).
#[derive(Debug)]
pub struct Shared {
    /// Published counters, one slot per shard.
    pub stats: Vec<PublishedStats>,
    /// Each shard's doorbell eventfd; a write wakes the shard.
    pub doorbells: Vec<Arc<OwnedFd>>,
    /// Set once on SIGTERM/SIGINT.
    pub draining: AtomicBool,
    /// Cross-shard mailboxes.
    pub mailboxes: Mailboxes<Message>,
    /// Where push ids come from (one per accepted push, never per
    /// recipient).
    pub push_ids: Arc<dyn PushIds>,
    /// The Prometheus renderer.
    pub metrics: MetricsHub,
    /// The TLS listeners' certificate (reloaded on SIGHUP), when there are
    /// TLS listeners.
    pub tls: Option<Arc<crate::tls::TlsAcceptor>>,
    /// Each shard's durable store as recovered at start-up, taken by the
    /// shard when it is built (empty without a store).
    pub stores: Vec<std::sync::Mutex<Option<crate::store::StoreCore>>>,
    /// Where each shard's store keeps its files (its writer thread's
    /// directory), by shard.
    pub store_dirs: Vec<std::path::PathBuf>,
}

impl Doorbell for Shared {
    fn ring(&self, to: usize) {
        self.ring_doorbell(to);
    }
}

/// The sessions other shards published last: a shard publishes when its
/// loop turns 250 ms or more after its last publish (`shard::PUBLISH_MS`),
/// and whenever it answers a stats request.
impl Census for Shared {
    fn sessions_elsewhere(&self, shard: usize) -> u64 {
        self.stats
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != shard)
            .map(|(_, s)| s.value(SESSIONS))
            .sum()
    }
}

impl Shared {
    /// Wakes shard `index`.
    pub fn ring_doorbell(&self, index: usize) {
        if let Some(fd) = self.doorbells.get(index) {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to an eventfd we own.
            let _ = unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&**fd),
                    (&one as *const u64).cast(),
                    8,
                )
            };
        }
    }

    /// Asks every shard to drain and exit.
    pub fn request_shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        for i in 0..self.doorbells.len() {
            self.ring_doorbell(i);
        }
    }
}

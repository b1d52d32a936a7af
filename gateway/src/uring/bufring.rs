//! The shard's receive buffer pool: one provided-buffer ring registered
//! with the shard's io_uring. The kernel picks a buffer only when data
//! arrives, so an idle connection holds no receive buffer.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Errors setting up the buffer ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufRingError {
    /// Count not a power of two in 1..=32768.
    #[error("buffer count {0} must be a power of two in 1..=32768")]
    BadCount(u32),
    /// The memory could not be mapped.
    #[error("cannot map {bytes} bytes for the buffer ring: {source}")]
    Map {
        /// Bytes requested.
        bytes: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused the registration (needs Linux 5.19+).
    #[error("cannot register the provided-buffer ring (needs Linux 5.19+): {0}")]
    Register(io::Error),
}

/// A provided-buffer ring and the buffers behind it, in one mapping.
///
/// Buffers are handed back with [`BufRing::recycle`] as soon as their
/// bytes are consumed; [`BufRing::commit`] publishes recycled buffers to
/// the kernel in one store.
#[derive(Debug)]
pub struct BufRing {
    base: NonNull<u8>,
    map_len: usize,
    entries: u16,
    buf_size: u32,
    group: u16,
    /// Tail as published to the kernel plus not-yet-published recycles.
    local_tail: u16,
}

impl BufRing {
    /// Maps `count` buffers of `size` bytes and registers them as buffer
    /// group `group` on `ring`, all initially available to the kernel.
    pub fn new(ring: &IoUring, group: u16, count: u32, size: u32) -> Result<Self, BufRingError> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(BufRingError::BadCount(count));
        }
        let entries = count as usize;
        let ring_bytes = entries * std::mem::size_of::<BufRingEntry>();
        let page = 4096;
        let ring_bytes = ring_bytes.div_ceil(page) * page;
        let map_len = ring_bytes + entries * size as usize;
        // SAFETY: anonymous private mapping, checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(BufRingError::Map {
                bytes: map_len,
                source: io::Error::last_os_error(),
            });
        }
        let Some(base) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(BufRingError::Map {
                bytes: map_len,
                source: io::Error::other("null mapping"),
            });
        };
        let mut this = Self {
            base,
            map_len,
            entries: count as u16,
            buf_size: size,
            group,
            local_tail: 0,
        };
        for bid in 0..count {
            this.push_entry(bid as u16);
        }
        this.commit();
        // SAFETY: the mapping lives as long as `self`; the shard drops its
        // ring before its buffer ring (field order), and the kernel pins the
        // ring pages while they are registered.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(base.as_ptr() as u64, count as u16, group, 0)
                .map_err(BufRingError::Register)?;
        }
        Ok(this)
    }

    /// Buffer group id to put in recv SQEs.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Size of each buffer in bytes.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    fn ring_bytes(&self) -> usize {
        let raw = self.entries as usize * std::mem::size_of::<BufRingEntry>();
        raw.div_ceil(4096) * 4096
    }

    /// The first `len` bytes of buffer `bid`, as filled by the kernel.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        let bid = (bid % self.entries) as usize;
        let len = len.min(self.buf_size as usize);
        let offset = self.ring_bytes() + bid * self.buf_size as usize;
        // SAFETY: offset+len lies inside the mapping; the kernel wrote these
        // bytes before posting the completion that named `bid`, and does not
        // touch the buffer again until it is recycled.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) }
    }

    fn push_entry(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let idx = (self.local_tail & mask) as usize;
        let addr = {
            let offset = self.ring_bytes() + bid as usize * self.buf_size as usize;
            // SAFETY: inside the mapping.
            unsafe { self.base.as_ptr().add(offset) as u64 }
        };
        // SAFETY: idx < entries, the ring area holds `entries` entries.
        let entry = unsafe { &mut *self.base.as_ptr().cast::<BufRingEntry>().add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    /// Returns buffer `bid` to the pool (published at the next [`commit`](Self::commit)).
    pub fn recycle(&mut self, bid: u16) {
        self.push_entry(bid % self.entries);
    }

    /// Publishes recycled buffers to the kernel.
    pub fn commit(&mut self) {
        // SAFETY: the tail field of entry 0 is the ring tail; it is a u16
        // the kernel reads concurrently, so it is stored atomically.
        unsafe {
            let tail =
                BufRingEntry::tail(self.base.as_ptr().cast::<BufRingEntry>()) as *const AtomicU16;
            (*tail).store(self.local_tail, Ordering::Release);
        }
    }
}

// SAFETY: the mapping is owned by this value alone; the shard builds it on
// the starting thread and moves it, with its ring, to the shard thread.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}
